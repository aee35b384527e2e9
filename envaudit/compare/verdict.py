"""The verdict of a check, its exit code and its one-sentence headline.

Verdicts (docs/design.md, "Numerics"), from the arrays' statuses (``noise.array_status``, decided
once per array) and the detections, checked in this order:
- ``identical``: every stage and probe is bit-identical and the detections are the same;
- ``precision_loss``: some array's status is ``precision_loss``; this wins whatever the detections
  do, because reduced-precision math (TF32, bf16, fp16) is a finding even when today's images
  happen to come out the same;
- ``equivalent``: not identical, but every array is ``identical`` or ``rounding`` and the
  detections are the same (no box added, removed or changed class; scores may move);
- ``drift``: anything else (an array ``changed`` or ``not_run``, or detections changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, get_args

from envaudit.compare.model import DetectionDiff, ModeResult, TensorComparison
from envaudit.render.formatting import growth, number

Verdict = Literal["identical", "equivalent", "drift", "precision_loss"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
FINDINGS: tuple[Verdict, ...] = ("drift", "precision_loss")
_AT_FLOOR = ("identical", "rounding")


def classify(
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff | None = None,
) -> Verdict:
    """One of ``VERDICTS`` for these judged comparisons (rules in the module docstring);
    ``detections`` None: arrays alone (the probes, which have no boxes)."""
    arrays = [*stages, *probes]
    boxes_same = detections is None or detections.same
    boxes_unmoved = detections is None or (detections.same and not detections.changes)
    if all(a.status == "identical" for a in arrays) and boxes_unmoved:
        return "identical"
    if any(a.status == "precision_loss" for a in arrays):
        return "precision_loss"
    if boxes_same and all(a.status in _AT_FLOOR for a in arrays):
        return "equivalent"
    return "drift"


# Least to most severe: the verdict of a check over several modes is its worst mode's, and a mode
# that could not run ("not_run") counts as drift: the golden recorded a computation this
# environment cannot perform, which is never identical.
SEVERITY: tuple[str, ...] = ("identical", "equivalent", "drift", "precision_loss")


def worst(verdicts: Iterable[str]) -> Verdict:
    """The most severe of per-mode verdicts ("not_run" counts as drift)."""
    ranked = ["drift" if v == "not_run" else v for v in verdicts]
    return max(ranked, key=SEVERITY.index, default="identical")  # type: ignore[return-value]


def exit_code(verdict: Verdict, strict: bool = False) -> int:
    """0 for identical/equivalent, 1 for drift/precision_loss; ``strict``: 1 unless identical."""
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
        beyond = [a for a in (*stages, *probes) if a.status not in _AT_FLOOR]
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
    not_run = [m.mode for m in modes if m.verdict == "not_run"]
    moved = [m.mode for m in modes if m.verdict not in ("identical", "not_run")]
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
