"""Rank candidate causes from the evidence, without re-running anything.

Evidence: the fingerprint changes (what changed and whether it can move numerics), the first
divergent stage, which stages changed by themselves (replay), and which probe families changed.
The result is at most "likely": only a confirmation re-run (``confirm.py``) may say "confirmed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envaudit import modes, settings
from envaudit.attribute.reach import (
    FLOAT64_FIELDS,
    DeviceEvidence,
    device_reach,
    reaches_tensorflow,
)
from envaudit.attribute.types import Cause, describe
from envaudit.fingerprint.types import Change
from envaudit.tf32 import TF32_CATEGORY, TF32_FAMILIES, TF32_PATH, TF32_WHY

# Which kernel families each kind of change is known to move. A change whose families overlap the
# families that actually changed is "likely"; one that cannot explain them is only "possible".
# A variable's families, devices, code and computations are in its record
# (``envaudit/settings.py``); fingerprint fields go by category here.
KERNEL_FAMILIES = set(settings.KERNELS)
CATEGORY_FAMILIES: dict[str, tuple[set[str], str]] = {
    "tensorflow": (KERNEL_FAMILIES | {"transcendental", "resize", "decode", "nms"},
                   "a TensorFlow release changes kernels, math functions and the image codec"),
    "cpu": (KERNEL_FAMILIES | {"transcendental"},
            "another CPU or instruction set picks other vectorised kernels"),
    "gpu": (KERNEL_FAMILIES | {"transcendental"}, "another GPU runs other kernels"),
    "driver": (KERNEL_FAMILIES, "a driver change can change which GPU kernels run"),
    "cuda": (KERNEL_FAMILIES | {"transcendental"}, "CUDA libraries provide the GPU kernels"),
    "cudnn": ({"conv"}, "cuDNN provides the GPU convolutions"),
    "packages": (KERNEL_FAMILIES | {"decode"}, "a numerics library changed version"),
    "os": ({"transcendental", "decode"}, "system libraries (libm, codecs) changed"),
    "python": (set(), "the Python interpreter does not run the kernels"),
    # Not a fingerprint field: TF32 on here and not in the golden (``tf32.suspected``).
    TF32_CATEGORY: (set(TF32_FAMILIES), TF32_WHY),
}


# What a pattern of moved modes says on its own (docs/design.md, "Execution modes"). Keyed by the
# built-in modes' names: a pattern that includes another mode matches none of these.
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
    """The registered execution modes this change can move: for a variable, the modes that run
    code its record reaches (``settings.Setting.codes`` against ``modes.ExecutionMode.codes``);
    for any other change, every mode."""
    names = modes.names()
    if change.path.startswith("env."):
        record = settings.setting(change.path[4:])
        return frozenset(m for m in names if record.reaches_code(modes.get(m).codes))
    return frozenset(names)


def mode_pattern(moved: Sequence[str], checked: Sequence[str]) -> str | None:
    """The evidence of which modes moved, when several were checked."""
    if len(checked) < 2:
        return None
    moved_set = frozenset(moved)
    if not moved_set:
        return "no mode's stages moved: only op probes did"
    same = [m for m in checked if m not in moved_set]
    # Each pattern's words speak of all three built-in modes ("xla identical"): only where all
    # three were checked.
    told = {"eager", "graph", "xla"} <= set(checked)
    meaning = next((text for pattern, text in MODE_PATTERNS if pattern == moved_set and told),
                   None)
    if meaning is None:
        meaning = ("every mode moved: the kernels themselves changed" if moved_set == set(checked)
                   else f"modes that moved: {', '.join(moved)}")
    return meaning + (f" (identical: {', '.join(same)})" if same and moved_set else "")


def _env_rule(name: str) -> tuple[set[str], str]:
    """A variable's families (a copy the caller may change) and what it changes."""
    record = settings.setting(name)
    return set(record.families), record.why


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
        elif change.path.startswith(FLOAT64_FIELDS):
            key = "float64"  # NumPy's OpenBLAS and build: never joined to NumPy's version
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
    distribution, build info) but not the CUDA libraries it found or loaded nor its TF32 switch
    (a setting of the run, ``tf32.py``), and the ``packages.<distribution>`` entries of
    TensorFlow's own distributions."""
    if path.startswith(("tensorflow.nvidia_wheels", "tensorflow.loaded_libraries", TF32_PATH)):
        return False
    if path.startswith("tensorflow.") or path == "tensorflow":
        return True
    parts = path.split(".")
    return parts[0] == "packages" and len(parts) > 1 and parts[1] in TENSORFLOW_DISTRIBUTIONS


