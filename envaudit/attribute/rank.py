"""Rank candidate causes from the evidence, without re-running anything.

Evidence: the fingerprint changes (what changed and whether it can move numerics), the first
divergent stage, which stages changed by themselves (replay), and which probe families changed.
The result is at most "likely": only a confirmation re-run (``confirm.py``) may say "confirmed".
"""

from __future__ import annotations

from collections.abc import Sequence

from envaudit.attribute.model import Cause, describe
from envaudit.attribute.reach import DeviceEvidence, device_reach
from envaudit.fingerprint.model import Change
from envaudit.workload.architecture import MODES

# Which kernel families each kind of change is known to move. A change whose families overlap the
# families that actually changed is "likely"; one that cannot explain them is only "possible".
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "KMP_")
KERNEL_FAMILIES = {"conv", "matmul", "reduction", "softmax"}
ENV_FAMILIES: tuple[tuple[str, set[str], str], ...] = (
    ("TF_ENABLE_ONEDNN_OPTS", KERNEL_FAMILIES,
     "switches TensorFlow between oneDNN and Eigen kernels for convolutions, matmuls, softmax"),
    ("ONEDNN_MAX_CPU_ISA", KERNEL_FAMILIES, "caps the instruction set oneDNN kernels may use"),
    ("DNNL_MAX_CPU_ISA", KERNEL_FAMILIES, "caps the instruction set oneDNN kernels may use"),
    ("ONEDNN_DEFAULT_FPMATH_MODE", KERNEL_FAMILIES | {"precision"},
     "lets oneDNN compute fp32 ops in reduced precision (bf16/tf32)"),
    ("TF_SET_ONEDNN_FPMATH_MODE", KERNEL_FAMILIES | {"precision"},
     "lets oneDNN compute fp32 ops in reduced precision"),
    ("NVIDIA_TF32_OVERRIDE", KERNEL_FAMILIES | {"precision"}, "enables TF32 math on NVIDIA GPUs"),
    ("TF_ENABLE_TF32", KERNEL_FAMILIES | {"precision"}, "enables TF32 math"),
    ("XLA_FLAGS", KERNEL_FAMILIES | {"transcendental"}, "changes how XLA compiles and fuses ops"),
    ("TF_XLA_FLAGS", KERNEL_FAMILIES | {"transcendental"}, "turns XLA auto-clustering on or off"),
    ("TF_DETERMINISTIC_OPS", {"reduction", "conv", "matmul"}, "forces deterministic kernels"),
    ("TF_CUDNN", {"conv"}, "selects cuDNN convolution algorithms"),
    ("CUDA_VISIBLE_DEVICES", KERNEL_FAMILIES | {"transcendental"},
     "changes which device (GPU or CPU) runs the ops"),
    ("LD_PRELOAD", KERNEL_FAMILIES | {"transcendental", "decode"},
     "loads other library code into the process"),
    ("LD_LIBRARY_PATH", KERNEL_FAMILIES | {"transcendental", "decode"},
     "can load other CUDA/cuDNN/BLAS libraries"),
)
CATEGORY_FAMILIES: dict[str, tuple[set[str], str]] = {
    "tensorflow": (KERNEL_FAMILIES | {"transcendental", "resize", "decode", "nms"},
                   "a TensorFlow release changes kernels, math functions and the image codec"),
    "cpu": (KERNEL_FAMILIES | {"transcendental"},
            "another CPU or instruction set picks other vectorised kernels"),
    "gpu": (KERNEL_FAMILIES | {"transcendental"}, "another GPU runs other kernels"),
    "driver": (KERNEL_FAMILIES, "a driver change can change which GPU kernels run"),
    "cuda": (KERNEL_FAMILIES | {"transcendental"}, "CUDA libraries provide the GPU kernels"),
    "cudnn": ({"conv"}, "cuDNN provides the GPU convolutions"),
    "numerics-env": (KERNEL_FAMILIES, "a numerics-relevant variable changed"),
    "packages": (KERNEL_FAMILIES | {"decode"}, "a numerics library changed version"),
    "os": ({"transcendental", "decode"}, "system libraries (libm, codecs) changed"),
    "python": (set(), "the Python interpreter does not run the kernels"),
}


