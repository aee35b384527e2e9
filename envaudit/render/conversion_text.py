"""The conversion gap and the runtime records of a check in the terminal (``check_text`` places
this section after the stage tables and the training steps): per converted mode one line, its
gap's sentence, and -- with ``--verbose``, or when the converted model is not bit-identical to
the one it was converted from -- a compact table of its arrays; then what converted and ran each
converted mode, one line each, against what the golden recorded.

Nothing at all for a check without converted modes. The runtime fields (converter, interpreter,
kernels) come from a bundle, someone else's data: every string goes in as ``Text`` with control
characters escaped (``escape.for_terminal``), as in ``check_text``. Words from
``conversion_words``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from envaudit.render import conversion_words as words
from envaudit.render.escape import for_terminal
from envaudit.render.palette import terminal_style, verdict_terminal_style
from envaudit.result import CheckResult


def section(result: CheckResult, verbose: bool = False) -> list[Any]:
    """Nothing without converted modes; else the gap lines (and tables) and the runtimes."""
    return _gaps(result, verbose) + _runtimes(result)


def _gaps(result: CheckResult, verbose: bool) -> list[Any]:
    if not words.gaps(result):
        return []
    parts: list[Any] = [_t(words.title(result), style="italic")]
    for gap in words.gaps(result):
        parts.append(_t(gap.words, style=verdict_terminal_style(gap.status)))
        if words.tabled(gap, verbose):
            parts += _table(gap, words.listed(gap, verbose), words.noun(result))
    parts.append(Text())
    return parts


def _table(gap: Any, arrays: Any, noun: str) -> list[Any]:
    table = Table(title=_t(f"{gap.mode} against {gap.reference}"), title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in words.columns(gap, noun):
        table.add_column(_t(column), overflow="fold")
    for array in arrays:
        cells = words.row(gap, array)
        style = terminal_style(array.status)
        table.add_row(*(_t(c, style if i == 1 else None) for i, c in enumerate(cells)))
    note = words.left_out(gap, arrays)
    return [table, *([_t(f"  {note} (--verbose lists them)", style="dim")] if note else [])]


def _runtimes(result: CheckResult) -> list[Any]:
    checks = result.subject.runtimes
    if not checks:
        return []
    parts: list[Any] = [_t(words.RUNTIMES_TITLE, style="italic")]
    parts += [_t(f"  {c.line}", style="yellow" if c.changed else None) for c in checks]
    return [*parts, Text()]


def _t(value: str, style: str | None = None) -> Text:
    return Text(for_terminal(value), style=style or "")
