"""The verdict of a check, its exit code and its one-sentence headline.

Verdicts (docs/design.md, "Numerics"), from the arrays' statuses (``noise.array_status``, decided
once per array) and the detections, checked in this order:
- ``identical``: every stage and probe is bit-identical and the detections are the same;
- ``precision_loss``: some array's status is ``precision_loss``; this wins whatever the detections
  do, because reduced-precision math (TF32, bf16, fp16) is a finding even when today's images
  happen to come out the same;
- ``equivalent``: not identical, but every array is ``identical``, ``rounding`` or ``tolerated``
  (within a tolerance the user gave for that output) and the
  detections are the same (no box added, removed or changed class; scores may move);
- ``drift``: anything else (an array ``changed`` or ``not_run``, or detections changed).

What fails is one rule on the data (``fails_gate`` of an array and of the detections, in
``compare/types.py``); the verdict is built on it, so the exit code and the JUnit failures, which
read the same rule, cannot disagree: identical when nothing fails even under ``--strict``,
equivalent when nothing fails otherwise (and no precision was lost), else a finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envaudit.compare.types import (
    ACCEPTED_STATUSES,
    FINDINGS,
    VERDICTS,
    DetectionDiff,
    ModeResult,
    PrecisionWitness,
    TensorComparison,
    Verdict,
)
from envaudit.spelling import growth, number


def classify(
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff | None = None,
) -> Verdict:
    """One of ``VERDICTS`` for these judged comparisons (rules in the module docstring);
    ``detections`` None: arrays alone (the probes, which have no boxes)."""
    arrays = [*stages, *probes]

    def fails(strict: bool) -> bool:
        return any(a.fails_gate(strict) for a in arrays) or (
            detections is not None and detections.fails_gate(strict))

    if not fails(strict=True):
        return "identical"
    if any(a.status == "precision_loss" for a in arrays):
        return "precision_loss"
    if not fails(strict=False):
        return "equivalent"
    return "drift"


# Least to most severe: the verdict of a check over several modes is its worst mode's, and a mode
# that could not run (verdict None) counts as drift: the golden recorded a computation this
# environment cannot perform, which is never identical.
SEVERITY: tuple[str, ...] = ("identical", "equivalent", "drift", "precision_loss")


def worst(verdicts: Iterable[Verdict | None]) -> Verdict:
    """The most severe of per-mode verdicts (None, a mode that could not run, counts as drift)."""
    ranked = ["drift" if v is None else v for v in verdicts]
    return max(ranked, key=SEVERITY.index, default="identical")  # type: ignore[return-value]


def exit_code(verdict: Verdict, strict: bool = False) -> int:
    """0 for identical/equivalent, 1 for drift/precision_loss; ``strict``: 1 unless identical.
    With ``classify``'s verdict: 1 exactly when an array or the detections fail the gate."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICTS)}")
    if verdict in FINDINGS or (strict and verdict != "identical"):
        return 1
    return 0


def headline(
    verdict: Verdict,
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff,
    first_divergence: str | None = None,
    top_cause: str | None = None,
    modes: Sequence[ModeResult] = (),
) -> str:
    """One sentence a person understands at a glance: what happened and whether it matters.

    ``first_divergence``: the first stage that is not bit-identical; ``top_cause``: the best cause
    in words (e.g. "env.X: unset -> '0' (confirmed)"), appended when given; ``modes``: the
    per-mode results, named when more than one mode was checked."""
    differing = [s for s in stages if not s.identical]
    changed_probes = [p for p in probes if not p.identical]
    worst = max((a.max_rel for a in (*differing, *changed_probes)), default=0.0)
    det = _detections_phrase(detections)
    if verdict == "identical":
        text = (f"Identical: all {len(stages)} stage outputs and {len(probes)} probes are "
                f"bit-identical to golden; {det}")
    elif verdict == "equivalent":
        text = (f"Equivalent: {len(differing)} of {len(stages)} stages and "
                f"{len(changed_probes)} of {len(probes)} probes differ only by rounding (at most "
                f"{_num(worst)} of scale, same error against the float64 reference); {det}")
    elif verdict == "precision_loss":
        lossy = [a for a in (*stages, *probes) if a.status == "precision_loss"]
        w = max(lossy, key=lambda a: a.error_growth or 0.0)
        text = (f"Precision loss: the error against the float64 reference grew "
                f"{growth(w.error_growth, 'n/a')} at {w.kind} '{w.name}' ({_num(w.golden_error)}"
                f" -> {_num(w.current_error)}), the signature of reduced-precision math such as "
                f"TF32 or bf16; {det}")
    elif verdict == "drift":
        beyond = [a for a in (*stages, *probes) if a.status not in ACCEPTED_STATUSES]
        where = f" from stage '{first_divergence}' on" if first_divergence else ""
        if beyond:
            w = max(beyond, key=lambda a: a.max_rel)
            text = (f"Drift: outputs moved beyond rounding noise{where} (up to {_num(w.max_rel)} "
                    f"of scale, {w.kind} '{w.name}'); {det}")
        elif differing or changed_probes:
            text = (f"Drift: the numbers differ only by rounding (up to {_num(worst)} of scale), "
                    f"but {det}")
        else:
            text = f"Drift: {det}"
    else:
        raise ValueError(f"unknown verdict {verdict!r}")
    text += _modes_phrase(modes)
    if top_cause:
        text += f"; cause: {top_cause}"
    return text + "."


