"""How a number is spelled in every output: a value, an error growth factor, a percentage, a count
of unit roundoffs, a data size, a model kind. One spelling each, so a value reads the same in a
headline (decided in ``compare/``) and in every renderer.

A leaf: standard library only, imported by ``compare/`` and ``render/`` alike, so that deciding
code never imports a renderer (``tests/test_structure.py`` holds both to it).
"""

from __future__ import annotations

import math

MODEL_KIND_WORDS = {"saved_model": "SavedModel", "keras": "Keras model"}


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


def roundoffs(value: float) -> str:
    """An error in unit roundoffs: "8.9", "8,192"."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def data_size(size: int) -> str:
    """Bytes the way people read them: "812 bytes", "461.4 KiB", "1.2 GiB"."""
    if size < 1024:
        return f"{size} byte{'' if size == 1 else 's'}"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
