"""``python -m envaudit.workload OUT.npz [MODES]``: run the workload once and save its arrays.

This is the child process of a confirmation re-run: the parent starts it with one environment
setting put back (a variable restored, an instruction set capped) and compares what it wrote with
the golden bundle. It must run in a fresh process because most such settings are read once, when
TensorFlow and its kernel libraries load.
"""

from __future__ import annotations

import sys

import numpy as np

from envaudit.errors import EnvauditError
from envaudit.workload.types import keyed_arrays


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.stderr.write("usage: python -m envaudit.workload OUT.npz [MODE,MODE,...]\n")
        return 2
    from envaudit.workload import run_workload

    modes = argv[1].split(",") if len(argv) == 2 else ["eager"]
    try:
        result = run_workload(modes=modes)
    except EnvauditError as exc:
        sys.stderr.write(f"envaudit: error: {exc}\n")
        return 2
    np.savez(argv[0], **keyed_arrays({m: r.stages for m, r in result.runs.items()},
                                     result.probes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