def _modes_phrase(modes: Sequence[ModeResult]) -> str:
    """"; moved in xla mode only (eager, graph identical)" and modes that could not run."""
    if len(modes) < 2:
        return ""
    not_run = [m.mode for m in modes if m.status == "not_run"]
    moved = [m.mode for m in modes if m.moved]
    same = [m.mode for m in modes if m.verdict == "identical"]
    parts = []
    if moved:
        parts.append(f"moved in {_listed(moved)} mode{'s' if len(moved) > 1 else ''}"
                     + (f" ({_listed(same)} identical)" if same else ""))
    elif not not_run:
        parts.append(f"in all {len(modes)} modes ({_listed(same)})")
    if not_run:
        parts.append(f"{_listed(not_run)} mode{'s' if len(not_run) > 1 else ''} could not run"
                     " here")
    return "; " + "; ".join(parts)


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _detections_phrase(d: DetectionDiff) -> str:
    if d.same and not d.changes:
        return f"all {d.golden} detections unchanged"
    if d.same:
        return (f"all {d.golden} detections still match (scores move by up to "
                f"{_num(d.max_score_delta)})")
    parts = [f"{n} {label}" for n, label in ((d.removed, "removed"), (d.added, "added"),
                                            (d.class_changed, "changed class")) if n]
    text = f"detections changed: {', '.join(parts)} (golden had {d.golden})"
    fragile = sum(1 for c in d.changes if c.expected_fragility)
    decided = d.removed + d.added + d.class_changed
    if fragile:
        which = ("a near-tie" if decided == 1 else "all near-ties" if fragile == decided
                 else f"{fragile} of {decided} near-ties")
        text += f", {which} within the measured noise: expected fragility"
    return text


def _num(value: float | None) -> str:
    return number(value, 1, missing="n/a")


def model_headline(
    verdict: Verdict,
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff | None,
    witness: PrecisionWitness,
    first_divergence: str | None = None,
    top_cause: str | None = None,
) -> str:
    """The headline of a user-model check: what moved in the model's own outputs and layers, its
    detections when it has them, and what the precision verdict rests on (the canary probes, as
    the model has no float64 twin)."""
    arrays = _array_counts(stages)
    differing = [s for s in stages if not s.identical]
    det = f"; {_detections_phrase(detections)}" if detections is not None else ""
    if verdict == "identical":
        text = f"Identical: {_all_of(stages, arrays)} bit-identical to golden{det}"
    elif verdict == "equivalent":
        worst_rel = max((s.max_rel for s in differing), default=0.0)
        accepted = ("rounding or the given tolerances"
                    if any(s.status == "tolerated" for s in stages) else "rounding")
        text = (f"Equivalent: {len(differing)} of {len(stages)} model arrays differ, within"
                f" {accepted} (up to {_num(worst_rel)} of scale){det}")
    elif verdict == "precision_loss":
        lossy = [p for p in probes if p.status == "precision_loss"]
        w = max(lossy, key=lambda a: a.error_growth or 0.0)
        moved = f"{len(differing)} of {len(stages)} model arrays differ" if differing else \
            "the model's arrays are bit-identical"
        text = (f"Precision loss: this environment does not compute fp32 at full precision:"
                f" canary probe '{w.name}' error against float64 grew"
                f" {growth(w.error_growth, 'n/a')} ({_num(w.golden_error)} ->"
                f" {_num(w.current_error)}), the signature of TF32 or bf16 math; {moved}{det}")
    elif verdict == "drift":
        beyond = [s for s in stages if s.status not in ACCEPTED_STATUSES]
        where = f" from '{first_divergence}' on" if first_divergence else ""
        if beyond:
            w = max(beyond, key=lambda a: a.max_rel)
            text = (f"Drift: the model's outputs moved beyond"
                    f" {'the tolerance' if w.tolerance else 'rounding noise'}{where} (up to"
                    f" {_num(w.max_rel)} of scale, {w.name}){det}")
        elif detections is not None and not detections.same:
            text = (f"Drift: the model's arrays differ only by rounding{where}, but"
                    f" {_detections_phrase(detections)}")
        else:
            state = "differ only by rounding" if differing else "are bit-identical"
            changed = [p.name for p in probes if p.status not in ACCEPTED_STATUSES]
            text = (f"Drift: the model's arrays {state}, but canary probes moved beyond rounding"
                    f" ({', '.join(changed[:4])}){det}")
    else:
        raise ValueError(f"unknown verdict {verdict!r}")
    if verdict != "precision_loss":
        text += ("; fp32 at full precision here" if witness.full_precision
                 else "; fp32 precision not shown here") + f" ({witness.probes} canary probes)"
    if top_cause:
        text += f"; cause: {top_cause}"
    return text + "."


def _all_of(stages: Sequence[TensorComparison], arrays: str) -> str:
    """"all 3 outputs and 12 layers are", or "the output is" when the model has one array
    ("all 1 output" reads as a slip)."""
    if len(stages) == 1 and arrays.startswith("1 "):
        return f"the {arrays[2:]} is"
    return f"all {arrays} are"


def _array_counts(stages: Sequence[TensorComparison]) -> str:
    """"3 outputs, 12 layers and 1 decoded input"."""
    counts = [(sum(s.role == role for s in stages), noun) for role, noun in
              (("output", "output"), ("layer", "layer"), ("input", "decoded input"))]
    parts = [f"{n} {noun}{'s' if n != 1 else ''}" for n, noun in counts if n]
    return _listed(parts) if parts else "0 arrays"
