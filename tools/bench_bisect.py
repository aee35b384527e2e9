"""Benchmark: environment bisection of one package group (issue 11).

A golden is recorded in an environment that differs from this one in one group, TensorFlow
(``tensorflow-cpu`` 2.20.0 for this environment's ``tensorflow``), built with envaudit's own uv
environments plus envaudit's runtime dependencies. Then, from this environment:

- a plain ``envaudit check --no-confirm`` against it;
- the first ``envaudit check --no-confirm --bisect`` with an empty environment cache (uv's wheel
  cache is the user's, so this measures building and running, not downloading);
- a second one, which reuses the cached environments: budget <= 1.5 x the plain check.

Needs the package index the first time (uv downloads the wheels once); prints why not otherwise.

    python tools/bench_bisect.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECOND_BUDGET = 1.5  # x the plain check
GOLDEN_RELEASE = {"tensorflow-cpu": "2.20.0"}
RUNTIME = ("psutil", "py-cpuinfo", "nvidia-ml-py", "rich")


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def bench_bisection(runs: int = 3) -> dict[str, float] | str:
    """Seconds of each step, or why the benchmark could not run."""
    from envaudit.environments import EnvBuildError, PackageSet, base_pins, ensure_env
    from envaudit.fingerprint import capture
    from envaudit.workload.assets import asset_dir

    current = capture()
    installed = {n: e["version"] for n, e in current.get("packages", {}).items()
                 if isinstance(e, dict) and "version" in e}
    pins = {n: v for n, v in base_pins(current).items()
            if n not in ("tensorflow", "protobuf", "h5py") and not n.startswith("tensorboard")}
    pins.update(GOLDEN_RELEASE)
    pins.update({n: installed[n] for n in RUNTIME if n in installed})
    with tempfile.TemporaryDirectory(prefix="envaudit-bench-bisect-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1",
               "XDG_CACHE_HOME": str(folder / "golden-cache")}
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
        try:
            python = ensure_env(PackageSet.of(pins))
        except EnvBuildError as exc:
            return f"the golden environment could not be built: {exc}"
        golden = folder / "golden"
        record = subprocess.run([str(python), "-m", "envaudit", "record", "--golden", str(golden)],
                                env={**env, "ENVAUDIT_ASSETS": str(asset_dir())},
                                capture_output=True, text=True, check=False)
        if record.returncode != 0:
            return f"recording the golden failed: {record.stderr.strip().splitlines()[-1:]}"
        check = [sys.executable, "-m", "envaudit", "check", "--golden", str(golden),
                 "--no-confirm"]
        bisect_env = {**env, "XDG_CACHE_HOME": str(folder / "bisect-cache")}
        first, proc = _timed([*check, "--bisect"], bisect_env)
        if "could not build" in proc.stderr:
            return f"the first bisection built nothing: {proc.stderr.strip()}"
        plain = statistics.median(_timed(check, env)[0] for _ in range(runs))
        second = statistics.median(_timed([*check, "--bisect"], bisect_env)[0]
                                   for _ in range(runs))
    return {"plain": plain, "first": first, "second": second}


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 3
    result = bench_bisection(runs)
    if isinstance(result, str):
        print(f"  bisection benchmark not run: {result}")
        return 0
    for label, key in (("envaudit check --no-confirm (golden: tensorflow-cpu 2.20)", "plain"),
                       ("first --bisect, one package group (environments built)", "first"),
                       ("second --bisect (environments and results cached)", "second")):
        extra = ""
        if key == "second":
            extra = (f"budget {SECOND_BUDGET} x check  ({result['second'] / result['plain']:.2f}"
                     " x check)")
        print(f"  {label:<58} {result[key]:8.3f} s    {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
