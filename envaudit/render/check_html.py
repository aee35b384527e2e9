"""``envaudit check --format html``: one self-contained HTML page to read offline or attach to a
ticket.

Order: the verdict and headline (for a user's model, what it is and what the verdict rests on),
the causes with their evidence (and what cannot have mattered), per execution mode a chart of each
stage's error against the float64 twin (a user model's: max_rel per array), the training steps
(``html_training``: a table per mode, the growth chart when a step moved), the conversion gap of
each converted mode and what converted and ran it (``html_conversion``), the detections drawn
over the scene images, the probe families as a grid, the environment changes, and both
fingerprints collapsed.

Constraints the next editor must keep:
- Self-contained: no network, no external script, font or stylesheet; CSS inline, pictures as
  inline SVG. The page must open from a ticket attachment on a machine without internet.
- Every string from the result is a stranger's (bundle content, paths, environment values): it
  goes through ``_e`` (``html.escape``) and nothing else reaches the page unescaped; the whole
  page goes through ``escape.for_document`` last, so it carries no control character.
- matplotlib is imported only inside ``render`` (through ``charts`` and ``overlay``), so other
  commands do not pay for it.
- Nothing is decided here: statuses, verdicts and fragility come with the result.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from envaudit.compare.types import DetectionDiff
from envaudit.fingerprint.diff import group
from envaudit.fingerprint.summary import summarize
from envaudit.fingerprint.types import Change, Fingerprint
from envaudit.render import html_conversion, html_pictures, html_training, palette
from envaudit.render.change_table import folded_summary, heading
from envaudit.render.escape import for_document
from envaudit.render.formatting import (
    class_label,
    class_names,
    model_identity,
    model_outputs,
    model_run,
    number,
    witness_sentence,
)
from envaudit.render.html_pictures import table as _table
from envaudit.result import CheckResult

# A verdict's colour is the colour of the status it rests on (``palette``); its word is written
# on it in black, which reads on all four (``palette.Swatch.ink``).
VERDICT_COLOR = {verdict: swatch.fill for verdict, swatch in palette.VERDICT.items()}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;max-width:1100px;
color:#222}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}
.verdict{display:inline-block;color:#000;padding:2px 10px;border-radius:4px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top;font-size:13px}th{background:#f5f5f5}
code,pre{font:12px ui-monospace,Menlo,Consolas,monospace}pre{white-space:pre-wrap;
word-break:break-all;background:#fafafa;padding:8px;border:1px solid #eee}
.chart,.overlay{width:1000px;overflow:hidden}.chart svg,.overlay svg{display:block;
max-width:100%;height:auto}
.note{color:#666}.conf{font-weight:bold}
""" + html_pictures.STYLE


def render(result: CheckResult) -> str:
    """The check result as one self-contained HTML document."""
    if result.digests_only:  # two check JSONs: no array was compared by value
        parts = [*_head(result), *_digests(result), *_fingerprint(result), "</body></html>"]
        return for_document("\n".join(parts) + "\n")
    from envaudit.render import charts  # matplotlib: only when a page is actually rendered

    parts = [*_head(result), *_causes(result), *html_pictures.mode_sections(result, charts),
             *html_training.section(result, charts), *html_conversion.section(result),
             *_detections(result),
             *html_pictures.probe_grid(result), *_fingerprint(result), "</body></html>"]
    # The page is printed to stdout without -o: no control character may reach a terminal.
    return for_document("\n".join(parts) + "\n")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _head(result: CheckResult) -> list[str]:
    color = VERDICT_COLOR.get(result.verdict, "#444")
    words = result.verdict.replace("_", " ")
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>envaudit {result.command}: {_e(words)}</title>",
             f"<style>{STYLE}</style>", "</head><body>",
             f'<h1>envaudit {result.command}: <span class="verdict" style="background:{color}">'
             f"{_e(words)}</span></h1>", *_elsewhere(result),
             f'<p id="headline">{_e(result.headline)}</p>', "<ul>",
             f"<li>golden: <code>{_e(result.golden_path)}</code> (fingerprint "
             f"<code>{_e(result.golden_fingerprint_id[:12])}</code>)</li>",
             _current(result),
             f"<li>exit code: {result.exit_code}{' (--strict)' if result.strict else ''}</li>"]
    m = result.subject.model
    if m is not None:
        lines += [f"<li>model: {model_identity(m, _code)}</li>",
                  f"<li>ran: {model_run(m, _code)}</li>",
                  f"<li>outputs: {model_outputs(m, _code)}</li>"]
        if result.subject.basis:
            lines.append(f"<li>basis: {_e(result.subject.basis)}</li>")
    lines.append("</ul>")
    if result.subject.witness is not None:
        lines.append(f"<p>{_e(witness_sentence(result.subject.witness))}</p>")
    lines += [f'<p class="note">{_e(n)}</p>' for n in result.notes]
    return lines + _offline(result)


