"""``envaudit check --format json``: ``CheckResult.to_dict()`` as strict JSON.

The keys are the contract of docs/design.md, "Check JSON", and come from ``CheckResult.to_dict()``;
this module only makes the values valid JSON that any parser reads (``json.dumps`` would write
``NaN``/``Infinity``, which are not JSON): NaN becomes ``null`` ("undefined", e.g. the cosine of
arrays of different shapes) and +/-infinity the strings ``"inf"``/``"-inf"`` (e.g. ``max_abs`` of a
shape mismatch), tuples become lists and NumPy scalars and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from envaudit.result import CheckResult


def render(result: CheckResult) -> str:
    """The check result as indented, strict JSON text ending in a newline."""
    return json.dumps(plain(result.to_dict()), indent=2, allow_nan=False) + "\n"


def plain(value: Any) -> Any:
    """``value`` with every non-JSON number or container replaced as the module docstring says."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return str(value)
