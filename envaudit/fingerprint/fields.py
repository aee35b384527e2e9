"""The one definition of what each fingerprint field means: its category, whether it can change
the numbers a model produces, the origin a change table groups it under, and whether it is a
minutia (a detail the text tables fold behind --verbose).

``identity`` hashes exactly the fields ``classify`` calls numerics-relevant, and ``diff`` labels
changes with the same answer, so "does this field change fingerprint_id" and "is this change a
finding" can never disagree; the change tables group and fold by the same table, so no renderer
decides what matters. Add a field to the fingerprint -> add its rule here if its section's
default is wrong for it. Rules match dotted paths segment by segment (``*`` and shell globs inside
a segment); a rule matches its path and everything below it; the first match wins.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from envaudit.fingerprint.guard import is_unavailable
from envaudit.settings import DEVICE_SELECTION

# (path prefix, category, numerics, origin, minutia). Specific rules first, each section's
# default last. ``category`` and ``numerics`` feed fingerprint_id: change them only on purpose
# (the tests pin the id). ``origin`` is the group a change table shows the field under
# (``model.ORIGINS``); ``minutia`` marks a detail a person rarely needs: the text tables fold it
# behind --verbose, JSON keeps it all. Minutia is independent of numerics: a folded field still
# counts as numerics-relevant (exit code, fingerprint_id, the folded line's count); it is only not
# listed row by row.
_RULES: tuple[tuple[str, str, bool, str, bool], ...] = (
    ("schema", "info", False, "envaudit", False),
    ("fingerprint_id", "info", False, "envaudit", False),
    # Both capture times head every diff already, and they differ in every diff.
    ("captured_at", "info", False, "envaudit", True),
    ("envaudit_version", "info", False, "envaudit", False),
    ("python.version", "python", True, "python", False),
    ("python.implementation", "python", True, "python", False),
    # How the interpreter was built: follows from the version and the distribution that shipped it.
    ("python.compiler", "python", False, "python", True),
    ("python.build", "python", False, "python", True),
    ("python", "python", False, "python", False),  # executable, prefix, venv: which install ran
    ("os.arch", "os", True, "os", False),
    ("os.libc", "os", True, "os", False),
    ("os.distro.id", "os", True, "os", False),
    ("os.distro.version_id", "os", True, "os", False),
    ("os.hostname", "info", False, "os", False),
    # The files that revealed a container (``detected`` and ``runtime`` already say it), the
    # hypervisor's DMI strings (which cloud, not which numbers) and the cgroup API version.
    ("os.container.evidence", "os", False, "os", True),
    ("os.virtualization", "os", False, "os", True),
    ("os.limits.cgroup_version", "os", False, "os", True),
    ("os", "os", False, "os", False),  # kernel, container, limits: recorded, not numerics
    ("cpu.vendor", "cpu", True, "cpu", False),
    ("cpu.family", "cpu", True, "cpu", False),
    ("cpu.model", "cpu", True, "cpu", False),
    # Only the instruction sets that select float kernels are recorded (``cpu.normalize_flags``),
    # so every flag is worth a row; its own group, because a move to another CPU changes many.
    ("cpu.flags", "cpu", True, "cpu flags", False),
    ("cpu.usable_cores", "cpu", True, "cpu", False),
    # Stepping, microcode and cache sizes follow from the model (listed); the source file is how
    # the probe read them.
    ("cpu.stepping", "cpu", False, "cpu", True),
    ("cpu.microcode", "cpu", False, "cpu", True),
    ("cpu.caches", "cpu", False, "cpu", True),
    ("cpu.source", "cpu", False, "cpu", True),
    ("cpu", "cpu", False, "cpu", False),
    # Free memory differs in every capture; the probe's source file is how it was read.
    ("memory.available_bytes", "info", False, "memory", True),
    ("memory.source", "info", False, "memory", True),
    ("memory", "info", False, "memory", False),
    ("gpu.available", "gpu", True, "gpu", False),
    ("gpu.driver_version", "driver", True, "driver", False),
    ("gpu.cuda_driver_version", "driver", True, "driver", False),
    ("gpu.nvml_version", "gpu", False, "driver", True),  # ships with the driver, restates it
    ("gpu.device_count", "gpu", True, "gpu", False),
    ("gpu.devices.*.name", "gpu", True, "gpu", False),
    ("gpu.devices.*.compute_capability", "gpu", True, "gpu", False),
    ("gpu.devices.*.mig_mode.current", "gpu", True, "gpu", False),
    ("gpu.devices.*.memory_total_bytes", "gpu", False, "gpu", False),
    ("gpu.devices.*.ecc_mode", "gpu", False, "gpu", False),
    ("gpu.devices.*.available", "gpu", False, "gpu", False),  # a board that could not be read
    # A board's MIG layout: which slices exist, for people; the slice a process runs on is in
    # ``gpu.cuda_devices``, where it counts.
    ("gpu.devices.*.mig_devices.*.uuid", "gpu", False, "gpu", True),
    ("gpu.devices.*.mig_devices", "gpu", False, "gpu", False),
    # Serials, UUIDs, clocks, power limits, PCIe links, VBIOS: which board and how fast, never
    # which numbers; a diff of two machines lists them all.
    ("gpu.devices", "gpu", False, "gpu", True),
    # The devices this process's CUDA runs on (``gpu_selection``): the first is TensorFlow's
    # GPU:0, where the workload runs. Its model, architecture and, for a MIG slice, its SM count
    # (kernels and their tiling are chosen by SM count: a 1g slice is not the whole board) count;
    # which board of alike ones, its UUID, and the devices after it do not.
    ("gpu.cuda_devices.0.name", "gpu", True, "gpu", False),
    ("gpu.cuda_devices.0.compute_capability", "gpu", True, "gpu", False),
    ("gpu.cuda_devices.0.multiprocessor_count", "gpu", True, "gpu", False),
    ("gpu.cuda_devices.*.uuid", "gpu", False, "gpu", True),
    ("gpu.cuda_devices", "gpu", False, "gpu", False),
    ("gpu", "gpu", False, "gpu", False),  # visible devices and their order: settings, not numerics
    # The CUDA and cuDNN a TensorFlow wheel was built for, and whether it is a CUDA build at all.
    ("tensorflow.build_info.cuda_version", "cuda", True, "tensorflow build", False),
    ("tensorflow.build_info.cudnn_version", "cudnn", True, "tensorflow build", False),
    # The GPU architectures compiled in, and the host compiler: both come with the wheel that
    # ``tensorflow.version`` names; they matter only to someone building TensorFlow themselves.
    ("tensorflow.build_info.cuda_compute_capabilities", "tensorflow", True, "tensorflow build",
     True),
    ("tensorflow.build_info.cpu_compiler", "tensorflow", True, "tensorflow build", True),
    ("tensorflow.build_info", "tensorflow", True, "tensorflow build", False),
    ("tensorflow.nvidia_wheels.nvidia-cudnn*", "cudnn", True, "cuda libraries", False),
    ("tensorflow.nvidia_wheels", "cuda", True, "cuda libraries", False),
    # Loaded libraries keep their path: "the loaded one is not the one you think" is the usual
    # cause, so the path is never folded.
    # The driver's own libraries: their file names carry the driver version, and the PTX JIT
    # compiler builds the kernels a wheel does not carry for this GPU.
    ("tensorflow.loaded_libraries.libcuda", "driver", True, "driver", False),
    ("tensorflow.loaded_libraries.libnvidia-ptxjitcompiler", "driver", True, "driver", False),
    ("tensorflow.loaded_libraries.libcudnn*", "cudnn", True, "cuda libraries", False),
    ("tensorflow.loaded_libraries", "cuda", True, "cuda libraries", False),
    # Readable only once TF is imported; a release's version already names its commit and compiler.
    ("tensorflow.git_version", "tensorflow", False, "tensorflow build", True),
    ("tensorflow.compiler", "tensorflow", False, "tensorflow build", True),
    ("tensorflow.location", "tensorflow", False, "tensorflow", False),
    ("tensorflow", "tensorflow", True, "tensorflow", False),
    ("numerics_libs.numpy.version", "packages", True, "numpy", False),
    # NumPy's build: which BLAS/LAPACK and their versions are listed (another BLAS, other sums).
    # The SIMD lists can change numerics (NumPy dispatches its loops by them) but follow from the
    # NumPy version and the CPU's flags, both listed, and their names change between NumPy
    # releases (SSE41 ... became X86_V2), so one wheel for another lists a dozen renames. The
    # configuration strings restate the BLAS version and build options; compiler versions come
    # with the wheel. All of these stay numerics-relevant: folded, never dropped.
    ("numerics_libs.numpy.build.simd_*", "packages", True, "numpy build", True),
    ("numerics_libs.numpy.build.*.openblas_configuration", "packages", True, "numpy build", True),
    ("numerics_libs.numpy.build.compilers", "packages", True, "numpy build", True),
    ("numerics_libs.numpy.build", "packages", True, "numpy build", False),
    # The OpenBLAS kernel family picked at run time and its threads are listed; the library's
    # file name and its configuration string restate the version and that family.
    ("numerics_libs.openblas_runtime.library", "packages", True, "openblas runtime", True),
    ("numerics_libs.openblas_runtime.config", "packages", True, "openblas runtime", True),
    ("numerics_libs.openblas_runtime", "packages", True, "openblas runtime", False),
    ("numerics_libs", "packages", True, "numpy", False),
    # Variables that only select devices (``settings.DEVICE_SELECTION``: CUDA_VISIBLE_DEVICES,
    # NVIDIA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, ROCm's): recorded, never numerics by themselves;
    # what they select counts through ``gpu.cuda_devices``.
    *((f"env.{name}", "numerics-env", False, "environment variables", False)
      for name in sorted(DEVICE_SELECTION)),
    ("env", "numerics-env", True, "environment variables", False),
    ("packages", "packages", False, "packages", False),  # refined per distribution in ``describe``
)

# Variables captured by prefix that do not change numerics: TensorFlow logging, and Terraform's
# TF_* variables, which share TensorFlow's prefix.
_QUIET_ENV = re.compile(
    r"TF_CPP_\w*|TF_CLI_\w*|TF_VAR_\w*|TF_LOG\w*|TF_INPUT|TF_IN_AUTOMATION|TF_WORKSPACE"
    r"|TF_DATA_DIR|TF_PLUGIN_CACHE_DIR|NCCL_DEBUG\w*|CUDA_CACHE_\w*"
)

# Sections that map names to values, where an empty one says nothing its absent entries do not.
_NAME_TABLES = frozenset({"env"})

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

# Fields that differ between any two captures of one machine, in words: when only they differ,
# nothing changed. The text views leave them out unless --verbose (JSON keeps every field).
VOLATILE = {"captured_at": "capture time", "memory.available_bytes": "free memory"}


def is_cuda_wheel(name: str) -> bool:
    """Whether a (normalized) distribution name is one of NVIDIA's CUDA library wheels."""
    return name.startswith("nvidia-") and name not in _NOT_CUDA_WHEELS