def _current(result: CheckResult) -> str:
    """What the golden was compared with: this run's fingerprint, or B compared offline."""
    fingerprint = f"<code>{_e(result.current_fingerprint_id[:12])}</code>"
    if result.offline is None:
        return f"<li>current fingerprint: {fingerprint}</li>"
    return (f"<li>B: <code>{_e(result.offline.current_path)}</code> (fingerprint"
            f" {fingerprint})</li>")


def _offline(result: CheckResult) -> list[str]:
    """Two recordings compared offline: what that could and could not tell (decided with the
    data, ``OfflineComparison.said``)."""
    if result.offline is None:
        return []
    return ['<h2 id="offline">Compared offline (nothing ran here)</h2>', "<ul>",
            *(f"<li>{_e(sentence)}</li>" for sentence in result.offline.said), "</ul>"]


def _digests(result: CheckResult) -> list[str]:
    """Two check JSONs: their arrays by digest, mode by mode (no sizes: digests have none)."""
    digests = result.offline.digests if result.offline else None
    if digests is None:
        return []
    return ['<h2 id="digests">Arrays by digest</h2>',
            '<p class="note">Equal digests, equal bits; a digest has no size.</p>',
            *_table(["arrays", "compared", "differ", "first that differs"],
                    [[g.name, str(g.compared), str(g.differing), g.first or "—"]
                     for g in digests.groups])]


def _elsewhere(result: CheckResult) -> list[str]:
    """The golden came from another machine or build: said above the headline."""
    if result.recorded_elsewhere is None:
        return []
    return [f'<p id="recorded-elsewhere" class="note">{_e(result.recorded_elsewhere.line)}</p>']


def _code(text: str) -> str:
    return f"<code>{_e(text)}</code>"


def _causes(result: CheckResult) -> list[str]:
    lines = ['<h2 id="causes">Causes</h2>']
    if not result.causes:
        lines.append("<p>" + ("Nothing moved." if result.verdict == "identical"
                              else "None identified.") + "</p>")
    else:
        lines.append("<ol>")
        for cause in result.causes:
            evidence = "".join(f"<li>{_e(e)}</li>" for e in cause.evidence)
            lines.append(f'<li><span class="conf">{_e(cause.label)}</span>: '
                         f"{_e(cause.change)}<ul>{evidence}</ul></li>")
        lines.append("</ol>")
    if result.confirmation_skipped:
        lines.append('<p class="note">Confirmation re-runs were skipped (--no-confirm): no'
                     " variable was put back.</p>")
    if result.cannot_affect:
        lines.append("<p>Cannot affect these results (not ranked):</p><ul>")
        lines += [f"<li>{_e(u.change)} — {_e(u.reason)}</li>" for u in result.cannot_affect]
        lines.append("</ul>")
    b = result.bisection
    if b is not None:
        lines.append("<h3>Environment bisection (uv)</h3>")
        lines += _table(["environment", "outcome", "packages", "what the bits showed"],
                        [[t.label, t.outcome + (" (cached)" if t.cached else ""),
                          ", ".join(t.pins), t.detail] for t in b.trials])
        lines += [f"<p>not restored: {_e(k)}: {_e(v)}</p>" for k, v in b.refused.items()]
        if b.failure:
            lines.append(f"<p>no environment could be built: {_e(b.failure)}</p>")
    nd = result.nondeterminism
    if result.offline is not None:
        lines.append('<p class="note">Nondeterminism: not measured (compared offline: nothing'
                     " ran).</p>")
    elif nd is not None and nd.runs > 1:
        text = (f"none; {nd.runs} runs were bit-identical" if nd.deterministic else
                f"{nd.runs} runs differ in {', '.join(nd.differing_arrays)} (spread up to "
                f"{number(nd.max_spread)})")
        lines.append(f"<p>Nondeterminism: {_e(text)}.</p>")
    return lines


def _detections(result: CheckResult) -> list[str]:
    lines = ['<h2 id="detections">Detections</h2>']
    if result.subject.model is not None and result.subject.model.detections is None:
        return [*lines, "<p>None: the model's outputs are not detections; name them with"
                " <code>--detections boxes=NAME,scores=NAME,classes=NAME</code> to compare"
                " boxes.</p>"]
    d = result.detections
    lines += _table(["golden", "current", "matched", "added", "removed", "class changed",
                     "max score Δ", "min IoU", "max box Δ"],
                    [[str(d.golden), str(d.current), str(d.matched), str(d.added),
                      str(d.removed), str(d.class_changed), number(d.max_score_delta),
                      "—" if d.min_iou is None else f"{d.min_iou:.4f}",
                      number(d.max_box_delta)]])
    lines.append(_overlay(result, d))
    lines += _change_table(d, class_names(result.subject.model))
    return lines


