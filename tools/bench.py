"""``make bench``: envaudit's speed budgets, measured as medians of cold runs and printed.

Budgets (from the issues), on a 2-core machine:
- ``envaudit fingerprint --format json`` (and ``report``): <= 1.2 x ``python -c "import numpy"``,
  measured side by side, pair by pair (``tools/bench_fingerprint.py``; also against PyTorch's
  ``collect_env`` where torch is installed), and TensorFlow never imported;
- the workload's compute after TensorFlow's import, all three execution modes (eager, graph,
  xla; first run in a fresh process, tracing and compiling included): <= 1.5 s;
- ``envaudit check --no-confirm``: <= 1.3 x the floor, where the floor is the median of
  ``python -c "import tensorflow"`` plus the workload's all-mode compute, plus the 1 s the
  default training steps may add (their own budget, below);
- a golden bundle, its training steps included: <= 16 MiB;
- the default training steps (3 steps in eager and graph modes, first run in the check's process,
  tracing included): <= 1 s added to a check's compute, read from the check's own timings and
  shown beside the wall-time difference to a check of a golden recorded with ``--steps 0``;
- ``envaudit check`` of a user's model (issue 10): <= the floor + 0.5 s, for the Keras model and
  the SavedModel detector the tests build, where the floor is the wall time of a bare script that
  imports TensorFlow, loads the same model and runs it once (``model.predict``, the serving
  signature) on the same images; the margin pays for everything envaudit adds: the layer outputs,
  the canary probes, the fingerprint, the bundle and the comparison.
- the HTML page of a check that moved: <= 0.5 s after the check's compute, <= 2 MiB;
- a second ``envaudit check --bisect`` of one golden: <= 1.5 x a plain check (issue 11; the
  first bisection of one package group is reported, ``tools/bench_bisect.py``);
- the tflite mode (``tools/bench_tflite.py``): a check with it beside the default modes <= 1.5 x
  one without, once its conversion is cached;
- confirmation (``tools/bench_confirm.py``): a check with one confirmed cause <= 2 x the same
  check with ``--no-confirm``; against a golden recorded on another CPU, where nothing can be
  put back, <= 1.5 x.
Also reported: each mode's share, ``envaudit record``, a check that confirms one cause, and the
peak memory of both.
Nothing here asserts: timings are printed as ratios against their floor, never used as tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))  # model_builders: the user models the tests build
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1"}
TRAINING_BUDGET_S = 1.0  # what the default training steps may add to a check's compute


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall time, exit code and stdout of one cold subprocess."""
    start = time.perf_counter()
    proc = subprocess.run(command, env=env or ENV, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc.returncode, proc.stdout


def median_of(command: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    return statistics.median(timed(command, env)[0] for _ in range(runs))


def peak_child_rss_mib(command: list[str], env: dict[str, str] | None = None) -> float:
    """Peak resident memory of a command and its children (run in a fresh helper process)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False,"
             " capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([PY, "-c", probe, *command], env=env or ENV, capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip()) / 1024


def workload_compute() -> dict[str, float]:
    code = (
        "import time, json; import envaudit.workload.tf_runtime as r; r.quiet();"
        "from envaudit.workload import run_workload; t=time.perf_counter(); r=run_workload();"
        "first=time.perf_counter()-t; modes={m: run.seconds for m, run in r.runs.items()}; ts=[]\n"
        "for _ in range(5):\n"
        " t=time.perf_counter(); run_workload(); ts.append(time.perf_counter()-t)\n"
        "ts.sort(); print(json.dumps({'first': first, 'warm': ts[2], 'modes': modes}))"
    )
    out = subprocess.run([PY, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_MODEL_FLOOR = """
import json, sys, time
t0 = time.perf_counter()
import tensorflow as tf
t1 = time.perf_counter()
import numpy as np
kind, path, images = sys.argv[1:4]
from pathlib import Path
files = sorted(Path(images).iterdir())
pixels = np.stack([tf.io.decode_image(f.read_bytes(), channels=3).numpy() for f in files])
t2 = time.perf_counter()
if kind == "keras":
    import keras
    model = keras.saving.load_model(path, safe_mode=True)
    t3 = time.perf_counter()
    model.predict(pixels.astype("float32"), verbose=0)
else:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    t3 = time.perf_counter()
    serve(images=tf.constant(pixels))
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t3 - t2, "compute": t4 - t3}))
"""


def bench_user_models(runs: int) -> None:
    """Each model's check against its floor: the wall time of a bare script that imports
    TensorFlow, loads the same model and runs it once on the same images. The two are timed
    alternately, so that a slow moment of the machine lands on both."""
    from model_builders import export_detector_savedmodel, save_keras_model, write_images

    from envaudit.workload import tf_runtime

    tf_runtime.quiet()  # the builders run TensorFlow in this process: no start-up chatter
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_keras_model(folder / "model.keras")
        export_detector_savedmodel(folder / "detector")
        write_images(folder / "images")
        for kind, model in (("keras", folder / "model.keras"),
                            ("saved_model", folder / "detector")):
            bundle = folder / f"golden-{kind}"
            subprocess.run([PY, "-m", "envaudit", "record", "--model", str(model), "--inputs",
                            str(folder / "images"), "--golden", str(bundle)], env=ENV,
                           capture_output=True, check=True)
            floor_run = [PY, "-c", _MODEL_FLOOR, kind, str(model), str(folder / "images")]
            check = [PY, "-m", "envaudit", "check", "--golden", str(bundle), "--no-confirm"]
            floors, checks, parts = [], [], []
            for _ in range(runs):
                seconds, _code, out = timed(floor_run)
                floors.append(seconds)
                parts.append(json.loads(out.strip().splitlines()[-1]))
                checks.append(timed(check)[0])
            floor, check_s = statistics.median(floors), statistics.median(checks)
            load = statistics.median(p["load"] + p["compute"] for p in parts)
            line(f"{kind}: floor = import tensorflow, load, run", floor, "s",
                 f"(model load + compute {load:.3f} s)")
            line(f"envaudit check of the {kind} model", check_s, "s",
                 f"budget floor + 0.5 s  (over floor {check_s - floor:+.2f} s)")


def bench_fleet(bundle: Path, runs: int) -> None:
    """Issue 12: ``envaudit fleet check --local 1`` <= 1.3 x a plain check of the same golden, and
    ``--local N`` on N cores <= 1.3 x ``--local 1`` (each node is its own check subprocess)."""
    check = [PY, "-m", "envaudit", "check", "--golden", str(bundle)]
    fleet = [PY, "-m", "envaudit", "fleet", "check", "--golden", str(bundle), "--local"]
    plain_s = median_of(check, runs)
    one = median_of([*fleet, "1"], runs)
    cores = os.cpu_count() or 1
    many = median_of([*fleet, str(cores)], runs)
    line("envaudit check (fleet baseline)", plain_s)
    line("envaudit fleet check --local 1", one, "s",
         f"budget 1.30 x check  ({one / plain_s:.2f} x check)")
    line(f"envaudit fleet check --local {cores} ({cores} cores)", many, "s",
         f"budget 1.30 x --local 1  ({many / one:.2f} x --local 1)")


_HTML = """
import json, sys, time
import envaudit
from envaudit.redact_result import shareable
result = shareable(envaudit.check(golden=sys.argv[1], confirm=False))
start = time.perf_counter()
from envaudit.render import check_html
page = check_html.render(result)
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": len(page.encode())}))
"""


def bench_html(bundle: Path) -> None:
    """The HTML page of a check, written after the check's compute (matplotlib's import
    included): <= 0.5 s and <= 2 MiB. The check moved, so the page draws its pictures: XLA's
    fast math moves the xla mode on any CPU, and oneDNN's switch eager and graph where oneDNN is
    on by default (AVX512_VNNI/BF16, AVX_VNNI, AMX)."""
    env = {**ENV, "TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}
    out = subprocess.run([PY, "-c", _HTML, str(bundle)], env=env, capture_output=True, text=True,
                         check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    line("HTML report: render after the check", measured["seconds"], "s",
         f"budget 0.5 s  ({measured['seconds'] / 0.5:.2f} x budget)")
    size = measured["bytes"] / 2**20
    line("HTML report: size", size, "MiB", f"budget 2 MiB  ({size / 2:.2f} x budget)")


def bench_training(bundle: Path, runs: int) -> None:
    """What the default training steps add to a check: their own compute (the check's timings)
    and the wall time over a check of the same golden recorded without them."""
    check = [PY, "-m", "envaudit", "check", "--no-confirm", "--no-history", "--format", "json"]
    trained = []
    for _ in range(runs):
        _, _, out = timed([*check, "--golden", str(bundle)])
        trained.append(json.loads(out)["timings"]["training"])
    compute = statistics.median(trained)
    line("  training steps' compute in a check (3 steps)", compute, "s",
         f"budget 1 s  ({compute / TRAINING_BUDGET_S:.2f} x budget)")
    untrained = bundle.with_name("bench-no-training")
    subprocess.run([PY, "-m", "envaudit", "record", "--golden", str(untrained), "--force",
                    "--steps", "0", "--no-history"], env=ENV, capture_output=True, check=True)
    with_steps = median_of([*check, "--golden", str(bundle)], runs)
    without = median_of([*check, "--golden", str(untrained)], runs)
    line("  check wall time, with minus without training", with_steps - without, "s",
         f"({with_steps:.2f} s vs {without:.2f} s)")


def line(label: str, value: float, unit: str = "s", budget: str = "") -> None:
    print(f"  {label:<52} {value:8.3f} {unit:<4} {budget}")


def main() -> int:
    from bench_fingerprint import bench_lines

    runs = int(os.environ.get("BENCH_RUNS", "5"))
    print(f"envaudit bench ({os.cpu_count()} cores, median of {runs} cold runs)")
    fingerprint_lines, _ = bench_lines(pairs=max(runs, 7))
    print("\n".join(f"  {text}" for text in fingerprint_lines))

    compute = workload_compute()
    line("workload compute, all modes (first run)", compute["first"], "s",
         f"budget 1.5 s  ({compute['first'] / 1.5:.2f} x budget)")
    for mode, seconds in compute["modes"].items():
        line(f"  {mode} mode (first run)", seconds)
    line("workload compute, all modes (warm)", compute["warm"], "s")

    import_tf = median_of([PY, "-c", "import tensorflow"], runs)
    floor = import_tf + compute["first"]
    line("python -c 'import tensorflow'", import_tf)
    line("floor = import tensorflow + workload compute", floor)

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bench-bundle"
        record = [PY, "-m", "envaudit", "record", "--golden", str(bundle), "--force"]
        line("envaudit record", median_of(record, max(3, runs // 2)))
        size = sum(f.stat().st_size for f in bundle.iterdir()) / 2**20
        line("golden bundle size", size, "MiB", f"budget 16 MiB  ({size / 16:.2f} x budget)")
        bench_training(bundle, runs)
        check = [PY, "-m", "envaudit", "check", "--golden", str(bundle), "--no-confirm"]
        check_s = median_of(check, runs)
        allowed = 1.30 * floor + TRAINING_BUDGET_S  # the default training steps have their own
        line("envaudit check --no-confirm", check_s, "s",
             f"budget 1.30 x floor + 1 s of training  ({check_s / allowed:.2f} x budget;"
             f" {check_s / floor:.2f} x floor)")
        line("  peak memory", peak_child_rss_mib(check), "MiB")
        env_off = {**ENV, "TF_ENABLE_ONEDNN_OPTS": "0"}
        confirm = [PY, "-m", "envaudit", "check", "--golden", str(bundle)]
        confirm_s, code, _ = timed(confirm, env_off)
        line(f"envaudit check, confirming one cause (exit {code})", confirm_s, "s",
             f"({confirm_s / floor:.2f} x floor)")
        line("  peak memory (with its re-run)", peak_child_rss_mib(confirm, env_off), "MiB")
        bench_html(bundle)
        bench_fleet(bundle, runs)
    bench_user_models(max(runs, 5))
    from bench_bisect import main as bench_bisection

    bench_bisection([str(max(3, runs // 2))])
    from bench_confirm import main as bench_confirmation

    bench_confirmation([str(max(3, runs // 2))])
    from bench_tflite import main as bench_tflite

    bench_tflite([str(max(3, runs // 2))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
