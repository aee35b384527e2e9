"""``python tools/bench_tflite.py [RUNS]`` (part of ``make bench``): what the tflite mode costs a
check.

Budget: a check of a golden recorded with the tflite mode beside the default modes (eager, graph,
xla) takes at most 1.5 x a check of the same golden without it, once its conversion is cached
(``$XDG_CACHE_HOME/envaudit/tflite``, by model, optimization and converter version). Also printed:
the same check with an empty cache (the conversion paid in the check), and the float16 and
dynamic-range modes beside it. Both goldens are recorded without training steps (their cost is
the training's own budget, ``tools/bench.py``). Medians of cold runs; nothing asserts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1"}
BUDGET = 1.5


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def _record(golden: Path, modes: str, env: dict[str, str]) -> None:
    subprocess.run([PY, "-m", "envaudit", "record", "--golden", str(golden), "--force",
                    "--steps", "0", "--no-history", "--modes", modes], env=env,
                   capture_output=True, check=True)


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 3
    with tempfile.TemporaryDirectory() as tmp:
        env = {**ENV, "XDG_CACHE_HOME": f"{tmp}/cache"}
        goldens = {name: Path(tmp) / name for name in ("without", "tflite", "optimized")}
        _record(goldens["without"], "eager,graph,xla", env)
        _record(goldens["tflite"], "eager,graph,xla,tflite", env)
        _record(goldens["optimized"], "eager,graph,xla,tflite,tflite-float16,"
                "tflite-dynamic-range", env)
        check = [PY, "-m", "envaudit", "check", "--no-confirm", "--no-history", "--golden"]
        times = {name: statistics.median(_wall([*check, str(path)], env) for _ in range(runs))
                 for name, path in goldens.items()}
        cold = statistics.median(
            _wall([*check, str(goldens["tflite"])], {**env, "XDG_CACHE_HOME": f"{tmp}/cold{i}"})
            for i in range(runs))
    base = times["without"]
    print(f"  {'check without tflite (eager, graph, xla)':<52} {base:8.3f} s")
    for label, seconds in (("check with tflite, conversion cached", times["tflite"]),
                           ("check with tflite, conversion not cached", cold),
                           ("check with tflite, float16, dynamic-range (cached)",
                            times["optimized"])):
        print(f"  {label:<52} {seconds:8.3f} s    {seconds / base:.2f} x without"
              f" (budget {BUDGET} x with the conversion cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
