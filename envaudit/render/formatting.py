"""How every output writes a number, a growth factor, a percentage and a class: one spelling each,
so a value reads the same in the headline, the terminal, Markdown, JUnit and HTML.

Pure formatting: nothing here decides anything (statuses and verdicts come with the data).
"""

from __future__ import annotations

import math

from envaudit.workload.types import CLASS_NAMES


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
    if abs(value) < 1e-2 or abs(value) >= 1e4:
        return f"{value:.{digits}e}"
    return f"{value:.4g}"


def growth(value: float | None, missing: str = "—") -> str:
    """An error growth factor: "1.2x", "29,298x", "from exactly 0" (the golden was exact)."""
    if value is None or math.isnan(value):
        return missing
    if math.isinf(value):
        return "from exactly 0"
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def percent(fraction: float) -> str:
    """A fraction in [0, 1] as a percentage with one decimal ("12.5%"; none at all: "0%")."""
    return f"{fraction * 100:.1f}%" if fraction else "0%"


def class_label(index: int | None) -> str:
    """A detector class by name ("ellipse"), "class 7" for an index outside the label list, "—"
    for none."""
    if index is None:
        return "—"
    return CLASS_NAMES[index] if 0 <= index < len(CLASS_NAMES) else f"class {index}"
