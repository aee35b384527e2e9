"""Benchmark: what confirmation costs in the drift cases, against ``check --no-confirm``.

Two goldens, recorded here with default settings:

- one cause: the check runs with the setting that moves numbers on this machine
  (``TF_ENABLE_ONEDNN_OPTS=0`` where oneDNN is on by default, ``=1`` on an AVX2-only CPU), so
  confirmation starts one re-run and confirms it. Goal: at most 2 x the same check with
  ``--no-confirm``.
- recorded elsewhere: the same golden forged as another machine would have recorded it (a richer
  CPU, stray OpenBLAS variables, every mode moved by one unit of least precision), so nothing can
  be put back here and confirmation starts no re-run. Goal: at most 1.5 x ``--no-confirm``.

The two commands of a pair are timed alternately, so that a slow moment of the machine lands on
both; the median of each is printed with the re-runs the confirming check started. Nothing here
asserts.

    python tools/bench_confirm.py [RUNS]
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
sys.path.insert(0, str(ROOT / "tests"))  # forge: the forged goldens the tests use
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_COLOR": "1"}
ONE_CAUSE_GOAL = 2.0  # x check --no-confirm
ELSEWHERE_GOAL = 1.5


def _check(golden: Path, env: dict[str, str], *args: str) -> tuple[float, dict]:
    command = [PY, "-m", "envaudit", "check", "--golden", str(golden), "--format", "json",
               "--no-history", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"check failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return seconds, json.loads(proc.stdout)


def moving_setting(golden: Path) -> tuple[str, str] | None:
    """The value of TF_ENABLE_ONEDNN_OPTS that moves numbers here, or None."""
    for value in ("0", "1"):
        _s, result = _check(golden, {**ENV, "TF_ENABLE_ONEDNN_OPTS": value}, "--no-confirm")
        if result["verdict"] != "identical":
            return "TF_ENABLE_ONEDNN_OPTS", value
    return None


def pair(label: str, golden: Path, env: dict[str, str], runs: int, goal: float) -> None:
    confirming, plain, reruns = [], [], []
    for _ in range(runs):
        seconds, result = _check(golden, env)
        confirming.append(seconds)
        reruns = result["reruns"]
        plain.append(_check(golden, env, "--no-confirm")[0])
    c, p = statistics.median(confirming), statistics.median(plain)
    line("envaudit check --no-confirm", p)
    line(f"envaudit check, {label}", c, "s", f"goal {goal:.1f} x --no-confirm  ({c / p:.2f} x);"
         f" re-runs: {len(reruns)} ({', '.join(reruns) or 'none'})")


def line(label: str, value: float, unit: str = "s", budget: str = "") -> None:
    print(f"  {label:<52} {value:8.3f} {unit:<4} {budget}")


def main(argv: list[str]) -> int:
    from forge import forge_elsewhere

    runs = int(argv[0]) if argv else 3
    print(f"confirmation cost (median of {runs}, each pair timed alternately)")
    with tempfile.TemporaryDirectory() as tmp:
        golden = Path(tmp) / "golden"
        subprocess.run([PY, "-m", "envaudit", "record", "--golden", str(golden)], env=ENV,
                       capture_output=True, check=True)
        knob = moving_setting(golden)
        if knob is None:
            print("  check with one confirmed cause: no setting moves numbers on this machine")
        else:
            print(f"  {knob[0]}={knob[1]} against a golden recorded here:")
            pair("with one confirmed cause", golden, {**ENV, knob[0]: knob[1]}, runs,
                 ONE_CAUSE_GOAL)
        print("  a golden recorded on a richer CPU with stray OpenBLAS variables:")
        elsewhere = forge_elsewhere(golden, Path(tmp) / "elsewhere", moved=True)
        pair("nothing to re-run", elsewhere, ENV, runs, ELSEWHERE_GOAL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
