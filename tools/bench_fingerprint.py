"""Benchmark: the cold wall time of ``envaudit fingerprint --format json``, and that it never
imports TensorFlow.

Each run is a fresh interpreter (``python -m envaudit fingerprint --format json``), so imports and
probes are all paid every time; one discarded run first warms the OS file cache, so the number is
what a pipeline sees on its second call, not the cost of a cold disk. Budget (issue 2): a median
of at most 0.5 s on the 2-core reference machine.

    python tools/bench_fingerprint.py [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

BUDGET_S = 0.5
_COMMAND = ("-m", "envaudit", "fingerprint", "--format", "json")
# Runs the CLI path in-process and reports whether it loaded TensorFlow.
_TF_CHECK = (
    "import contextlib, io, sys\n"
    "from envaudit.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    code = main(['fingerprint', '--format', 'json'])\n"
    "print(code, 'tensorflow' in sys.modules)\n"
)


def bench_fingerprint(runs: int = 7) -> dict[str, Any]:
    """Median (and spread) of ``runs`` cold runs, and whether the capture imported TensorFlow."""
    command = [sys.executable, *_COMMAND]
    subprocess.run(command, capture_output=True, check=True, timeout=60)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=60)
        times.append(time.perf_counter() - start)
    check = subprocess.run(
        [sys.executable, "-c", _TF_CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    exit_code, imported = check.stdout.split()
    return {
        "command": " ".join(["python", *_COMMAND]),
        "runs": runs,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "budget_s": BUDGET_S,
        "within_budget": statistics.median(times) <= BUDGET_S,
        "exit_code": int(exit_code),
        "tensorflow_imported": imported == "True",
    }


def main(argv: list[str]) -> int:
    runs = int(argv[1]) if len(argv) > 1 else 7
    result = bench_fingerprint(runs)
    print(f"{result['command']}: median {result['median_s']:.3f} s over {runs} cold runs "
          f"(min {result['min_s']:.3f}, max {result['max_s']:.3f}; budget {BUDGET_S} s)")
    print(f"tensorflow imported: {result['tensorflow_imported']}")
    return 0 if result["within_budget"] and not result["tensorflow_imported"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
