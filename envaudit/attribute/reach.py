"""Which device a change can reach, and the changes that cannot reach what moved.

A change is a cause only if it can reach the computation that moved. The devices come from the
arrays (``TensorComparison.device`` and ``golden_device``, recorded by the workload): a CUDA,
cuDNN, driver or GPU change cannot move an array that the CPU computed on both sides, and a CPU
instruction-set change cannot move one that a GPU computed on both sides. Such changes are listed
as "cannot affect", with the reason, and never ranked. When the golden side's devices are unknown
(a bundle recorded before envaudit kept them) they are taken from its fingerprint where that is
conclusive (no GPU, or a TensorFlow built without CUDA: everything ran on the CPU), else nothing
is ruled unreachable.

Every array a check compares (stages, probes, a user model's outputs) is computed by TensorFlow.
A change that reaches only NumPy's float64 references (OpenBLAS and NumPy's own settings and
build, ``settings.FLOAT64``) cannot have moved one, whatever the devices: it is listed as "cannot
affect" too. What a variable reaches is read from its record in ``envaudit/settings.py``; this
module keeps only what fingerprint fields (not variables) reach. Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envaudit import settings
from envaudit.attribute.types import Unreachable, describe
from envaudit.compare.types import TensorComparison
from envaudit.fingerprint.types import Change, Fingerprint

# Fingerprint categories whose changes reach only GPU computations.
GPU_CATEGORIES = frozenset({"gpu", "driver", "cuda", "cudnn"})
# ... and only CPU computations (the instruction set, core count, CPU model).
CPU_CATEGORIES = frozenset({"cpu"})
BOTH = frozenset({"cpu", "gpu"})
# Fingerprint fields that describe only what NumPy's float64 references run on: the OpenBLAS that
# NumPy loaded (its kernel family, threads) and NumPy's build (BLAS, SIMD dispatch). NumPy's
# version is not among them: the workload's inputs pass through NumPy.
FLOAT64_FIELDS = ("numerics_libs.openblas_runtime", "numerics_libs.numpy.build")
FLOAT64_ONLY = ("cannot affect: it reaches only NumPy's float64 references, and TensorFlow"
                " computed every array that moved")


@dataclass(frozen=True)
class DeviceEvidence:
    """On which kinds of device ("cpu", "gpu") the arrays that moved were computed."""

    golden: frozenset[str] | None  # None: not known for the golden side
    current: frozenset[str]
    shown: str  # in words, for evidence: "CPU:0 in both runs"

    @property
    def known(self) -> frozenset[str] | None:
        return None if self.golden is None else self.golden | self.current


def device_reach(change: Change) -> frozenset[str]:
    """The kinds of device a change can move numbers on."""
    if change.path.startswith("env."):
        return settings.setting(change.path[4:]).devices
    if change.category in GPU_CATEGORIES:
        return frozenset({"gpu"})
    if change.category in CPU_CATEGORIES:
        return frozenset({"cpu"})
    return BOTH


def computations(change: Change) -> frozenset[settings.Computation]:
    """Which computations a change can reach: TensorFlow's (every array a check compares), NumPy's
    float64 references, or both."""
    if change.path.startswith("env."):
        return settings.setting(change.path[4:]).computes
    if change.path.startswith(FLOAT64_FIELDS):
        return settings.FLOAT64
    return settings.BOTH_COMPUTATIONS


def reaches_tensorflow(change: Change) -> bool:
    return "tensorflow" in computations(change)


def kind(device: str) -> str:
    return "gpu" if device.startswith("GPU") else "cpu"


def evidence(moved: Sequence[TensorComparison], golden_fingerprint: Fingerprint | None
             ) -> DeviceEvidence | None:
    """Where the arrays that moved were computed, on both sides (None: this side's devices are
    not known, which never happens for a check made by this envaudit)."""
    current = [a.device for a in moved if a.device]
    if not current:
        return None
    golden = [a.golden_device for a in moved if a.golden_device]
    if len(golden) == len(moved):
        golden_kinds: frozenset[str] | None = frozenset(kind(d) for d in golden)
        golden_shown = ", ".join(sorted(set(golden)))
    elif golden_fingerprint is not None and ran_on_cpu_only(golden_fingerprint):
        golden_kinds, golden_shown = frozenset({"cpu"}), "the CPU (its fingerprint has no GPU)"
    else:
        golden_kinds, golden_shown = None, "unknown devices"
    now = ", ".join(sorted(set(current)))
    shown = (f"{now} in both runs" if golden_shown == now else
             f"{now} here, {golden_shown} in the golden run")
    return DeviceEvidence(golden_kinds, frozenset(kind(d) for d in current), shown)


def ran_on_cpu_only(fingerprint: Fingerprint) -> bool:
    """Whether a fingerprint proves that its TensorFlow could only use the CPU: no GPU visible
    to NVML (or all hidden by ``CUDA_VISIBLE_DEVICES``: CUDA selects none, ``cuda_devices``),
    or a TensorFlow built without CUDA."""
    gpu = fingerprint.get("gpu") or {}
    no_gpu = isinstance(gpu, Mapping) and (gpu.get("available") is False
                                          or gpu.get("device_count") == 0
                                          or gpu.get("devices") == []
                                          or gpu.get("cuda_devices") == []
                                          or gpu.get("cuda_visible_devices") in ("", "-1"))
    return no_gpu or fingerprint.get("tensorflow.build_info.is_cuda_build") is False


def unreachable(changes: Iterable[Change], devices: DeviceEvidence | None) -> list[Unreachable]:
    """The numerics-relevant changes that cannot reach any array that moved: those that reach
    only the float64 references, and those that reach other devices than computed it."""
    ran = devices.known if devices else None
    found = []
    for change in changes:
        if change.numerics and not reaches_tensorflow(change):
            found.append(Unreachable(change=describe(change), path=change.path,
                                     reason=FLOAT64_ONLY))
        elif change.numerics and ran and devices and not device_reach(change) & ran:
            where = "ran on CPU" if ran == {"cpu"} else "ran on GPU"
            found.append(Unreachable(
                change=describe(change), path=change.path,
                reason=f"cannot affect: {where} (the arrays that moved were computed on"
                       f" {devices.shown})"))
    return found
