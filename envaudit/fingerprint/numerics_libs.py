"""Probe: NumPy and the BLAS/LAPACK it uses, as built and as running.

Build facts are those of ``numpy.show_config(mode="dicts")`` (BLAS/LAPACK name and version, SIMD
baseline and the extensions NumPy dispatches to on this CPU); build-machine paths are dropped.
OpenBLAS built with DYNAMIC_ARCH picks its kernels at run time, so the kernel family actually
chosen (``corename``) and its thread count are asked from the loaded library through ctypes.

Cost: importing NumPy takes about 100 ms of CPU, more than the rest of a fingerprint together, so
where NumPy is not imported yet the same facts are read from its installed files
(``numpy_files``: version, generated config, the dispatch lists compiled into its extension, this
CPU's flags) and its bundled OpenBLAS is loaded alone. Where that reader cannot promise the same
answer, NumPy is imported (``probe_complete``, also the reference the tests compare with).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from envaudit.fingerprint import numpy_files
from envaudit.fingerprint.guard import field, unavailable

_BLAS_KEYS = ("name", "found", "version", "openblas configuration")
# Exported names differ by build: plain OpenBLAS, 64-bit-int builds, NumPy's scipy-openblas.
_OPENBLAS_PREFIXES = ("openblas_", "scipy_openblas_")
_OPENBLAS_SUFFIXES = ("", "64_")


def probe() -> dict[str, Any]:
    if "numpy" not in sys.modules:
        try:
            return _probe_files()
        except Exception:  # noqa: BLE001 - NotExact, or a surprise: the complete way decides
            pass
    return probe_complete()


def probe_complete() -> dict[str, Any]:
    """The section as importing NumPy gives it."""
    try:
        import numpy
    except ImportError:
        return unavailable("NumPy is not installed")
    return {
        "numpy": {
            "version": numpy.__version__,
            "build": field(lambda: _numpy_build(numpy.show_config(mode="dicts"))),
        },
        "openblas_runtime": field(openblas_runtime),
    }


def _probe_files() -> dict[str, Any]:
    package = numpy_files.locate()
    if package is None:
        return unavailable("NumPy is not installed")
    build = _numpy_build(numpy_files.config(package))
    library = numpy_files.bundled_openblas(package)
    import ctypes

    # Loaded as ``import numpy`` loads it (ctypes never unloads it), so that it is mapped in this
    # process and ``openblas_runtime`` asks it what it chose.
    ctypes.CDLL(str(library))
    return {
        "numpy": {"version": numpy_files.version(package), "build": build},
        "openblas_runtime": field(openblas_runtime),
    }


def _numpy_build(config: dict[str, Any]) -> dict[str, Any]:
    dependencies = config.get("Build Dependencies", {})
    simd = config.get("SIMD Extensions", {})
    compilers = config.get("Compilers", {})
    return {
        "blas": _pick(dependencies.get("blas", {})),
        "lapack": _pick(dependencies.get("lapack", {})),
        "simd_baseline": list(simd.get("baseline", [])),
        "simd_found": list(simd.get("found", [])),
        "simd_not_found": list(simd.get("not found", [])),
        "compilers": {
            name: f"{info.get('name', '')} {info.get('version', '')}".strip()
            for name, info in compilers.items()
        },
    }


def _pick(dependency: dict[str, Any]) -> dict[str, Any]:
    return {key.replace(" ", "_"): dependency[key] for key in _BLAS_KEYS if key in dependency}


def openblas_runtime(maps_path: Path = Path("/proc/self/maps")) -> dict[str, Any]:
    """The OpenBLAS mapped into this process and what it chose at run time."""
    library = next(
        (
            line.split(maxsplit=5)[5].strip()
            for line in maps_path.read_text(encoding="utf-8", errors="replace").splitlines()
            if "openblas" in line.rsplit("/", 1)[-1].lower() and len(line.split(maxsplit=5)) == 6
        ),
        None,
    )
    if library is None:
        return unavailable("no OpenBLAS loaded (NumPy uses another BLAS)")
    import ctypes

    handle = ctypes.CDLL(library)
    result: dict[str, Any] = {"library": os.path.basename(library)}
    for prefix in _OPENBLAS_PREFIXES:
        for suffix in _OPENBLAS_SUFFIXES:
            corename = getattr(handle, f"{prefix}get_corename{suffix}", None)
            if corename is None:
                continue
            corename.restype = ctypes.c_char_p
            config = getattr(handle, f"{prefix}get_config{suffix}")
            config.restype = ctypes.c_char_p
            threads = getattr(handle, f"{prefix}get_num_threads{suffix}")
            threads.restype = ctypes.c_int
            result.update(
                corename=corename().decode(errors="replace"),
                config=config().decode(errors="replace").strip(),
                num_threads=int(threads()),
            )
            return result
    return {**result, "corename": unavailable("no openblas_get_corename in this build")}