def is_numerics_package(name: str) -> bool:
    if name.startswith("nvidia-"):
        return is_cuda_wheel(name)
    return any(match(name) for match in _numerics_package_matchers())


@functools.lru_cache(maxsize=1)
def _numerics_package_matchers() -> tuple[Callable[[str], Any], ...]:
    return tuple(_segment_matcher(pattern) for pattern in _NUMERICS_PACKAGES)


@dataclass(frozen=True)
class FieldKind:
    """What the field table says about one dotted path."""

    category: str  # one of ``model.CATEGORIES``
    numerics: bool  # whether it can change the numbers a model produces (enters fingerprint_id)
    origin: str  # one of ``model.ORIGINS``: the group a change table shows it under
    minutia: bool  # a detail the text tables fold behind --verbose


def describe(path: str) -> FieldKind:
    """Category, numerics, origin and minutia of the field at a dotted path."""
    parts = path.split(".")
    # "packages.available" is the marker of a section that could not be read (``describe_leaf``),
    # not a distribution: the section's rule answers for it.
    if parts[0] == "packages" and len(parts) > 1 and path != "packages.available":
        name = parts[1]
        if is_cuda_wheel(name):
            category = "cudnn" if name.startswith("nvidia-cudnn") else "cuda"
            return FieldKind(category, True, "cuda libraries", False)
        # Another TensorFlow wheel brings other versions of dozens of helpers (absl, protobuf,
        # grpcio, ...): none of them can move a number, so they fold; numerics packages never do.
        numerics = is_numerics_package(name)
        return FieldKind("packages", numerics, "packages", not numerics)
    if parts[0] == "env" and len(parts) > 1 and _QUIET_ENV.fullmatch(parts[1]):
        # Logging and Terraform settings: recorded because of their prefix only.
        return FieldKind("numerics-env", False, "environment variables", True)
    for rule, kind in _compiled_rules():
        if len(parts) >= len(rule) and all(match(part) for match, part in zip(rule, parts)):
            return kind
    return FieldKind("info", False, "other", False)


