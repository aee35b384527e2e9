"""The verdict of a check, its exit code and its one-sentence headline.

Verdicts (DESIGN.md, issue 4), checked in this order:
- ``identical``: every stage and probe is bit-identical and the detections are the same;
- ``precision_loss``: some float array's error against the float64 twin grew by more than
  ``PRECISION_LOSS_FACTOR`` and now exceeds ``PRECISION_LOSS_FLOOR_ULPS`` unit roundoffs of its
  dtype; this wins whatever the detections do, because reduced-precision math (TF32, bf16, fp16)
  is a finding even when today's images happen to come out the same;
- ``equivalent``: not identical, but every array that differs sits at the rounding-noise floor and
  the detections are the same (no box added, removed or changed class; scores may move);
- ``drift``: anything else (beyond noise, or detections changed).

"At the noise floor", per differing array, is the first of these that applies:
- within the run-to-run spread measured by ``--repeat`` (``max_abs <= nondeterminism_spread``);
- both runs have an error against the twin: the two errors agree within ``EQUIVALENT_FACTOR`` of
  each other, up to an absolute slack of ``EQUIVALENT_SLACK_ULPS`` unit roundoffs. Symmetric on
  purpose: a golden recorded under bf16 and a current at fp32 do not "sit at the same floor";
- no twin error: a float array whose ``max_rel`` is at most ``EQUIVALENT_MAX_REL_ULPS`` unit
  roundoffs of its scale. An integer array (decoded pixels, class ids) that differs is never noise.

All thresholds are in units of the array dtype's unit roundoff (eps/2; 2**-24 ~ 6e-8 for fp32), so
they mean the same thing for any float dtype. Pure Python and NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

from envaudit.compare.model import DetectionDiff, TensorComparison
from envaudit.compare.tensors import is_float, unit_roundoff
from envaudit.result import VERDICTS

FINDINGS = ("drift", "precision_loss")

# Two fp32 runs that only reorder operations have errors against float64 of the same size; their
# ratio scatters around 1 and stays well within 2x for arrays of more than a few elements.
EQUIVALENT_FACTOR = 2.0
# 16 unit roundoffs (~1e-6 for fp32): relative RMS errors below this are rounding noise however
# their ratio looks (an exact stage with error 0 against one with error 1e-7 is not a finding).
EQUIVALENT_SLACK_ULPS = 16.0
# Without a twin: 2048 unit roundoffs (~1.2e-4 of scale for fp32) covers reordered reductions over
# thousands of terms and a few layers of propagation; a real change of kernel math is larger.
EQUIVALENT_MAX_REL_ULPS = 2048.0
# Reduced precision rounds to 8 (bf16) or 11 (fp16, TF32) significant bits instead of 24: the error
# against float64 grows ~100-10000x. 8x is far outside fp32 reordering scatter (see above) ...
PRECISION_LOSS_FACTOR = 8.0
# ... and the error must also exceed 128 fp32 unit roundoffs (~7.6e-6): still ~60x below TF32's
# own unit roundoff (2**-11 ~ 4.9e-4), but far above any fp32 noise, so that a stage that was
# exact (error 0) and picks up 1e-7 of rounding is not called precision loss.
PRECISION_LOSS_FLOOR_ULPS = 128.0


def error_growth(comparison: TensorComparison) -> float | None:
    """current_error / golden_error, or None without both errors (``inf`` from an exact golden)."""
    g, c = comparison.golden_error, comparison.current_error
    if g is None or c is None:
        return None
    if g == 0.0:
        return 1.0 if c == 0.0 else float("inf")
    return c / g


def lost_precision(comparison: TensorComparison) -> bool:
    """Whether this array's error against the twin grew like reduced-precision math's does."""
    growth = error_growth(comparison)
    if growth is None or not is_float(comparison.dtype) or comparison.identical:
        return False
    floor = PRECISION_LOSS_FLOOR_ULPS * unit_roundoff(comparison.dtype)
    return growth > PRECISION_LOSS_FACTOR and comparison.current_error > floor


def at_noise_floor(comparison: TensorComparison, nondeterminism_spread: float = 0.0) -> bool:
    """Whether a difference in this array is rounding noise (see the module docstring)."""
    if comparison.identical:
        return True
    if comparison.max_abs <= nondeterminism_spread:
        return True
    if not is_float(comparison.dtype):
        return False
    u = unit_roundoff(comparison.dtype)
    g, c = comparison.golden_error, comparison.current_error
    if g is not None and c is not None:
        slack = EQUIVALENT_SLACK_ULPS * u
        return c <= g * EQUIVALENT_FACTOR + slack and g <= c * EQUIVALENT_FACTOR + slack
    return comparison.max_rel <= EQUIVALENT_MAX_REL_ULPS * u


def classify(
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff,
    nondeterminism_spread: float = 0.0,
) -> str:
    """One of ``VERDICTS`` for these comparisons (rules in the module docstring)."""
    arrays = [*stages, *probes]
    detections_same = detections.same
    if all(a.identical for a in arrays) and detections_same and not detections.changes:
        return "identical"
    if any(lost_precision(a) for a in arrays):
        return "precision_loss"
    if detections_same and all(at_noise_floor(a, nondeterminism_spread) for a in arrays):
        return "equivalent"
    return "drift"


def exit_code(verdict: str, strict: bool = False) -> int:
    """0 for identical/equivalent, 1 for drift/precision_loss; ``strict``: 1 unless identical."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICTS)}")
    if verdict in FINDINGS or (strict and verdict != "identical"):
        return 1
    return 0


def headline(
    verdict: str,
    stages: Sequence[TensorComparison],
    probes: Sequence[TensorComparison],
    detections: DetectionDiff,
    first_divergence: str | None = None,
    top_cause: str | None = None,
    nondeterminism_spread: float = 0.0,
) -> str:
    """One sentence a person understands at a glance: what happened and whether it matters.

    ``first_divergence``: the first stage that is not bit-identical; ``top_cause``: the best cause
    in words (e.g. "env.X: unset -> '0' (confirmed)"), appended when given."""
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
        lossy = [a for a in (*stages, *probes) if lost_precision(a)]
        w = max(lossy, key=lambda a: error_growth(a) or 0.0)
        text = (f"Precision loss: the error against the float64 reference grew "
                f"{_growth(error_growth(w))} at {w.kind} '{w.name}' ({_num(w.golden_error)} -> "
                f"{_num(w.current_error)}), the signature of reduced-precision math such as "
                f"TF32 or bf16; {det}")
    elif verdict == "drift":
        beyond = [a for a in (*stages, *probes) if not at_noise_floor(a, nondeterminism_spread)]
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
    if top_cause:
        text += f"; cause: {top_cause}"
    return text + "."


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
    if value is None:
        return "n/a"
    return f"{value:.1e}" if value else "0"


def _growth(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == float("inf"):
        return "from exactly 0"
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"
