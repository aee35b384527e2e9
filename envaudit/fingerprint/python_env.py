"""Probe: the Python interpreter running envaudit.

Version and implementation can change numerics (``math`` and ``float`` formatting come with the
interpreter build); executable and prefixes are recorded to tell environments apart, never hashed.
Stdlib only.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def probe() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "compiler": platform.python_compiler(),
        "build": " ".join(platform.python_build()),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "virtual_env": sys.prefix if sys.prefix != sys.base_prefix else None,
        "conda_prefix": os.environ.get("CONDA_PREFIX"),
    }