@functools.lru_cache(maxsize=1)
def _compiled_rules() -> tuple[tuple[tuple[Callable[[str], Any], ...], FieldKind], ...]:
    """``_RULES`` with each segment turned into a matcher once. ``fnmatchcase`` compiled a regular
    expression per pattern, even for plain names: about 10 ms of every ``envaudit fingerprint``
    (``fingerprint_id`` describes each of its ~160 fields)."""
    return tuple(
        (tuple(_segment_matcher(segment) for segment in prefix.split(".")),
         FieldKind(category, numerics, origin, minutia))
        for prefix, category, numerics, origin, minutia in _RULES
    )


def _segment_matcher(pattern: str) -> Callable[[str], Any]:
    """A test equal to ``fnmatchcase(segment, pattern)``, without a regex where none is needed."""
    if not any(c in pattern for c in "*?["):
        return pattern.__eq__
    if pattern.endswith("*") and not any(c in pattern[:-1] for c in "*?["):
        return functools.partial(_starts_with, prefix=pattern[:-1])
    return re.compile(fnmatch.translate(pattern)).match


def _starts_with(text: str, prefix: str) -> bool:
    return text.startswith(prefix)


def classify(path: str) -> tuple[str, bool]:
    """``(category, numerics)`` of the field at a dotted path: what ``fingerprint_id`` reads."""
    kind = describe(path)
    return kind.category, kind.numerics


