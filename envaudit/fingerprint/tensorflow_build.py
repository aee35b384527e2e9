"""Probe: which TensorFlow is installed and how it was built, without importing it.

Importing TensorFlow takes seconds and changes the process (threads, loaded CUDA libraries), so
this module must never do it: the version comes from the distribution metadata, the build info
(CUDA/cuDNN versions, compute capabilities, CUDA/ROCm/TensorRT flags) from parsing
``tensorflow/python/platform/build_info.py`` as text, found with ``importlib.util.find_spec``
(which locates the package without running its ``__init__``), and the CUDA library wheels from
the installed distributions.

The git version and compiler are compiled into TensorFlow's C++ library, so they are read only
when TensorFlow is already imported in this process (during a check); so are the GPU libraries
actually loaded (from /proc/self/maps): the loaded copy is not always the installed one.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envaudit.fingerprint.fields import is_cuda_wheel
from envaudit.fingerprint.guard import field, is_unavailable, unavailable

# Distributions that install the ``tensorflow`` package, most common first.
_DISTRIBUTIONS = (
    "tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly", "tf-nightly-cpu",
    "tensorflow-intel", "intel-tensorflow", "tensorflow-macos", "tensorflow-aarch64",
    "tensorflow-cpu-aws", "tensorflow-rocm",
)
# The CUDA runtime and the math libraries TensorFlow and XLA load (cuDNN, cuBLAS/cuBLASLt, cuFFT,
# cuSOLVER, cuSPARSE, NCCL), the JIT compilers that turn PTX into kernels where a wheel carries
# none for this GPU (nvJitLink, NVRTC), and the driver's own libcuda and PTX JIT compiler, whose
# file names carry the driver version. ``libnvidia-ml`` is not among them: NVML only reads the
# board, and envaudit loads it itself.
_GPU_LIBRARY = re.compile(
    r"(libcudart|libcudnn\w*|libcublas\w*|libnccl|libcufft|libcusolver\w*|libcusparse\w*"
    r"|libnvJitLink|libnvrtc|libcuda|libnvidia-ptxjitcompiler)\.so(?:\.([0-9.]+))?"
)
_NOT_IMPORTED = (
    "compiled into TensorFlow's C++ library; readable only in a process that has imported"
    " TensorFlow (envaudit check records it)"
)


def probe(packages: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``packages``: the ``packages`` section (normalized name -> {"version": ...})."""
    packages = packages or {}
    distribution = next(
        (name for name in _DISTRIBUTIONS if isinstance(packages.get(name), Mapping)), None
    )
    module = sys.modules.get("tensorflow")
    if module is not None:
        # The package's own folder first: once imported, TensorFlow extends ``__path__`` with
        # Keras API folders, and the first entry is no longer where TensorFlow is installed.
        origin = getattr(module, "__file__", None)
        locations = [str(Path(origin).parent)] if origin else []
        locations += [p for p in getattr(module, "__path__", []) if p not in locations]
    else:
        spec = importlib.util.find_spec("tensorflow")
        locations = list(spec.submodule_search_locations or []) if spec else []
    if distribution is None and not locations:
        return unavailable("TensorFlow is not installed")
    result: dict[str, Any] = {
        "available": True,
        "distribution": distribution,
        "version": packages[distribution]["version"] if distribution else unavailable(
            "no TensorFlow distribution metadata"
        ),
        "git_version": field(_compiled_in, "GIT_VERSION"),
        "compiler": field(_compiled_in, "COMPILER_VERSION"),
        "location": locations[0] if locations else None,
        "build_info": field(_build_info, locations),
        "nvidia_wheels": (
            packages if is_unavailable(packages)
            else {name: info.get("version") for name, info in packages.items()
                  if is_cuda_wheel(name) and isinstance(info, Mapping)}
        ),
    }
    if module is not None:
        result["loaded_libraries"] = field(loaded_gpu_libraries)
    return result


def _build_info(locations: list[str]) -> dict[str, Any]:
    for location in locations:
        path = Path(location) / "python" / "platform" / "build_info.py"
        if path.is_file():
            return parse_build_info(path.read_text(encoding="utf-8"))
    return unavailable("no tensorflow/python/platform/build_info.py in the installed package")


def parse_build_info(source: str) -> dict[str, Any]:
    """The build info dict from the text of build_info.py, without executing it.

    TF >= 2.4 writes ``build_info = collections.OrderedDict([(key, value), ...])``; older
    releases wrote one module-level constant per fact, which are collected instead.
    """
    tree = ast.parse(source)
    constants: dict[str, Any] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        value = node.value
        if target.id == "build_info":
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            return dict(ast.literal_eval(value))
        try:
            constants[target.id] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError):
            continue
    if not constants:
        raise ValueError("build_info.py defines neither build_info nor constants")
    return constants


def _compiled_in(name: str) -> Any:
    module = sys.modules.get("tensorflow")
    if module is None:
        return unavailable(_NOT_IMPORTED)
    version = getattr(module, "version", None)
    value = getattr(version, name, None)
    if value is None:
        versions = sys.modules.get("tensorflow.python.framework.versions")
        value = getattr(versions, name, None)
    return value if value is not None else unavailable(f"tf.version.{name} is not set")


def loaded_gpu_libraries(maps_path: Path = Path("/proc/self/maps")) -> dict[str, Any]:
    """GPU libraries mapped into this process: ``{"libcudnn": {"version": "9", "path": ...}}``.

    The version is what the file name says (``libcudart.so.12.5.82`` -> ``12.5.82``); pip's
    CUDA wheels name only the major version.
    """
    loaded: dict[str, Any] = {}
    for line in maps_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = parts[5].strip()
        match = _GPU_LIBRARY.fullmatch(Path(path).name)
        if match and match.group(1) not in loaded:
            loaded[match.group(1)] = {"version": match.group(2), "path": path}
    return dict(sorted(loaded.items()))
