"""The HTML report's pictures of what moved: a section per execution mode, the probe grid, and a
legend per picture group.

A mode's section says its verdict first, in words beside its colour. A bit-identical mode is one
line ("eager: identical, all 13 stages bit-identical") and no chart; a mode that moved gets the
picture of its differences (``charts.difference_chart``: max_rel per stage or array, log axis,
over the rounding-noise band), where it diverged first, and, folded, the error against the
float64 twin (the canary's second view) and the numbers.

The page is read by tests as well as people, so what it shows is marked on it: each mode's
section carries ``data-mode`` and ``data-status`` (the mode's verdict, or ``not_run``), each
legend entry and each probe cell ``data-status``.

Constraints the next editor must keep:
- Every string from the result is a stranger's: it goes through ``escaped`` (``html.escape``).
- Nothing is decided here: statuses, verdicts and the band's edge come with the result; colours
  and words from ``palette``. A legend lists the statuses its pictures show, never all of them.
- matplotlib comes in through ``charts``, which the caller imports inside ``render`` only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from envaudit.compare.types import (
    STATUS_SEVERITY,
    ArrayStatus,
    FirstDivergence,
    TensorComparison,
    most_severe,
)
from envaudit.render.formatting import growth, number, percent
from envaudit.render.palette import MODE_NOT_RUN, STATUS, VERDICT, Swatch
from envaudit.render.training_words import divergence_words
from envaudit.result import CheckResult

# The CSS of what this module draws (check_html adds it to the page's one stylesheet).
STYLE = """
.status{display:inline-block;padding:0 7px;border-radius:3px}
.legend .key{margin-right:14px;white-space:nowrap}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #555;vertical-align:-1px}
.mode{margin:10px 0 18px}.mode-line{margin:4px 0}
.grid td{padding:2px 5px;font-size:12px;line-height:1.25;max-width:92px}
.grid th{font-weight:normal}.grid td small{font-size:11px}
"""
ModeGroup = tuple[str | None, list[TensorComparison], FirstDivergence | None, str | None]


def escaped(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A table of plain strings, every cell escaped here."""
    head = "".join(f"<th>{escaped(h)}</th>" for h in header)
    body = ["<tr>" + "".join(f"<td>{escaped(v)}</td>" for v in row) + "</tr>" for row in rows]
    return [f"<table><tr>{head}</tr>", *body, "</table>"]


def badge(swatch: Swatch) -> str:
    """A status's word on its colour."""
    return (f'<span class="status" style="background:{swatch.fill};color:{swatch.ink}">'
            f"{escaped(swatch.word)}</span>")


def legend(statuses: Iterable[ArrayStatus], pictures: str) -> str:
    """A legend entry per status shown (least severe first): its colour and its word."""
    shown = set(statuses)
    keys = "".join(f'<span class="key" data-status="{s}"><span class="sw" style="background:'
                   f'{STATUS[s].fill}"></span> {escaped(STATUS[s].word)}</span>'
                   for s in STATUS_SEVERITY if s in shown)
    return f'<p class="legend" data-legend="{escaped(pictures)}">{keys}</p>'


def mode_sections(result: CheckResult, charts: Any) -> list[str]:
    """The stages (a user's model: its arrays) mode by mode, under one legend."""
    if not result.stages:
        return []
    user = result.subject.kind == "user-model"
    groups = result.by_mode()
    shown = [s.status for _, members, _, not_run in groups if not not_run for s in members]
    what = "arrays" if user else "stages"
    lines = [f'<h2 id="stages">{"Model arrays" if user else "Stages"}: what moved</h2>',
             f'<p class="note">Per execution mode, how far each of its {what} is from the golden'
             " value relative to its scale (max rel, log axis), in its status's colour; the"
             " shaded band is where float32 rounding noise lies. A bit-identical mode is one"
             " line." + ("" if user else " The error of each stage against the float64 twin is"
                         " the second view, folded under each chart.") + "</p>",
             legend(shown, what)]
    for n, group in enumerate(groups):
        lines += _mode_section(n, group, _mode_status(result, group), charts, user)
    return lines


