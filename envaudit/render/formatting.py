"""How every renderer writes a measured number, so one value reads the same in each format."""

from __future__ import annotations

import math


def number(value: float | None, digits: int = 2, missing: str = "—") -> str:
    """Small and large values in scientific notation with ``digits`` decimals, everyday ones as
    they read; ``missing`` for None, and NaN/inf spelled out."""
    if value is None:
        return missing
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e4:
        return f"{value:.{digits}e}"
    return f"{value:.4g}"
