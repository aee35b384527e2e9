"""Rounding noise or a real change? The rules that decide each compared array's ``status``.

Per array, in this order (``array_status``):
- ``identical``: the bytes are equal;
- ``precision_loss``: the array's error against the float64 twin grew by more than
  ``PRECISION_LOSS_FACTOR`` and now exceeds ``PRECISION_LOSS_FLOOR_ULPS`` unit roundoffs of its
  dtype: the signature of reduced-precision math (TF32, bf16, fp16), a finding even when today's
  detections happen to survive it;
- ``rounding``: the difference sits at the rounding-noise floor, by the first of these that
  applies: within the run-to-run spread measured by ``--repeat`` (``max_abs <= spread``); with a
  twin error on both sides, the two errors agree within ``EQUIVALENT_FACTOR`` of each other up to
  an absolute slack of ``EQUIVALENT_SLACK_ULPS`` unit roundoffs (symmetric on purpose: a golden
  recorded under bf16 and a current at fp32 do not "sit at the same floor"); without twin
  errors, a float array whose ``max_rel`` is at most ``EQUIVALENT_MAX_REL_ULPS`` unit roundoffs
  of its scale. An integer array (decoded pixels, class ids) that differs is never noise;
- ``changed``: anything else (``not_run`` is set where the array was not produced at all).

All thresholds are in units of the array dtype's unit roundoff (eps/2; 2**-24 ~ 6e-8 for fp32),
so they mean the same thing for any float dtype. See docs/design.md, "Numerics". Pure Python.
"""

from __future__ import annotations

from envaudit.compare.types import (
    EQUIVALENT_MAX_REL_ULPS,
    EQUIVALENT_SLACK_ULPS,
    ArrayStatus,
    TensorComparison,
)
from envaudit.compare.units import is_float, unit_roundoff

# Two fp32 runs that only reorder operations have errors against float64 of the same size; their
# ratio scatters around 1 and stays well within 2x for arrays of more than a few elements.
EQUIVALENT_FACTOR = 2.0
# EQUIVALENT_SLACK_ULPS (compare/types.py, where the charts read it too): relative RMS errors
# below it are rounding noise however their ratio looks.
# EQUIVALENT_MAX_REL_ULPS (compare/types.py, where the charts read it too): without a twin, a
# float array whose max_rel is at most this many unit roundoffs is rounding noise.
# Reduced precision rounds to 8 (bf16) or 11 (fp16, TF32) significant bits instead of 24: the error
# against float64 grows ~100-10000x. 8x is far outside fp32 reordering scatter (see above) ...
PRECISION_LOSS_FACTOR = 8.0
# ... and the error must also exceed 128 fp32 unit roundoffs (~7.6e-6): still ~60x below TF32's
# own unit roundoff (2**-11 ~ 4.9e-4), but far above any fp32 noise, so that a stage that was
# exact (error 0) and picks up 1e-7 of rounding is not called precision loss.
PRECISION_LOSS_FLOOR_ULPS = 128.0


def array_status(comparison: TensorComparison, spread: float = 0.0) -> ArrayStatus:
    """The status of one compared array (rules in the module docstring)."""
    if comparison.status == "not_run":
        return "not_run"
    if comparison.identical:
        return "identical"
    if lost_precision(comparison):
        return "precision_loss"
    if at_noise_floor(comparison, spread):
        return "rounding"
    return "changed"


def lost_precision(comparison: TensorComparison) -> bool:
    """Whether this array's error against the twin grew like reduced-precision math's does."""
    growth = comparison.error_growth
    if growth is None or not is_float(comparison.dtype) or comparison.identical:
        return False
    floor = PRECISION_LOSS_FLOOR_ULPS * unit_roundoff(comparison.dtype)
    return growth > PRECISION_LOSS_FACTOR and (comparison.current_error or 0.0) > floor


def at_noise_floor(comparison: TensorComparison, spread: float = 0.0) -> bool:
    """Whether a difference in this array is rounding noise (see the module docstring)."""
    if comparison.identical:
        return True
    if comparison.max_abs <= spread:
        return True
    if not is_float(comparison.dtype):
        return False
    u = unit_roundoff(comparison.dtype)
    g, c = comparison.golden_error, comparison.current_error
    if g is not None and c is not None:
        slack = EQUIVALENT_SLACK_ULPS * u
        return c <= g * EQUIVALENT_FACTOR + slack and g <= c * EQUIVALENT_FACTOR + slack
    return comparison.max_rel <= EQUIVALENT_MAX_REL_ULPS * u
