"""The HTML report's training section (``check_html`` places it after the stages): per mode a
table of steps -- a row per step, folded for a long run where the data says
(``TrainingMode.shown``) -- the growth of the weights' difference, drawn as a chart only when a
step moved (``charts.growth_chart``), and the determinism of repeated training.

Marked for tests as the other sections are: ``<section class="training" data-status=VERDICT>``
(the most severe step's verdict), per mode ``data-mode`` and ``data-status``, per row
``data-step`` and ``data-status``; ``data-deterministic`` and ``data-fix-confirmed`` on the
determinism paragraph. Every string goes through ``escaped``; words from ``training_words``.
"""

from __future__ import annotations

from typing import Any

from envaudit.render.html_pictures import badge, escaped
from envaudit.render.palette import VERDICT
from envaudit.render.training_words import (
    STEP_COLUMNS,
    determinism_sentences,
    folded_total,
    folded_words,
    growth_sentence,
    step_row,
)
from envaudit.result import CheckResult


def section(result: CheckResult, charts: Any) -> list[str]:
    """Nothing without training steps."""
    report = result.training
    if report is None:
        return []
    lines = [f'<section class="training" data-status="{report.verdict}">',
             f'<h2 id="training">Training steps: {badge(VERDICT[report.verdict])}</h2>',
             f'<p class="note">{report.steps} steps of the detector\'s own training, each'
             " compared in computing order: the augmented batch, the loss, every gradient,"
             " every weight after the update.</p>"]
    if any(m.growth is not None and m.growth.last > 0 for m in report.modes):
        lines.append(f'<div class="chart growth" id="growth-chart">'
                     f'{charts.growth_chart(report.modes, "growth")}</div>')
    for mode in report.modes:
        lines += _mode(mode)
    d = report.determinism
    if d is not None:
        said = determinism_sentences(d, lambda name: f"<code>{escaped(name)}</code>")
        lines.append(f'<div class="determinism" data-deterministic="{str(d.deterministic).lower()}"'
                     f' data-fix-confirmed="{str(d.fix_confirmed).lower()}">'
                     "<p><b>Training determinism (--repeat):</b> "
                     + "</p><p>".join(said) + "</p></div>")
    return [*lines, "</section>"]


def _mode(mode: Any) -> list[str]:
    shown = mode.shown()
    head = "".join(f"<th>{escaped(c)}</th>" for c in STEP_COLUMNS)
    lines = [f'<div class="training-mode" data-mode="{escaped(mode.mode)}"'
             f' data-status="{mode.verdict}">',
             f"<h3><b>{escaped(mode.mode)}</b>: {badge(VERDICT[mode.verdict])}</h3>",
             f"<table><tr>{head}</tr>"]
    for row, folded in zip(shown.rows, shown.folded_before):
        if folded:
            lines.append(f'<tr class="folded" data-folded="{folded}"><td colspan='
                         f'"{len(STEP_COLUMNS)}">{escaped(folded_words(folded))}</td></tr>')
        cells = step_row(row)
        cells[1] = badge(VERDICT[row.verdict])
        lines.append(f'<tr data-step="{row.step}" data-status="{row.verdict}">'
                     + "".join(f"<td>{c if i == 1 else escaped(c)}</td>"
                               for i, c in enumerate(cells)) + "</tr>")
    lines.append("</table>")
    if shown.folded:
        lines.append(f'<p class="note">{escaped(folded_total(shown.folded))}</p>')
    grows = growth_sentence(mode.growth)
    if grows:
        lines.append(f"<p>Growth: {escaped(grows)}.</p>")
    return [*lines, "</div>"]
