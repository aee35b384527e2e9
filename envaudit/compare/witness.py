"""The precision witness: does this environment compute fp32 at full precision?

A user model has no float64 twin, so its own outputs can say that they moved but not whether the
arithmetic behind them lost precision. The canary's probes can: each arithmetic probe has a float64
reference (``workload/probe_reference.py``), so its error here is measured in units of float32
rounding. At full fp32 precision every such error stays within ``FULL_PRECISION_ULPS`` unit
roundoffs; reduced-precision math (TF32 keeps 11 significant bits, bf16 8) puts matmul and
convolution errors thousands of unit roundoffs out. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from envaudit.compare.types import FP32_UNIT_ROUNDOFF, PrecisionWitness, TensorComparison

# fp32 probes measured here stay within a few unit roundoffs of float64 (the long-inner matmul, a
# dot product of 8192 terms, is the largest); TF32 rounds inputs to 2**-11, ~8000 unit roundoffs
# of fp32, and bf16 to 2**-8. 256 sits far from both.
FULL_PRECISION_ULPS = 256.0


def precision_witness(probes: Sequence[TensorComparison]) -> PrecisionWitness:
    """The witness from compared probes (those with a float64 reference take part)."""
    measured = [p for p in probes if p.current_error is not None and p.dtype == "float32"]
    u = FP32_UNIT_ROUNDOFF
    worst = max(measured, key=lambda p: p.current_error or 0.0, default=None)
    worst_ulps = (worst.current_error or 0.0) / u if worst else 0.0
    golden_ulps = max(((p.golden_error or 0.0) / u for p in measured), default=0.0)
    lossy = tuple(p.name for p in measured if p.status == "precision_loss")
    return PrecisionWitness(
        probes=len(measured),
        full_precision=bool(measured) and worst_ulps <= FULL_PRECISION_ULPS and not lossy,
        worst_probe=worst.name if worst else None,
        worst_error_ulps=worst_ulps,
        golden_worst_error_ulps=golden_ulps,
        limit_ulps=FULL_PRECISION_ULPS,
        lossy=lossy,
    )