# How causes are ordered: every "likely" cause before every "possible" one, then by score, ties
# keeping the diff's order. Confirmation re-runs go in this order too (``confirm.py``), so the
# headline without them is the cause they would test first. Each weight rewards a piece of
# evidence held as data, never words in the evidence text:
# - W_LIKELY: the change's rule explains what moved (it is known to move a probe family that
#   changed, it reaches a mode that moved, and reduced precision if that is what was seen).
W_LIKELY = 10
# - W_FAMILY, per probe family that changed and that the change is known to move: the more of
#   what moved a change explains, the more telling it is.
W_FAMILY = 2
# - W_SETTING: a variable is set on purpose, one at a time, and a re-run can put it back: where it
#   explains as much as another change, it is the better lead.
W_SETTING = 3
# - W_MODES: with several modes checked, the modes it reaches are exactly the modes that moved
#   (oneDNN's switch when eager and graph moved and xla did not; a CPU when all three moved). It
#   outweighs W_SETTING: a pattern that fits is stronger evidence than being a variable.
W_MODES = 4
# - W_ISA: the CPU's instruction sets differ and every checked mode moved. Each mode runs
#   vectorised code chosen for this CPU (TensorFlow's kernels, oneDNN's, XLA's generated code),
#   so this outranks any variable that explains no more families than the CPU does.
W_ISA = W_SETTING + 1
# Changes that cannot reach the devices that computed what moved, and changes that reach only
# NumPy's float64 references, are not ranked at all (``reach.unreachable`` lists them).


@dataclass(frozen=True)
class Observed:
    """What moved, in the terms every candidate cause is judged by."""

    families: frozenset[str]  # probe families that changed, and "precision" if it was lost
    precision_lost: bool
    moved: frozenset[str]  # execution modes whose stages moved
    checked: frozenset[str]  # execution modes checked
    where: str  # evidence: the first divergent stage and the stages that changed by themselves
    pattern: str  # evidence: the probe families that changed
    modes_evidence: str | None  # evidence: what the pattern of moved modes says
    devices: DeviceEvidence | None

    @property
    def every_mode_moved(self) -> bool:
        return bool(self.moved) and self.moved == self.checked


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
    seen = _observed(changed_families, first_stage, changed_stages, precision_lost, moved_modes,
                     checked_modes, devices)
    ran = devices.known if devices else None
    scored: list[tuple[bool, int, Cause]] = []
    precision_explained = False  # does some change's rule name reduced precision?
    left_out = 0  # changes that cannot reach what moved
    for group in _groups(changes):
        change = group[0]
        if not reaches_tensorflow(change) or (ran and not device_reach(change) & ran):
            left_out += 1
            continue
        if change.path.startswith("env."):
            families, why = _env_rule(change.path[4:])
        else:
            families, why = CATEGORY_FAMILIES.get(change.category, (set(), "changed"))
        precision_explained |= "precision" in families
        scored.append(_judged(group, families, why, seen))
    scored.sort(key=lambda item: (not item[0], -item[1]))
    causes = [cause for _likely, _score, cause in scored]
    return causes + _fallbacks(bool(causes), seen, precision_explained, left_out)


