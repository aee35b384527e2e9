"""The one definition of what each fingerprint field means: its category and whether it can
change the numbers a model produces.

``identity`` hashes exactly the fields ``classify`` calls numerics-relevant, and ``diff`` labels
changes with the same answer, so "does this field change fingerprint_id" and "is this change a
finding" can never disagree. Add a field to the fingerprint -> add its rule here if its section's
default is wrong for it. Rules match dotted paths segment by segment (``*`` and shell globs inside
a segment); a rule matches its path and everything below it; the first match wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

from envaudit.fingerprint.guard import is_unavailable

# (path prefix, category, numerics). Specific rules first, each section's default last.
_RULES: tuple[tuple[str, str, bool], ...] = (
    ("schema", "info", False),
    ("fingerprint_id", "info", False),
    ("captured_at", "info", False),
    ("envaudit_version", "info", False),
    ("python.version", "python", True),
    ("python.implementation", "python", True),
    ("python", "python", False),
    ("os.arch", "os", True),
    ("os.libc", "os", True),
    ("os.distro.id", "os", True),
    ("os.distro.version_id", "os", True),
    ("os.hostname", "info", False),
    ("os", "os", False),  # kernel, container, limits: recorded, not numerics
    ("cpu.vendor", "cpu", True),
    ("cpu.family", "cpu", True),
    ("cpu.model", "cpu", True),
    ("cpu.flags", "cpu", True),
    ("cpu.usable_cores", "cpu", True),
    ("cpu", "cpu", False),
    ("memory", "info", False),
    ("gpu.available", "gpu", True),
    ("gpu.driver_version", "driver", True),
    ("gpu.cuda_driver_version", "driver", True),
    ("gpu.device_count", "gpu", True),
    ("gpu.devices.*.name", "gpu", True),
    ("gpu.devices.*.compute_capability", "gpu", True),
    ("gpu.devices.*.mig_mode.current", "gpu", True),
    ("gpu", "gpu", False),  # uuid, clocks, power, ECC, PCIe: recorded, not numerics
    ("tensorflow.build_info.cuda_version", "cuda", True),
    ("tensorflow.build_info.cudnn_version", "cudnn", True),
    ("tensorflow.nvidia_wheels.nvidia-cudnn*", "cudnn", True),
    ("tensorflow.nvidia_wheels", "cuda", True),
    ("tensorflow.loaded_libraries.libcudnn*", "cudnn", True),
    ("tensorflow.loaded_libraries", "cuda", True),
    ("tensorflow.git_version", "tensorflow", False),  # readable only once TF is imported
    ("tensorflow.compiler", "tensorflow", False),
    ("tensorflow.location", "tensorflow", False),
    ("tensorflow", "tensorflow", True),
    ("numerics_libs", "packages", True),
    ("env", "numerics-env", True),
    ("packages", "packages", False),  # refined per distribution in ``classify``
)

# Variables captured by prefix that do not change numerics: TensorFlow logging, and Terraform's
# TF_* variables, which share TensorFlow's prefix.
_QUIET_ENV = re.compile(
    r"TF_CPP_\w*|TF_CLI_\w*|TF_VAR_\w*|TF_LOG\w*|TF_INPUT|TF_IN_AUTOMATION|TF_WORKSPACE"
    r"|TF_DATA_DIR|TF_PLUGIN_CACHE_DIR|NCCL_DEBUG\w*|CUDA_CACHE_\w*"
)

# Distributions whose version can change results (normalized names, shell globs).
_NUMERICS_PACKAGES = (
    "numpy", "scipy", "tensorflow*", "tf-keras", "tf-nightly*", "intel-tensorflow*", "keras",
    "ml-dtypes", "jax", "jaxlib", "jax-*", "torch", "onnxruntime*", "opencv*", "pillow*",
    "nvidia-*", "intel-*", "mkl*", "tensorrt*",
)
# nvidia-* distributions that are Python bindings, not CUDA libraries.
_NOT_CUDA_WHEELS = frozenset({"nvidia-ml-py", "nvidia-ml-py3"})

# Subtrees that exist only when the capturing process had TensorFlow imported. They never enter
# fingerprint_id (the same machine must get the same id from ``envaudit fingerprint`` and from a
# check), and a diff against a side that did not observe them is informational.
PROCESS_DEPENDENT = ("tensorflow.loaded_libraries",)


def is_cuda_wheel(name: str) -> bool:
    """Whether a (normalized) distribution name is one of NVIDIA's CUDA library wheels."""
    return name.startswith("nvidia-") and name not in _NOT_CUDA_WHEELS


def is_numerics_package(name: str) -> bool:
    if name.startswith("nvidia-"):
        return is_cuda_wheel(name)
    return any(fnmatchcase(name, pattern) for pattern in _NUMERICS_PACKAGES)


def classify(path: str) -> tuple[str, bool]:
    """``(category, numerics)`` of the field at a dotted path."""
    parts = path.split(".")
    if parts[0] == "packages" and len(parts) > 1:
        name = parts[1]
        if is_cuda_wheel(name):
            return ("cudnn" if name.startswith("nvidia-cudnn") else "cuda"), True
        return "packages", is_numerics_package(name)
    if parts[0] == "env" and len(parts) > 1 and _QUIET_ENV.fullmatch(parts[1]):
        return "numerics-env", False
    for prefix, category, numerics in _RULES:
        rule = prefix.split(".")
        if len(parts) >= len(rule) and all(map(fnmatchcase, parts, rule)):
            return category, numerics
    return "info", False


def classify_leaf(path: str, value: Any) -> tuple[str, bool]:
    """Like ``classify``; an unavailable marker stands for whether its field could be read."""
    if is_unavailable(value):
        return classify(f"{path}.available")
    return classify(path)


def is_process_dependent(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in PROCESS_DEPENDENT)


def leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf, in tree order.

    A leaf is a scalar, a list of scalars, an empty mapping, or an unavailable marker
    (``{"available": false, "reason": ...}`` stays whole, so "could not read" is one value).
    Lists that hold mappings (``gpu.devices``) are walked by index.
    """
    if isinstance(tree, Mapping) and tree and not is_unavailable(tree):
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list) and any(isinstance(item, (Mapping, list)) for item in tree):
        for index, value in enumerate(tree):
            yield from leaves(value, f"{prefix}.{index}")
    else:
        yield prefix, tree