# The execution modes each kind of change can reach, where that is less than all of them. XLA
# compiles its own CPU code: the switches of TensorFlow's own kernels (oneDNN, its fp-math mode)
# do not reach it -- measured: TF_ENABLE_ONEDNN_OPTS=0 moves eager and graph and leaves xla
# bit-identical. XLA_FLAGS reach only what XLA compiles; TF_XLA_FLAGS turn auto-clustering on in
# traced graphs and reach the jit-compiled function too.
MODE_REACH: tuple[tuple[str, frozenset[str]], ...] = (
    ("TF_ENABLE_ONEDNN_OPTS", frozenset({"eager", "graph"})),
    ("TF_SET_ONEDNN_FPMATH_MODE", frozenset({"eager", "graph"})),
    ("ONEDNN_", frozenset({"eager", "graph"})),
    ("DNNL_", frozenset({"eager", "graph"})),
    ("XLA_FLAGS", frozenset({"xla"})),
    ("TF_XLA_FLAGS", frozenset({"graph", "xla"})),
)
# What a pattern of moved modes says on its own (docs/design.md, "Execution modes").
MODE_PATTERNS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"xla"}), "only xla moved: XLA code generation changed (an XLA or TensorFlow"
                         " release, XLA_FLAGS)"),
    (frozenset({"graph"}), "only graph moved: a grappler rewrite changed"),
    (frozenset({"graph", "xla"}), "graph and xla moved but not eager: graph-level rewriting or"
                                  " compilation changed, not the kernels"),
    (frozenset({"eager", "graph"}), "eager and graph moved, xla identical: TensorFlow's own"
                                    " kernels changed; XLA's generated code did not"),
)


def mode_reach(change: Change) -> frozenset[str]:
    """The execution modes this change can move (all of them unless ``MODE_REACH`` says less)."""
    if change.path.startswith("env."):
        name = change.path[4:]
        for prefix, modes in MODE_REACH:
            if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
                return modes
    return frozenset(MODES)


def mode_pattern(moved: Sequence[str], checked: Sequence[str]) -> str | None:
    """The evidence of which modes moved, when several were checked."""
    if len(checked) < 2:
        return None
    moved_set = frozenset(moved)
    same = [m for m in checked if m not in moved_set]
    meaning = next((text for pattern, text in MODE_PATTERNS if pattern == moved_set), None)
    if meaning is None:
        meaning = ("every mode moved: the kernels themselves changed" if moved_set == set(checked)
                   else f"modes that moved: {', '.join(moved)}")
    return meaning + (f" (identical: {', '.join(same)})" if same and moved_set else "")


def _env_rule(name: str) -> tuple[set[str], str]:
    if name.startswith(THREAD_VARS):
        return {"reduction", "matmul", "conv"}, "changes the thread count, so the summation order"
    for prefix, families, why in ENV_FAMILIES:
        if name.startswith(prefix):
            return families, why
    return set(CATEGORY_FAMILIES["numerics-env"][0]), CATEGORY_FAMILIES["numerics-env"][1]


def _groups(changes: Sequence[Change]) -> list[list[Change]]:
    """Numerics-relevant changes grouped by origin, the most telling one first in each group.

    Every variable is its own group (each can be put back and confirmed alone), and so is every
    installed distribution (each can be put back by an environment bisection); other changes
    group by category, so one TensorFlow upgrade is one cause and not five. Everything that comes
    with the TensorFlow install (``is_tensorflow_install``: its version, distribution name, build
    fields, CUDA build numbers included) is the TensorFlow group, headed by its version.
    """
    groups: dict[str, list[Change]] = {}
    for change in changes:
        if not change.numerics:
            continue
        if change.path.startswith("env."):
            key = change.path
        elif is_tensorflow_install(change.path):
            key = "tensorflow"
        elif change.path.startswith("packages."):
            key = "packages." + change.path.split(".")[1]
        elif change.path.startswith("numerics_libs."):
            key = "packages.numpy"  # NumPy's version, build and the OpenBLAS it carries
        else:
            key = change.category
        groups.setdefault(key, []).append(change)
    for members in groups.values():
        members.sort(key=lambda c: (not c.path.endswith("version"), c.path.count("."), c.path))
    return list(groups.values())


# Distributions that install TensorFlow itself (their ``packages.NAME`` fields join its group).
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly",
                            "tf-nightly-cpu", "tensorflow-intel", "intel-tensorflow",
                            "tensorflow-macos", "tensorflow-aarch64", "tensorflow-cpu-aws",
                            "tensorflow-rocm")


def is_tensorflow_install(path: str) -> bool:
    """Whether a fingerprint path describes the TensorFlow install: ``tensorflow.*`` (version,
    distribution, build info) but not the CUDA libraries it found or loaded, and the
    ``packages.<distribution>`` entries of TensorFlow's own distributions."""
    if path.startswith(("tensorflow.nvidia_wheels", "tensorflow.loaded_libraries")):
        return False
    if path.startswith("tensorflow.") or path == "tensorflow":
        return True
    parts = path.split(".")
    return parts[0] == "packages" and len(parts) > 1 and parts[1] in TENSORFLOW_DISTRIBUTIONS


