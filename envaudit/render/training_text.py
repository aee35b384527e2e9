"""The training steps of a check in the terminal (``check_text`` places this section after the
stage tables): per mode one compact table -- a row per step, not per array -- folded for a long
run where the data says (``TrainingMode.shown``), the growth of the weights' difference, and the
determinism of repeated training. Words from ``training_words``; every string goes in as
``Text`` with control characters escaped, as in ``check_text``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from envaudit.render.escape import for_terminal
from envaudit.render.palette import verdict_terminal_style
from envaudit.render.training_words import (
    STEP_COLUMNS,
    determinism_sentences,
    folded_total,
    folded_words,
    growth_sentence,
    quoted,
    step_row,
)
from envaudit.result import CheckResult


def section(result: CheckResult) -> list[Any]:
    """Nothing without training steps; else a title, a table per mode that trained, a growth
    line where anything moved, and the determinism lines of ``--repeat``."""
    report = result.training
    if report is None:
        return []
    count = f"{report.steps} step{'s' if report.steps != 1 else ''}"
    parts: list[Any] = [_t(f"Training steps ({count}, in computing order: batch, loss,"
                           " gradients, weights)", style="italic")]
    for mode in report.modes:
        shown = mode.shown()
        table = _table(f"{mode.mode} mode", *STEP_COLUMNS)
        for row, folded in zip(shown.rows, shown.folded_before):
            if folded:
                table.add_row(_t(folded_words(folded), style="dim"))
            cells = step_row(row, quoted)
            style = verdict_terminal_style(row.verdict)
            table.add_row(*(_t(c, style if i == 1 else None) for i, c in enumerate(cells)))
        parts.append(table)
        if shown.folded:
            parts.append(_t(folded_total(shown.folded), style="dim"))
        grows = growth_sentence(mode.growth)
        if grows:
            parts.append(_t(f"Growth ({mode.mode}): {grows}."))
    if report.determinism is not None:
        lines = determinism_sentences(report.determinism, quoted)
        style = None if report.determinism.deterministic else "yellow"
        parts += [_t("Training determinism (--repeat): " + lines[0], style=style),
                  *(_t("  " + line) for line in lines[1:])]
    parts.append(Text())
    return parts


def _table(title: str, *columns: str) -> Table:
    table = Table(title=_t(title), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    for column in columns:
        table.add_column(_t(column), overflow="fold")
    return table


def _t(value: str, style: str | None = None) -> Text:
    return Text(for_terminal(value), style=style or "")
