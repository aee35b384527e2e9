"""Which device a change can reach, and the changes that cannot reach what moved.

A change is a cause only if it can reach the computation that moved. The devices come from the
arrays (``TensorComparison.device`` and ``golden_device``, recorded by the workload): a CUDA,
cuDNN, driver or GPU change cannot move an array that the CPU computed on both sides, and a CPU
instruction-set change cannot move one that a GPU computed on both sides. Such changes are listed
as "cannot affect", with the reason, and never ranked. When the golden side's devices are unknown
(a bundle recorded before envaudit kept them) they are taken from its fingerprint where that is
conclusive (no GPU, or a TensorFlow built without CUDA: everything ran on the CPU), else nothing
is ruled unreachable. Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envaudit.attribute.model import Unreachable, describe
from envaudit.compare.model import TensorComparison
from envaudit.fingerprint.model import Change, Fingerprint

# Fingerprint categories whose changes reach only GPU computations.
GPU_CATEGORIES = frozenset({"gpu", "driver", "cuda", "cudnn"})
# ... and only CPU computations (the instruction set, core count, CPU model).
CPU_CATEGORIES = frozenset({"cpu"})
# Variables read only by GPU libraries, and only by CPU kernel libraries. CUDA_VISIBLE_DEVICES
# picks which GPUs TensorFlow sees: where it moved work between the CPU and a GPU, a GPU ran on one
# side and it is reachable; where both sides ran on the CPU it moved nothing.
GPU_VARIABLES = ("CUDA_", "NVIDIA_", "TF_CUDNN", "TF_GPU", "TF_ENABLE_TF32", "NCCL_", "CUBLAS",
                 "CUDNN")
CPU_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_SET_ONEDNN", "ONEDNN_", "DNNL_", "OMP_", "KMP_",
                 "MKL_", "OPENBLAS_", "NPY_")
BOTH = frozenset({"cpu", "gpu"})


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
        name = change.path[4:]
        if name.startswith(GPU_VARIABLES):
            return frozenset({"gpu"})
        if name.startswith(CPU_VARIABLES):
            return frozenset({"cpu"})
        return BOTH
    if change.category in GPU_CATEGORIES:
        return frozenset({"gpu"})
    if change.category in CPU_CATEGORIES:
        return frozenset({"cpu"})
    return BOTH


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
    to NVML (or all hidden by ``CUDA_VISIBLE_DEVICES``), or a TensorFlow built without CUDA."""
    gpu = fingerprint.get("gpu") or {}
    no_gpu = isinstance(gpu, Mapping) and (gpu.get("available") is False
                                          or gpu.get("device_count") == 0
                                          or gpu.get("devices") == []
                                          or gpu.get("cuda_visible_devices") in ("", "-1"))
    return no_gpu or fingerprint.get("tensorflow.build_info.is_cuda_build") is False


def unreachable(changes: Iterable[Change], devices: DeviceEvidence | None) -> list[Unreachable]:
    """The numerics-relevant changes that cannot reach any array that moved."""
    ran = devices.known if devices else None
    if not ran:
        return []
    found = []
    for change in changes:
        if change.numerics and not device_reach(change) & ran:
            where = "ran on CPU" if ran == {"cpu"} else "ran on GPU"
            found.append(Unreachable(
                change=describe(change), path=change.path,
                reason=f"cannot affect: {where} (the arrays that moved were computed on"
                       f" {devices.shown})"))
    return found
