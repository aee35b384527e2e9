"""How every output words the conversion gap and the runtime records of a check: the section's
title, which gaps get a table and which of their arrays it lists, a table row, and the columns.
One spelling each, so the terminal, Markdown, HTML and JUnit say the same thing.

The sentences themselves come with the data (``ConversionGap.words``, ``RuntimeCheck.line``);
statuses, the first difference and what is expected are decided in ``compare/conversion.py`` and
``runtimes.py``. Nothing here escapes (each output does, as it puts a string in: the runtime
fields come from a bundle, someone else's data). The gap type is taken as ``Any``: a renderer
imports only ``compare.types``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from envaudit.compare.types import TensorComparison
from envaudit.render.formatting import STATUS_WORDS
from envaudit.result import CheckResult
from envaudit.spelling import number

RUNTIMES_TITLE = "Runtimes (what converted and ran each converted mode, against the golden's)"


def gaps(result: CheckResult) -> tuple[Any, ...]:
    """The result's conversion gaps, one per converted mode checked (none: nothing to show)."""
    return result.subject.conversion


def title(result: CheckResult) -> str:
    """"Conversion gap (the converted model against graph mode, this run)"."""
    shown = gaps(result)
    references = " and ".join(dict.fromkeys(g.reference for g in shown))
    models = "the converted models" if len(shown) > 1 else "the converted model"
    return f"Conversion gap ({models} against {references} mode, this run)"


def noun(result: CheckResult) -> str:
    """What a row is: a canary's stage, or an array of a user's model (layers and outputs)."""
    return "stage" if result.subject.model is None else "array"


def tabled(gap: Any, verbose: bool) -> bool:
    """Whether a gap's arrays are listed: always with ``verbose``, else when it is not
    bit-identical (a bit-identical gap says all it has in its sentence)."""
    return verbose or gap.status != "identical"


def listed(gap: Any, verbose: bool) -> tuple[TensorComparison, ...]:
    """The arrays a gap's table lists: all of them with ``verbose``, else the ones that differ
    (in a user's model, hundreds of layers may be bit-identical)."""
    return tuple(a for a in gap.arrays if verbose or not a.identical)


def has_twin(gap: Any) -> bool:
    """Whether any array of the gap has an error against the float64 twin (the canary's do; a
    user's model has no twin, so the column is left out)."""
    return any(a.golden_error is not None or a.current_error is not None for a in gap.arrays)


def columns(gap: Any, what: str) -> list[str]:
    head = [what, "result", "max rel"]
    return head + (["error vs float64 (reference → converted)"] if has_twin(gap) else [])


def row(gap: Any, array: TensorComparison, code: Callable[[str], str] = str) -> list[str]:
    """One array's cells (``columns``); ``code`` wraps the array's name (Markdown: backticks)."""
    cells = [code(array.name), STATUS_WORDS[array.status], number(array.max_rel, 1)]
    if has_twin(gap):
        known = array.golden_error is not None or array.current_error is not None
        cells.append(f"{number(array.golden_error, 1)} → {number(array.current_error, 1)}"
                     if known else "—")
    return cells


def left_out(gap: Any, shown: Sequence[TensorComparison]) -> str:
    """The line under a table that lists only the arrays that differ ("" when it lists all)."""
    count = len(gap.arrays) - len(shown)
    if count <= 0:
        return ""
    return f"{count} bit-identical array{'s' if count != 1 else ''} not listed"
