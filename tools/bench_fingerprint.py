"""Benchmark: what ``envaudit fingerprint`` and ``envaudit report`` cost next to
``python -c "import numpy"``, and that they never import TensorFlow.

Goal: a fingerprint costs at most 1.2x ``import numpy``. Machines differ and shared ones drift, so
the two commands run in turn (A B A B ...), each a fresh interpreter, and the ratio is taken pair
by pair; the medians are printed with the spread. CPU time (the process's user + system time, as
the kernel accounts it) is the steady figure; wall time is what a person waits. One discarded pair
first warms the OS file cache. Where PyTorch is installed, its ``python -m torch.utils.collect_env``
is timed the same way, for scale; elsewhere its line says why it is skipped.

Nothing here asserts a time: the exit status is 1 only when a command fails or TensorFlow was
imported.

    python tools/bench_fingerprint.py [PAIRS]
"""

from __future__ import annotations

import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

GOAL = 1.2
BASELINE = ("-c", "import numpy")
COMMANDS = {
    "envaudit fingerprint --format json": ("-m", "envaudit", "fingerprint", "--format", "json"),
    "envaudit report": ("-m", "envaudit", "report"),
}
TORCH = ("-m", "torch.utils.collect_env")
# Runs the CLI path in-process and reports whether it loaded TensorFlow.
_TF_CHECK = (
    "import contextlib, io, sys\n"
    "from envaudit.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    code = main(['fingerprint', '--format', 'json'])\n"
    "print(code, 'tensorflow' in sys.modules)\n"
)


def run_once(args: tuple[str, ...]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the kernel's accounting) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=True, timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def side_by_side(a: tuple[str, ...], b: tuple[str, ...], pairs: int) -> dict[str, Any]:
    """``a`` and ``b`` in turn, ``pairs`` times after one discarded pair: medians and ratios."""
    run_once(a), run_once(b)
    rows = [(run_once(a), run_once(b)) for _ in range(pairs)]

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "pairs": pairs,
        "a_wall": spread([ra[0] for ra, _ in rows]), "a_cpu": spread([ra[1] for ra, _ in rows]),
        "b_wall": spread([rb[0] for _, rb in rows]), "b_cpu": spread([rb[1] for _, rb in rows]),
        "ratio_wall": spread([ra[0] / rb[0] for ra, rb in rows]),
        "ratio_cpu": spread([ra[1] / rb[1] for ra, rb in rows if rb[1] > 0]),
    }


def tensorflow_imported() -> bool:
    check = subprocess.run([sys.executable, "-c", _TF_CHECK], capture_output=True, text=True,
                           check=True, timeout=120)
    return check.stdout.split()[1] == "True"


def describe(label: str, versus: str, result: dict[str, Any], goal: float | None) -> list[str]:
    ratio_cpu, ratio_wall = result["ratio_cpu"], result["ratio_wall"]
    verdict = ""
    if goal is not None:
        verdict = f"; goal <= {goal:.1f}x: {'met' if ratio_cpu['median'] <= goal else 'NOT met'}"
    return [
        f"{label}: cpu {result['a_cpu']['median']:.3f} s, wall {result['a_wall']['median']:.3f} s"
        f"  |  {versus}: cpu {result['b_cpu']['median']:.3f} s,"
        f" wall {result['b_wall']['median']:.3f} s  (medians of {result['pairs']} pairs)",
        f"  ratio: cpu {ratio_cpu['median']:.2f}x (min {ratio_cpu['min']:.2f}, max"
        f" {ratio_cpu['max']:.2f}), wall {ratio_wall['median']:.2f}x (min {ratio_wall['min']:.2f},"
        f" max {ratio_wall['max']:.2f}){verdict}",
    ]


def bench_lines(pairs: int = 7) -> tuple[list[str], bool]:
    """The lines ``make bench`` prints for the fingerprint, and whether TensorFlow was imported."""
    lines = []
    for label, args in COMMANDS.items():
        result = side_by_side(args, BASELINE, pairs)
        lines += describe(label, 'python -c "import numpy"', result, GOAL)
    if importlib.util.find_spec("torch") is None:
        lines.append("torch collect_env: skipped (PyTorch is not installed in this environment)")
    else:
        # collect_env starts subprocesses (pip, nvidia-smi, conda): a few pairs are enough.
        result = side_by_side(COMMANDS["envaudit fingerprint --format json"], TORCH,
                              max(3, pairs // 2))
        lines += describe("envaudit fingerprint --format json", "torch collect_env", result, None)
    imported = tensorflow_imported()
    lines.append(f"tensorflow imported: {imported}")
    return lines, imported


def main(argv: list[str]) -> int:
    pairs = int(argv[1]) if len(argv) > 1 else 7
    print(f"fingerprint cost, side by side ({os.cpu_count()} cores; each a fresh interpreter,"
          " run in turn)")
    try:
        lines, imported = bench_lines(pairs)
    except subprocess.CalledProcessError as exc:
        print(f"a command failed (exit {exc.returncode}): {' '.join(exc.cmd)}")
        print(exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else "")
        return 1
    print("\n".join(lines))
    return 1 if imported else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
