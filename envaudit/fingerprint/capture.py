"""``capture()``: run every probe, guarded, and assemble the fingerprint tree.

Constraints the next editor must keep: never import TensorFlow (``envaudit fingerprint`` must not
load CUDA); never start a subprocess; a probe that raises becomes ``{"available": false, "reason":
...}`` and the capture goes on; key order is fixed here and in each probe, so one machine always
writes the same JSON.

Cost: a whole ``envaudit fingerprint`` costs about what ``python -c "import numpy"`` costs (``make
bench`` prints the ratio). So the probes read files rather than import what they describe: NumPy
(``numpy_files``), the installed distributions (``dist_index``, not ``importlib.metadata``), NVML
(``pynvml`` only where its library loads). Each of them falls back to the complete way where the
files cannot give the same answer; ``tests/test_fingerprint_fast.py`` compares the two.
"""

from __future__ import annotations

import time
from typing import Any

from envaudit.fingerprint import (
    cpu,
    env_vars,
    gpu,
    memory,
    numerics_libs,
    os_env,
    packages,
    python_env,
    tensorflow_build,
)
from envaudit.fingerprint.guard import guarded
from envaudit.fingerprint.identity import fingerprint_id
from envaudit.fingerprint.types import SCHEMA, Fingerprint
from envaudit.version import __version__


def capture() -> Fingerprint:
    installed = guarded(packages.probe)
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "fingerprint_id": "",
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "envaudit_version": __version__,
        "python": guarded(python_env.probe),
        "os": guarded(os_env.probe),
        "cpu": guarded(cpu.probe),
        "memory": guarded(memory.probe),
        "gpu": guarded(gpu.probe),
        "tensorflow": guarded(tensorflow_build.probe, installed),
        "numerics_libs": guarded(numerics_libs.probe),
        "env": guarded(env_vars.probe),
        "packages": installed,
    }
    data["fingerprint_id"] = fingerprint_id(data)
    return Fingerprint(data=data)
