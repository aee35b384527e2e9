"""Start a workload child, ``python -m envaudit.workload OUT MODES [MODEL.json]``, isolated.

envaudit runs inside pull-request checkouts and other folders that strangers write. A Python
started there puts the working folder first on ``sys.path``, so a folder ``envaudit/``, ``numpy/``
or ``tensorflow/`` in it would be imported instead of the real packages. Every workload child
(a confirmation re-run, the workload in an environment built with uv) is therefore started by
``run_child`` with:

- ``-P`` (Python 3.11+): neither the working folder nor a script's folder goes on ``sys.path``;
- ``-s``: no user site-packages (``~/.local/lib/pythonX.Y/site-packages``), which any process
  of the user may have written;
- its working folder set to ``out.parent``, a folder envaudit created for this run that holds only
  the child's own files: relative paths a library reads (XLA reads ``XLA_FLAGS`` as a file name
  when it does not start with ``-``) land there, and on Python 3.10, which has no ``-P``, that
  folder is what ``sys.path[0]`` names;
- this process's environment without the variables Python reads to choose code or where code
  comes from (every ``PYTHON*`` variable: ``PYTHONPATH``, ``PYTHONHOME``, ``PYTHONSTARTUP``,
  ``PYTHONUSERBASE``, ``PYTHONINSPECT``, ``PYTHONBREAKPOINT``, ``PYTHONWARNINGS`` -- which imports
  the module a warning category names --, ``PYTHONPYCACHEPREFIX``, ...), except
  ``PYTHONHASHSEED``, a numerics setting a re-run may have to put back; ``ENVAUDIT_ASSETS``
  pinned to this process's assets as an absolute path; and, unless the user set it, the CUDA
  driver's compute cache sized to hold TensorFlow's kernels compiled from PTX
  (``CUDA_CACHE_MAXSIZE``), so children do not compile them again each.

Why not ``-I``: it implies ``-E``, which also ignores ``PYTHONHASHSEED``; the flags and the
environment above are ``-I`` with that one variable kept. Everything else in the environment
(``TF_*``, ``LD_LIBRARY_PATH``, ``CUDA_*``, thread counts) is the user's own and stays, since the
child must compute as this process does. A consequence to keep in mind: code the user puts on
``PYTHONPATH`` (a ``sitecustomize``, a custom op library) runs in this process and not in a child.

Standard library only (``assets`` is imported for the asset folder's path).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from envaudit.workload.assets import asset_dir

# Python's variables that a child keeps: the one that is a numerics setting, not a code choice.
KEPT_PYTHON_VARIABLES = ("PYTHONHASHSEED",)
CUDA_CACHE_BYTES = 4 * 2**30  # the largest compute cache the CUDA driver accepts


def isolation_flags() -> list[str]:
    """The interpreter options that keep the working folder and user site-packages out."""
    return ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without the variables that choose Python code, assets pinned absolutely."""
    env = {name: value for name, value in base.items()
           if not name.startswith("PYTHON") or name in KEPT_PYTHON_VARIABLES}
    env["ENVAUDIT_ASSETS"] = str(asset_dir().resolve())
    # The CUDA driver keeps what it compiles from PTX in a cache (~/.nv/ComputeCache unless the
    # user chose): large enough, the first child's compile serves every later child, where the
    # default size would evict TensorFlow's kernels and each child would compile again for
    # minutes on a GPU its wheel has no kernels for. The cache holds compiled code only: the same
    # PTX compiles to the same code, so the numbers do not depend on it.
    env.setdefault("CUDA_CACHE_MAXSIZE", str(CUDA_CACHE_BYTES))
    return env


def workload_command(python: str | Path, out: Path, modes: Sequence[str],
                     extra: Sequence[str] = ()) -> list[str]:
    return [str(python), *isolation_flags(), "-m", "envaudit.workload", str(out),
            ",".join(modes), *extra]


def run_child(python: str | Path, out: Path, modes: Sequence[str], extra: Sequence[str] = (), *,
              env: Mapping[str, str], timeout: float,
              prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run the workload child with ``python`` (after ``prefix``, e.g. ``taskset``) in
    ``out.parent``, from ``env`` made safe by ``child_environment``. ``out`` must lie in a folder
    private to this run. Raises OSError or TimeoutExpired as ``subprocess.run`` does."""
    command = [*prefix, *workload_command(python, out, modes, extra)]
    return subprocess.run(command, env=child_environment(env), cwd=out.parent,
                          capture_output=True, text=True, timeout=timeout, check=False)