# How a cause's score is made (the ranking is by score, ties keep the diff's order). Each weight
# rewards a piece of evidence held as data, never words in the evidence text:
# - W_LIKELY: the change's rule explains what moved (it is known to move a probe family that
#   changed, it reaches a mode that moved, and reduced precision if that is what was seen). It
#   outweighs everything else a "possible" cause can earn (at most W_SETTING), so every likely
#   cause ranks above every possible one.
W_LIKELY = 10
# - W_FAMILY, per probe family that changed and that the change is known to move: the more of
#   what moved a change explains, the more telling it is.
W_FAMILY = 2
# - W_SETTING: a variable is set on purpose, one at a time, and a re-run can put it back: where it
#   explains as much as another change, it is the better lead.
W_SETTING = 3
# Changes that cannot reach the devices that computed what moved are not ranked at all
# (``reach.unreachable`` lists them); devices are evidence, not a weight.


def rank_causes(
    changes: Sequence[Change],
    changed_families: Sequence[str],
    first_stage: str | None,
    changed_stages: Sequence[str],
    precision_lost: bool,
    moved_modes: Sequence[str] = (),
    checked_modes: Sequence[str] = (),
    devices: DeviceEvidence | None = None,
) -> list[Cause]:
    """Candidate causes, most plausible first; confidences are "likely" or "possible".
    ``moved_modes`` of ``checked_modes``: which execution modes moved (evidence, see
    ``MODE_PATTERNS``); a change that reaches none of them is only "possible". ``devices``: where
    the arrays that moved were computed; a group whose leading change cannot reach them is left
    out (``reach.unreachable`` says so)."""
    modes_evidence = mode_pattern(moved_modes, checked_modes)
    observed = set(changed_families) | ({"precision"} if precision_lost else set())
    where = (f"the first divergent stage is {first_stage}"
             + (f"; stages that changed by themselves: {', '.join(changed_stages)}"
                if changed_stages else "")) if first_stage else "no stage diverged"
    pattern = (f"probe families that changed: {', '.join(sorted(changed_families))}"
               if changed_families else "no op probe changed")
    scored: list[tuple[int, Cause]] = []
    precision_explained = False  # does some change's rule name reduced precision?
    ran = devices.known if devices else None
    for group in _groups(changes):
        change = group[0]
        if ran and not device_reach(change) & ran:
            continue
        if change.path.startswith("env."):
            families, why = _env_rule(change.path[4:])
        else:
            families, why = CATEGORY_FAMILIES.get(change.category, (set(), "changed"))
        overlap = families & observed
        precision_explained |= "precision" in families
        reach = mode_reach(change)
        reaches_moved = not moved_modes or bool(reach & set(moved_modes))
        likely = bool(overlap) and reaches_moved and (
            not precision_lost or "precision" in families
            or change.category in ("gpu", "cuda", "tensorflow", "cpu"))
        evidence = [f"{describe(change)} — {why}", where, pattern]
        if devices:
            evidence.append(f"the arrays that moved were computed on {devices.shown}")
        if modes_evidence:
            evidence.append(modes_evidence)
            if not reaches_moved:
                evidence.append(f"it cannot reach the modes that moved (it reaches"
                                f" {', '.join(m for m in MODES if m in reach)})")
        if overlap:
            evidence.append(f"it can move the families that changed ({', '.join(sorted(overlap))})")
        else:
            evidence.append("it is not known to move the families that changed")
        if len(group) > 1:
            shown = ", ".join(c.path for c in group[1:6]) + (
                f" and {len(group) - 6} more" if len(group) > 6 else "")
            evidence.append(f"changed with it: {shown}")
        score = (W_FAMILY * len(overlap) + (W_SETTING if change.path.startswith("env.") else 0)
                 + (W_LIKELY if likely else 0))
        cause = Cause(change=describe(change), confidence="likely" if likely else "possible",
                      evidence=tuple(evidence), path=change.path,
                      related=tuple(c.path for c in group[1:]))
        scored.append((score, cause))
    scored.sort(key=lambda item: -item[0])
    causes = [cause for _score, cause in scored]
    if precision_lost and not precision_explained:
        causes.append(Cause(
            change="reduced-precision math (TF32, bf16 or a fast-math mode) not visible in the"
                   " fingerprint",
            confidence="possible",
            evidence=("the error against the float64 twin grew far beyond fp32 rounding", where,
                      pattern)))
    if not causes:
        causes.append(Cause(
            change="a change the fingerprint does not record (hardware, microcode, a library"
                   " loaded at run time) or nondeterminism",
            confidence="possible",
            evidence=("no numerics-relevant fingerprint field differs from the golden one", where,
                      pattern, "run 'envaudit check --repeat 3' to measure nondeterminism")))
    return causes