def _observed(changed_families: Sequence[str], first_stage: str | None,
              changed_stages: Sequence[str], precision_lost: bool, moved_modes: Sequence[str],
              checked_modes: Sequence[str], devices: DeviceEvidence | None) -> Observed:
    where = (f"the first divergent stage is {first_stage}"
             + (f"; stages that changed by themselves: {', '.join(changed_stages)}"
                if changed_stages else "")) if first_stage else "no stage diverged"
    pattern = (f"probe families that changed: {', '.join(sorted(changed_families))}"
               if changed_families else "no op probe changed")
    return Observed(
        families=frozenset(changed_families) | ({"precision"} if precision_lost else set()),
        precision_lost=precision_lost, moved=frozenset(moved_modes),
        checked=frozenset(checked_modes), where=where, pattern=pattern,
        modes_evidence=mode_pattern(moved_modes, checked_modes), devices=devices)


def _judged(group: Sequence[Change], families: set[str], why: str, seen: Observed
            ) -> tuple[bool, int, Cause]:
    """One group's cause: whether it is likely, its score (the weights above) and the cause."""
    change = group[0]
    overlap = families & seen.families
    reach = mode_reach(change)
    reaches_moved = not seen.moved or bool(reach & seen.moved)
    likely = bool(overlap) and reaches_moved and (
        not seen.precision_lost or "precision" in families
        or change.category in ("gpu", "cuda", "tensorflow", "cpu"))
    fits_modes = len(seen.checked) > 1 and bool(seen.moved) and reach & seen.checked == seen.moved
    isa = seen.every_mode_moved and any(c.path.startswith("cpu.flags.") for c in group)
    evidence = [f"{describe(change)} — {why}", seen.where, seen.pattern]
    if seen.devices:
        evidence.append(f"the arrays that moved were computed on {seen.devices.shown}")
    if seen.modes_evidence:
        evidence.append(seen.modes_evidence)
        if not reaches_moved:
            evidence.append(f"it cannot reach the modes that moved (it reaches"
                            f" {', '.join(m for m in modes.names() if m in reach)})")
        elif fits_modes and seen.moved != set(modes.names()):
            evidence.append("it reaches exactly the modes that moved")
    if isa:
        evidence.append("the instruction sets differ and every mode moved: each mode runs"
                        " vectorised code chosen for the CPU")
    if overlap:
        evidence.append(f"it can move the families that changed ({', '.join(sorted(overlap))})")
    else:
        evidence.append("it is not known to move the families that changed")
    if len(group) > 1:
        shown = ", ".join(c.path for c in group[1:6]) + (
            f" and {len(group) - 6} more" if len(group) > 6 else "")
        evidence.append(f"changed with it: {shown}")
    score = (W_FAMILY * len(overlap) + (W_SETTING if change.path.startswith("env.") else 0)
             + (W_LIKELY if likely else 0) + (W_MODES if fits_modes else 0)
             + (W_ISA if isa else 0))
    cause = Cause(change=describe(change), confidence="likely" if likely else "possible",
                  evidence=tuple(evidence), path=change.path,
                  related=tuple(c.path for c in group[1:]))
    return likely, score, cause


def _fallbacks(ranked: bool, seen: Observed, precision_explained: bool, left_out: int
               ) -> list[Cause]:
    """The causes that no fingerprint change names: reduced precision nobody set, and, when
    nothing was ranked, a change the fingerprint does not record."""
    extra = []
    if seen.precision_lost and not precision_explained:
        extra.append(Cause(
            change="reduced-precision math (TF32, bf16 or a fast-math mode) not visible in the"
                   " fingerprint",
            confidence="possible",
            evidence=("the error against the float64 twin grew far beyond fp32 rounding",
                      seen.where, seen.pattern)))
    if not ranked and not extra:
        extra.append(Cause(
            change="a change the fingerprint does not record (hardware, microcode, a library"
                   " loaded at run time) or nondeterminism",
            confidence="possible",
            evidence=("no numerics-relevant fingerprint field differs from the golden one"
                      if not left_out else "no fingerprint field that differs from the golden"
                      " one can reach the arrays that moved", seen.where,
                      seen.pattern, "run 'envaudit check --repeat 3' to measure nondeterminism")))
    return extra