def _overlay(result: CheckResult, d: DetectionDiff) -> str:
    """The detections worth seeing over the images they were found on (``DetectionDiff.drawn_at``
    decides which, at the size ``overlay.panel_pixels`` says an image is drawn), with what the
    picture leaves out said in words; ``data-boxes`` and ``data-mode`` say it to a machine."""
    from envaudit.render import overlay  # matplotlib: only when a page is actually rendered

    names = class_names(result.subject.model)
    unchanged = d.matched - sum(1 for c in d.changes if c.kind == "matched")
    notes = []
    if result.subject.model is None:
        from envaudit.workload.assets import load_assets

        assets = load_assets()
        images = [overlay.decoded(b) for b in assets.encoded]
        places = [f"image {i} ({name})" for i, name in enumerate(assets.image_names)]
        titles = [f"image {i}: {name}" for i, name in enumerate(assets.image_names)]
        count = len(images)
    else:
        images = None
        count = 1 + max((c.image for c in d.changes), default=-1)
        places = titles = [f"image {i} (boxes only)" for i in range(count)]
        notes.append("The model's input images are not part of the result: boxes are drawn on"
                     " the image's normalized extent.")
    drawn = d.drawn_at(*[overlay.panel_pixels(count)] * 2)
    notes = [*overlay.summary(drawn, unchanged, places, names), *notes]
    svg = (overlay.detection_grid(images, count, drawn, names, titles, "detections")
           if count and (drawn.changes or drawn.missed) else "")
    return ("".join(f'<p class="note">{_e(n)}</p>' for n in notes)
            + f'<div class="overlay" id="overlay" data-boxes="{drawn.boxes}"'
            f' data-mode="{_e(drawn.mode or "")}">{svg}</div>')


def _change_table(d: DetectionDiff, names: Sequence[str]) -> list[str]:
    if not d.changes:
        return []
    rows = []
    for c in d.changes:
        classes = (class_label(c.golden_class, names) if c.golden_class == c.current_class
                   else f"{class_label(c.golden_class, names)} → "
                        f"{class_label(c.current_class, names)}")
        rows.append([c.kind.replace("_", " "), str(c.image), classes, _score(c.golden_score),
                     _score(c.current_score), "—" if c.iou is None else f"{c.iou:.6f}",
                     number(c.margin),
                     "near-tie: expected fragility" if c.expected_fragility else ""])
    return [f'<p>Measured noise: {_e(number(d.noise))}. A change whose decision margin is below'
            " it is expected fragility (a near-tie flipped), not a model bug.</p>",
            "<details><summary>changed detections</summary>",
            *_table(["change", "image", "class", "golden score", "current score", "IoU",
                     "margin", "fragility"], rows), "</details>"]


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _fingerprint(result: CheckResult) -> list[str]:
    """The environment: this machine's summary first (``fingerprint.summary``, the facts
    ``envaudit report`` shows first), the changes from the golden, both whole trees folded."""
    changes = result.fingerprint_changes
    lines = ['<h2 id="environment">Environment</h2>', *_summary(result.current_fingerprint),
             "<h3>Changes from the golden</h3>"]
    if result.offline is not None and not result.offline.fingerprints_compared:
        lines.append("<p>The changes between A and B are not known (see above).</p>")
    elif not changes:
        lines.append("<p>No fingerprint changes.</p>")
    else:
        numerics = sum(1 for c in changes if c.numerics)
        lines.append(f"<p>{len(changes)} fields changed, {numerics} numerics-relevant.</p>")
        for g in group(changes):
            if g.listed:
                lines += [f"<h4>{_e(heading(g))}</h4>", *_change_rows(g.listed)]
            if g.folded:
                lines += [f"<details><summary>{_e(folded_summary(g))}</summary>",
                          *_change_rows(g.folded), "</details>"]
    for side, fp in (("golden", result.golden_fingerprint),
                     ("current", result.current_fingerprint)):
        lines.append(_whole(side, fp))
    return lines


def _summary(fp: Fingerprint | None) -> list[str]:
    """One row per fact, marked ``data-fact`` for tests; how it was determined in grey."""
    if fp is None:
        return ['<p class="note">This environment\'s fingerprint is not part of this result.</p>']
    rows = [f'<tr data-fact="{_e(f.label)}"><th>{_e(f.label)}</th><td>{_e(f.value)}'
            f' <span class="note">({_e(f.source)})</span></td></tr>' for f in summarize(fp)]
    return ['<table id="environment-summary">', *rows, "</table>"]


def _change_rows(changes: Iterable[Change]) -> list[str]:
    return _table(["path", "golden", "current", "category", "numerics"],
                  [[c.path, _value(c.golden), _value(c.current), c.category,
                    "yes" if c.numerics else "no"] for c in changes])


def _value(value: Any) -> str:
    return "—" if value is None else str(value)


def _whole(side: str, fp: Fingerprint | None) -> str:
    if fp is None:
        return f'<p class="note">The {side} fingerprint is not part of this result.</p>'
    text = json.dumps(fp.data, indent=1, sort_keys=True, default=str)
    return (f"<details><summary>{side} fingerprint (whole)</summary><pre>{_e(text)}</pre>"
            "</details>")