def _mode_status(result: CheckResult, group: ModeGroup) -> str:
    """The mode's verdict as the result holds it; ``not_run`` where it could not run."""
    mode, _, _, not_run = group
    if not_run:
        return "not_run"
    verdicts = {m.mode: m.verdict for m in result.modes}
    verdict = verdicts.get(mode) if mode is not None else result.verdict
    return verdict or "not_run"


def _mode_section(n: int, group: ModeGroup, status: str, charts: Any, user: bool) -> list[str]:
    mode, members, fd, not_run = group
    noun = "arrays" if user else "stages"
    named = f' data-mode="{escaped(mode)}"' if mode else ""
    swatch = MODE_NOT_RUN if status == "not_run" else VERDICT[status]  # type: ignore[index]
    title = f"<b>{escaped(mode or noun)}</b>: {badge(swatch)}"
    lines = [f'<section class="mode" id="mode-{n}"{named} data-status="{escaped(status)}">']
    if not_run or not members or all(s.identical for s in members):
        why = (f": {escaped(not_run)}" if not_run else
               f", no {noun} compared" if not members else
               f", all {len(members)} {noun} bit-identical")
        return [*lines, f'<p class="mode-line">{title}{why}</p>', "</section>"]
    moved = sum(1 for s in members if not s.identical)
    lines += [f"<h3>{title}</h3>",
              f"<p>{moved} of {len(members)} {noun} differ from the golden.</p>",
              f'<div class="chart" id="chart-{n}">'
              f'{charts.difference_chart(members, f"difference-{n}")}</div>']
    if fd is not None:
        said = divergence_words(fd, lambda name: f"<b>{escaped(name)}</b>") or \
            f"<b>{escaped(fd.stage)}</b> (#{fd.index})"
        lines.append(f"<p>First divergence: {said}.</p>")
    if not user:
        lines += ["<details><summary>second view: error against the float64 twin</summary>",
                  f'<div class="chart-float64" id="float64-{n}">'
                  f'{charts.error_chart(members, f"stages-{n}")}</div></details>']
    return [*lines, *_stage_table(members, user), "</section>"]


def _stage_table(members: Sequence[TensorComparison], user: bool) -> list[str]:
    """The chart's numbers, collapsed: the picture first, the table for whoever needs it."""
    header = ["#", "array" if user else "stage", "result", "max rel", "mismatch",
              "tolerance" if user else "error vs float64 (golden → current)"]
    rows = [[str(i), s.name, STATUS[s.status].word, number(s.max_rel),
             percent(s.mismatch_fraction),
             (s.tolerance or "—") if user else
             f"{number(s.golden_error)} → {number(s.current_error)}"
             + ("" if s.growth_shown is None else f" ({growth(s.growth_shown)})")]
            for i, s in enumerate(members)]
    return ["<details><summary>numbers</summary>", *table(header, rows), "</details>"]


def probe_grid(result: CheckResult) -> list[str]:
    """Probe families as a grid: a row per family, a cell per probe with its name and status
    word on its status's colour, the family's most severe status last."""
    if not result.probes:
        return []
    families = list(dict.fromkeys(p.family for p in result.probes))
    widest = max(sum(1 for p in result.probes if p.family == f) for f in families)
    lines = ['<h2 id="probes">Probes</h2>', legend((p.status for p in result.probes), "probes"),
             '<table class="grid">']
    for family in families:
        members = [p for p in result.probes if p.family == family]
        worst = most_severe(p.status for p in members)
        cells = "".join(
            f'<td data-status="{p.status}" style="background:{STATUS[p.status].fill};'
            f'color:{STATUS[p.status].ink}" title="{escaped(p.name)}: '
            f'{escaped(STATUS[p.status].word)}, max rel {escaped(number(p.max_rel))}">'
            f"{_breakable(p.name)}<br><small>{escaped(STATUS[p.status].word)}</small></td>"
            for p in members)
        cells += "<td></td>" * (widest - len(members))
        lines.append(f"<tr><th>{escaped(family)}</th>{cells}"
                     f"<th>{escaped(STATUS[worst].word)}</th></tr>")
    lines.append("</table>")
    return lines


def _breakable(name: str) -> str:
    """A probe's name, escaped, that may wrap after a dot or an underscore (a family of eleven
    probes still fits the page's width)."""
    return escaped(name).replace("_", "_<wbr>").replace(".", ".<wbr>")
