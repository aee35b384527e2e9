"""The rounding units every comparison and every threshold is measured in.

A threshold written in units of a dtype's unit roundoff means the same thing for float32, float16
or bfloat16; integer dtypes round nothing. NumPy only (``ml_dtypes`` extension floats are measured
in float32 units).
"""

from __future__ import annotations

import numpy as np

from envaudit.compare.types import FP32_UNIT_ROUNDOFF


def ulp(dtype: np.dtype | type, scale: float) -> float:
    """The unit in the last place of ``dtype`` at magnitude ``scale`` (1 for integer dtypes)."""
    dt = np.dtype(dtype)
    if dt.kind in "biu":
        return 1.0
    if dt.kind == "f":
        return float(np.spacing(dt.type(abs(scale))))
    # Extension floats (bfloat16 from ml_dtypes) and anything else: measure in float32 units.
    return float(np.spacing(np.float32(abs(scale))))


def unit_roundoff(dtype: np.dtype | type) -> float:
    """Largest relative error of one rounding to ``dtype`` (eps/2); 0.0 for exact integer dtypes.

    The fp32 value, 2**-24 ~ 6e-8 (``types.FP32_UNIT_ROUNDOFF``), is the noise floor every
    verdict threshold is a multiple of.
    """
    dt = np.dtype(dtype)
    if dt.kind in "biu":
        return 0.0
    if dt.kind == "f":
        return float(np.finfo(dt).eps) / 2.0
    return FP32_UNIT_ROUNDOFF  # extension floats (bfloat16 from ml_dtypes): in float32 units


def is_float(dtype: str | np.dtype) -> bool:
    """Whether rounding noise applies to this dtype (not to integers, bools or strings)."""
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return False
