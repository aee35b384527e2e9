"""The conversion gap and the runtime records of a check in Markdown (``check_md`` places this
section after the stage tables and the training steps): per converted mode one bullet, its gap's
sentence, and, where the converted model is not bit-identical to the one it was converted from,
its arrays that differ in a table folded in ``<details>`` (a pull-request comment stays short;
the gap is a finding, not a gate); then what converted and ran each converted mode, one bullet
each, against what the golden recorded.

Nothing at all for a check without converted modes. In a ``compact`` report (one that would not
fit a comment, ``comment_size``) the tables are left out and the sentences kept. Every string
from the result goes in escaped (``escape``: an array's name as a code span, sentences as text),
as in ``check_md``: the runtime fields come from a bundle, someone else's data.
"""

from __future__ import annotations

from typing import Any

from envaudit.render import conversion_words as words
from envaudit.render.escape import for_markdown, for_markdown_code, markdown_table
from envaudit.render.palette import VERDICT
from envaudit.result import CheckResult


def section(result: CheckResult, compact: bool) -> list[str]:
    """Nothing without converted modes."""
    return _gaps(result, compact) + _runtimes(result)


def _gaps(result: CheckResult, compact: bool) -> list[str]:
    if not words.gaps(result):
        return []
    lines = [f"### {for_markdown(words.title(result))}", ""]
    for gap in words.gaps(result):
        lines.append(f"- **{for_markdown(VERDICT[gap.status].word)}**:"
                     f" {for_markdown(gap.words)}")
    lines.append("")
    for gap in words.gaps(result):
        if not compact and words.tabled(gap, verbose=False):
            lines += _table(gap, words.noun(result))
    return lines


def _table(gap: Any, noun: str) -> list[str]:
    arrays = words.listed(gap, verbose=False)
    differ = sum(1 for a in gap.arrays if not a.identical)
    name = f"{for_markdown(gap.mode)} against {for_markdown(gap.reference)}"
    rows = [words.row(gap, a, for_markdown_code) for a in arrays]
    note = words.left_out(gap, arrays)
    return [f"<details><summary>{name}: {len(gap.arrays)} arrays, {differ} not"
            " bit-identical</summary>", "",
            *markdown_table(words.columns(gap, noun), rows),
            *(["", f"_{note}._"] if note else []), "", "</details>", ""]


def _runtimes(result: CheckResult) -> list[str]:
    checks = result.subject.runtimes
    if not checks:
        return []
    return [f"**{for_markdown(words.RUNTIMES_TITLE)}**", "",
            *(f"- {for_markdown(c.line)}" for c in checks), ""]
