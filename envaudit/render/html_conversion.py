"""The HTML report's conversion section (``check_html`` places it after the training steps): per
converted mode its gap's sentence under its status, and, folded, the arrays of the converted model
against the same arrays of the model it was converted from (each one's error against the float64
twin where the canary has one); then what converted and ran each converted mode, against what
the golden recorded.

Marked for tests as the other sections are: ``<section class="conversion" id="conversion"
data-status=VERDICT>`` (the most severe gap's status), per mode ``<div class="conversion-mode"
data-mode data-status>``, per row ``data-array`` and ``data-status``; per runtime line
``<li data-mode data-changed data-same-model>`` (``true``, ``false``, or ``unknown`` for a
model hash one side did not record). Nothing at all for a check without converted modes.

Every string goes through ``escaped``: the runtime fields (converter, interpreter, kernels) come
from a bundle, someone else's data. Words from ``conversion_words``; nothing is decided here.
"""

from __future__ import annotations

from typing import Any

from envaudit.compare.types import VERDICTS
from envaudit.render import conversion_words as words
from envaudit.render.html_pictures import badge, escaped
from envaudit.render.palette import STATUS, VERDICT
from envaudit.result import CheckResult


def section(result: CheckResult) -> list[str]:
    """Nothing without converted modes or runtime records."""
    gaps = words.gaps(result)
    checks = result.subject.runtimes
    if not gaps and not checks:
        return []
    worst = max((g.status for g in gaps), key=VERDICTS.index, default="identical")
    lines = [f'<section class="conversion" id="conversion" data-status="{escaped(worst)}">']
    if gaps:
        lines += [f"<h2>{escaped(words.title(result))}</h2>",
                  '<p class="note">The converted model users deploy, measured in this run'
                  " against the model it was converted from: a finding, not a gate (each"
                  " converted mode's own comparison with its golden gates).</p>"]
        for gap in gaps:
            lines += _gap(gap, words.noun(result))
    if checks:
        lines += [f"<h3>{escaped(words.RUNTIMES_TITLE)}</h3>", '<ul id="runtimes">']
        lines += [f'<li data-mode="{escaped(c.mode)}"'
                  f' data-changed="{str(bool(c.changed)).lower()}"'
                  f' data-same-model="{_flag(c.same_model)}">{escaped(c.line)}</li>'
                  for c in checks]
        lines.append("</ul>")
    return [*lines, "</section>"]


def _gap(gap: Any, noun: str) -> list[str]:
    """The gap's sentence under its status, and every array of it, folded."""
    head = "".join(f"<th>{escaped(c)}</th>" for c in words.columns(gap, noun))
    differ = sum(1 for a in gap.arrays if not a.identical)
    lines = [f'<div class="conversion-mode" data-mode="{escaped(gap.mode)}"'
             f' data-status="{escaped(gap.status)}">',
             f"<p>{badge(VERDICT[gap.status])} {escaped(gap.words)}</p>",
             f"<details><summary>{escaped(gap.mode)} against {escaped(gap.reference)}:"
             f" {len(gap.arrays)} arrays, {differ} not bit-identical</summary>",
             f"<table><tr>{head}</tr>"]
    for array in gap.arrays:
        swatch = STATUS[array.status]
        cells = [f'<td style="background:{swatch.fill};color:{swatch.ink}">{escaped(c)}</td>'
                 if i == 1 else f"<td>{escaped(c)}</td>"
                 for i, c in enumerate(words.row(gap, array))]
        lines.append(f'<tr data-array="{escaped(array.name)}"'
                     f' data-status="{escaped(array.status)}">{"".join(cells)}</tr>')
    return [*lines, "</table>", "</details>", "</div>"]


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else str(value).lower()
