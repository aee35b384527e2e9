"""The training steps of a check in Markdown (``check_md`` places this section after the stage
tables): per mode a pipe table with a row per step, folded for a long run where the data says
(``TrainingMode.shown``) and in ``<details>`` past the report's fold size, the growth of the
weights' difference, and the determinism of repeated training. Words from ``training_words``;
every string from the result goes in escaped (``escape``: a name as a code span, text as text),
as in ``check_md``.
"""

from __future__ import annotations

from envaudit.render.escape import Markdown, for_markdown, for_markdown_code, markdown_table
from envaudit.render.training_words import (
    STEP_COLUMNS,
    determinism_sentences,
    folded_total,
    folded_words,
    growth_sentence,
    step_row,
)
from envaudit.result import CheckResult


def section(result: CheckResult, fold_rows: int) -> list[str]:
    """Nothing without training steps; a mode's table of more than ``fold_rows`` rows is folded
    in ``<details>``."""
    report = result.training
    if report is None:
        return []
    lines = [f"### Training steps ({report.steps}, in computing order: batch, loss, gradients,"
             " weights)", ""]
    for mode in report.modes:
        shown = mode.shown()
        rows: list[list[str]] = []
        for row, folded in zip(shown.rows, shown.folded_before):
            if folded:
                rows.append([Markdown(f"_{folded_words(folded)}_"), *[""] * 5])
            rows.append(step_row(row, for_markdown_code))
        table = markdown_table(STEP_COLUMNS, rows)
        if shown.folded:
            table += ["", f"_{folded_total(shown.folded)}_"]
        name = for_markdown(mode.mode)
        if len(rows) > fold_rows:
            table = [f"<details><summary>{name}: {len(mode.steps)} steps</summary>", "",
                     *table, "", "</details>"]
        lines += [f"**{name} mode**", "", *table, ""]
        grows = growth_sentence(mode.growth)
        if grows:
            lines += [f"Growth ({name}): {grows}.", ""]
    if report.determinism is not None:
        said = determinism_sentences(report.determinism, for_markdown_code)
        lines += [f"**Training determinism (`--repeat`):** {said[0]}",
                  *(f"- {line}" for line in said[1:]), ""]
    return lines