def describe_leaf(path: str, value: Any) -> FieldKind:
    """Like ``describe``; an unavailable marker stands for whether its field could be read."""
    if is_unavailable(value):
        return describe(f"{path}.available")
    return describe(path)


def classify_leaf(path: str, value: Any) -> tuple[str, bool]:
    """Like ``classify``; an unavailable marker stands for whether its field could be read."""
    kind = describe_leaf(path, value)
    return kind.category, kind.numerics


def is_process_dependent(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in PROCESS_DEPENDENT)


def leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf, in tree order.

    A leaf is a scalar, a list of scalars, an empty mapping, or an unavailable marker
    (``{"available": false, "reason": ...}`` stays whole, so "could not read" is one value).
    Lists that hold mappings (``gpu.devices``) are walked by index. The empty ``env`` is no leaf:
    "no variable set" is what its absent entries already say, so setting one informational
    variable on a machine that had none changes neither the id nor the numerics count (whereas
    an empty ``tensorflow.loaded_libraries`` is an observation: TensorFlow loaded no GPU library).
    """
    if isinstance(tree, Mapping) and (tree or prefix in _NAME_TABLES) and not is_unavailable(tree):
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list) and any(isinstance(item, (Mapping, list)) for item in tree):
        for index, value in enumerate(tree):
            yield from leaves(value, f"{prefix}.{index}")
    else:
        yield prefix, tree
