"""``envaudit check --format md``: a Markdown report to paste into a pull request or a bug report.

GitHub-flavored Markdown: a verdict heading, a quoted line when the golden was recorded on another
machine or build, and the headline first (for a user's model, what it is and what the verdict
rests on), then this environment's summary (``fingerprint.summary``, as ``envaudit report`` shows
it), pipe tables (environment changes, stages or a user model's arrays, training steps step by step
(``training_md``), the conversion gap of each converted mode and its runtime (``conversion_md``),
probes by family and the precision witness, changed detections) and the
causes with their evidence.

It fits a pull-request comment (``comment_size``): a table of more than ``FOLD_ROWS`` arrays is
folded in ``<details>``; a report still longer than a comment holds lists only the arrays,
changes and detections that differ (at most ``MAX_ROWS`` per table, with a line counting the
rest), and what is still too long is cut with a line saying so and where the whole report is.

Every string from the result is a stranger's (bundle content, paths, environment values, package
names): it goes in through ``escape`` as text (``_md``: no HTML, no link, one table cell, one
line) or as a code span (``_code``). Table cells are escaped by ``_table`` unless the renderer
built them as ``Markdown`` itself, so a cell cannot be forgotten; the whole document goes through
``for_document`` last, so no control character reaches a terminal that shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from envaudit.compare.types import ACCEPTED_STATUSES, TensorComparison, most_severe
from envaudit.fingerprint.diff import group
from envaudit.fingerprint.summary import summarize
from envaudit.fingerprint.types import Change
from envaudit.render import conversion_md, formatting, training_md
from envaudit.render.change_table import folded_summary, heading
from envaudit.render.comment_size import cut, fits
from envaudit.render.escape import (
    Markdown,
    for_document,
    for_markdown,
    for_markdown_code,
)
from envaudit.render.escape import markdown_table as _table  # one pipe-table builder
from envaudit.render.fingerprint_md import summary_lines
from envaudit.render.formatting import (
    class_label,
    class_names,
    growth,
    model_identity,
    model_outputs,
    model_run,
    number,
    percent,
    witness_sentence,
)
from envaudit.render.palette import VERDICT
from envaudit.render.training_words import divergence_words
from envaudit.result import CheckResult

# Each array status in words (``formatting.STATUS_WORDS``); the ones a check does not accept
# (``compare.types.ACCEPTED_STATUSES``) in bold.
STATUS_WORDS: dict[str, Markdown] = {
    status: Markdown(words if status in ACCEPTED_STATUSES else f"**{words}**")
    for status, words in formatting.STATUS_WORDS.items()}
# Markdown has no colour: a verdict is its mark and the word every format uses (``palette``).
TITLES = {verdict: f"{mark} {VERDICT[verdict].word}" for verdict, mark in (
    ("identical", "✅"), ("equivalent", "🟰"), ("drift", "⚠️"), ("precision_loss", "❌"))}
FOLD_ROWS = 12  # a table of more rows is folded in <details>
MAX_ROWS = 40  # rows per table when the whole report is longer than a comment holds
FULL_REPORT = "`envaudit check --format json` (or `--format html`)"


def render(result: CheckResult) -> str:
    """The check result as a Markdown document ending in a newline, short enough for a
    pull-request comment."""
    document = _document(result, compact=False)
    if not fits(document):
        document = _document(result, compact=True)
    return cut(document, FULL_REPORT)


def _document(result: CheckResult, compact: bool) -> str:
    """The whole report; ``compact`` lists only what differs, ``MAX_ROWS`` per table."""
    lines = [
        f"## envaudit {result.command}: {_md(TITLES.get(result.verdict, result.verdict))}",
        "",
        *_elsewhere(result),
        _md(result.headline),
        "",
        f"- golden: {_code(result.golden_path)} (fingerprint "
        f"{_code(result.golden_fingerprint_id[:12])})",
        _current(result),
        *_since(result),
        f"- exit code: {result.exit_code}{' (--strict)' if result.strict else ''}",
        *_model(result),
        "",
        *_offline(result),
    ]
    lines += _summary(result)
    lines += _fingerprint(result, compact)
    if result.digests_only:
        return for_document("\n".join([*lines, *_digests(result)]).rstrip("\n") + "\n")
    lines += _stages(result, compact)
    lines += training_md.section(result, FOLD_ROWS)
    lines += conversion_md.section(result, compact)
    lines += _probes(result)
    lines += _witness(result)
    lines += _detections(result, compact)
    lines += _causes(result)
    lines += _nondeterminism(result)
    return for_document("\n".join(lines).rstrip("\n") + "\n")


def _current(result: CheckResult) -> str:
    """What the golden was compared with: this run's fingerprint, or B compared offline."""
    fingerprint = _code(result.current_fingerprint_id[:12])
    if result.offline is None:
        return f"- current fingerprint: {fingerprint}"
    return f"- B: {_code(result.offline.current_path)} (fingerprint {fingerprint})"


def _offline(result: CheckResult) -> list[str]:
    """Two recordings compared offline: what that could and could not tell, decided with the
    data (``OfflineComparison.said``)."""
    if result.offline is None:
        return []
    return ["### Compared offline (nothing ran here)", "",
            *(f"- {_md(sentence)}" for sentence in result.offline.said), ""]


def _digests(result: CheckResult) -> list[str]:
    """Two check JSONs: their arrays by digest, mode by mode (no sizes: digests have none)."""
    digests = result.offline.digests if result.offline else None
    if digests is None:
        return []
    rows = [[g.name, str(g.compared), str(g.differing), _code(g.first) if g.first else "—"]
            for g in digests.groups]
    return ["### Arrays by digest", "", "Equal digests, equal bits; a digest has no size.", "",
            *_table(["arrays", "compared", "differ", "first that differs"], rows), ""]


def _elsewhere(result: CheckResult) -> list[str]:
    """The golden came from another machine or build: a quote under the heading, first."""
    if result.recorded_elsewhere is None:
        return []
    return [f"> ⚠️ {_md(result.recorded_elsewhere.line)}", ""]


def _since(result: CheckResult) -> list[str]:
    """When this golden was last identical here, from the history, as one more bullet."""
    if result.since_last_identical is None:
        return []
    return [f"- history: {_md(result.since_last_identical)}"]


def _model(result: CheckResult) -> list[str]:
    """A user's model, as more of the list under the headline."""
    m = result.subject.model
    if m is None:
        return []
    # The words around the code spans are envaudit's and the manifest's validated plain names.
    lines = [f"- model: {model_identity(m, _code)}",
             f"- ran: {model_run(m, _code)}",
             f"- outputs: {model_outputs(m, _code)}"]
    if result.subject.basis:
        lines.append(f"- basis: {_md(result.subject.basis)}")
    return lines


def _summary(result: CheckResult) -> list[str]:
    """This environment at a glance, the facts ``envaudit report`` shows first (from the
    result's current fingerprint, redacted with the result)."""
    if result.current_fingerprint is None:
        return []
    title = "### Environment" if result.offline is None else "### Environment of B"
    return [title, "", *summary_lines(summarize(result.current_fingerprint)), ""]


def _fingerprint(result: CheckResult, compact: bool) -> list[str]:
    """The environment changes grouped by origin; each group's minutiae (decided with the data)
    in a collapsed ``<details>`` block, so the page stays short and still holds every change."""
    changes = result.fingerprint_changes
    if result.offline is not None and not result.offline.fingerprints_compared:
        return ["### Environment", "", "The changes between A and B are not known (see above).",
                ""]
    if not changes:
        head = [] if result.current_fingerprint is not None else ["### Environment", ""]
        return [*head, "No fingerprint changes.", ""]
    numerics = sum(1 for c in changes if c.numerics)
    lines = ["### Environment changes", "",
             f"{len(changes)} fields changed, {numerics} numerics-relevant.", ""]
    for g in group(changes):
        if g.listed:
            lines += [f"**{_md(heading(g))}**", "", *_change_rows(g.listed, compact), ""]
        if g.folded and compact:
            lines += [f"{_md(folded_summary(g))}: not listed here; all of them: {FULL_REPORT}.",
                      ""]
        elif g.folded:
            lines += [f"<details><summary>{_md(folded_summary(g))}</summary>", "",
                      *_change_rows(g.folded, compact), "", "</details>", ""]
    return lines


def _change_rows(changes: Sequence[Change], compact: bool) -> list[str]:
    shown = changes[:MAX_ROWS] if compact else changes
    rows = [[c.path, _value(c.golden), _value(c.current), c.category,
             "yes" if c.numerics else "no"] for c in shown]
    return _table(["path", "golden", "current", "category", "numerics"], rows) + _left_out(
        len(changes) - len(shown), "more changes")


def _left_out(count: int, what: str) -> list[str]:
    """The line under a table that lists fewer rows than it has."""
    return [] if count <= 0 else ["", f"_{count} {what} not listed here; all of them:"
                                      f" {FULL_REPORT}._"]


def _array_table(header: Sequence[str], members: Sequence[TensorComparison],
                 row: Callable[[int, TensorComparison], list[str]], compact: bool) -> list[str]:
    """One mode's arrays; more than ``FOLD_ROWS`` folded, and in a ``compact`` report only the
    ones that differ, at most ``MAX_ROWS``."""
    indexed = list(enumerate(members))
    if compact:
        indexed = [(i, s) for i, s in indexed if not s.identical]
    shown = indexed[:MAX_ROWS] if compact else indexed
    identical = sum(1 for s in members if s.identical) if compact else 0
    lines = _table(header, [row(i, s) for i, s in shown])
    if identical:
        lines += ["", f"_{identical} bit-identical arrays not listed._"]
    lines += _left_out(len(indexed) - len(shown), "more arrays that differ")
    if len(members) <= FOLD_ROWS:
        return lines
    differ = sum(1 for s in members if not s.identical)
    return [f"<details><summary>{len(members)} arrays, {differ} not bit-identical</summary>",
            "", *lines, "", "</details>"]


def _stages(result: CheckResult, compact: bool) -> list[str]:
    if not result.stages:
        return []
    if result.subject.model is not None:
        return _model_arrays(result, compact)
    lines: list[str] = []
    for mode, members, fd, not_run in result.by_mode():
        title = "### Stages" if mode is None else f"### Stages, {_md(mode)} mode"
        if not_run:
            lines += [title, "", f"Not run: {_md(not_run)}", ""]
            continue
        lines += [title, "", *_array_table(
            ["#", "stage", "result", "max rel", "max abs", "mismatch", "ulp@scale",
             "error vs float64 (golden → current)"], members, _stage_row, compact), ""]
        if fd is not None:
            said = divergence_words(fd, _bold_code) or \
                f"{_bold_code(fd.stage)} (#{fd.index} in pipeline order)"
            lines.append(f"First divergence: {said}.")
            own = ", ".join(_code(s) for s in fd.changed_stages) or "none"
            carried = ", ".join(_code(r.stage) for r in fd.replay if r.identical) or "none"
            if fd.replay:
                lines.append(f"Replayed alone on golden inputs: changed by themselves: {own}; "
                             f"only carry an earlier change: {carried}.")
            elif result.offline is not None:
                lines.append("Not replayed: compared offline, so which later stages changed by"
                             " themselves is not known.")
            lines.append("")
    return lines


def _bold_code(text: str) -> str:
    return f"**{_code(text)}**"


def _stage_row(i: int, s: TensorComparison) -> list[str]:
    return [str(i), _code(s.name), STATUS_WORDS[s.status], _num(s.max_rel), _num(s.max_abs),
            percent(s.mismatch_fraction), _num(s.ulp_at_scale),
            f"{_num(s.golden_error)} → {_num(s.current_error)}{_growth(s)}"]


def _model_row(i: int, s: TensorComparison) -> list[str]:
    return [str(i), _code(s.name), STATUS_WORDS[s.status], _num(s.max_rel), _num(s.max_abs),
            percent(s.mismatch_fraction), _num(s.ulp_at_scale), s.tolerance or "—"]


def _model_arrays(result: CheckResult, compact: bool) -> list[str]:
    """A user model's arrays: no float64 twin and no replay, but the tolerance each output got."""
    lines: list[str] = []
    for mode, members, fd, not_run in result.by_mode():
        model = result.subject.model
        title = (f"### Model arrays, {_md(mode or (model.mode if model else ''))}"
                 " mode (inputs, layers, outputs)")
        if not_run:
            lines += [title, "", f"Not run: {_md(not_run)}", ""]
            continue
        lines += [title, "", *_array_table(
            ["#", "array", "result", "max rel", "max abs", "mismatch", "ulp@scale", "tolerance"],
            members, _model_row, compact), ""]
        if fd is not None:
            said = divergence_words(fd, _bold_code) or \
                f"**{_code(fd.stage)}** (#{fd.index}: inputs, then layers, then outputs)"
            lines += [f"First divergence: {said}.", ""]
    return lines


def _probes(result: CheckResult) -> list[str]:
    if not result.probes:
        return []
    rows = []
    for family in dict.fromkeys(p.family for p in result.probes):
        members = [p for p in result.probes if p.family == family]
        differ = [p for p in members if not p.identical]
        worst = max(differ, key=lambda p: p.max_rel, default=None)
        status = most_severe(p.status for p in members)
        rows.append([family, str(len(members)), str(len(differ)),
                     _num(worst.max_rel) if worst else "0", STATUS_WORDS[status]])
    return ["### Probes", "", *_table(["family", "probes", "differ", "max rel", "result"], rows),
            ""]


def _witness(result: CheckResult) -> list[str]:
    """Whether fp32 ran at full precision here (a user model's precision rests on it)."""
    witness = result.subject.witness
    return [] if witness is None else [_md(witness_sentence(witness)), ""]


def _detections(result: CheckResult, compact: bool) -> list[str]:
    if result.subject.model is not None and result.subject.model.detections is None:
        return ["### Detections", "", "None: the model's outputs are not detections; name them "
                "with `--detections boxes=NAME,scores=NAME,classes=NAME` to compare boxes.", ""]
    d = result.detections
    names = class_names(result.subject.model)
    lines = ["### Detections", "",
             *_table(["golden", "current", "matched", "added", "removed", "class changed",
                      "max score Δ", "min IoU", "max box Δ"],
                     [[str(d.golden), str(d.current), str(d.matched), str(d.added),
                       str(d.removed), str(d.class_changed), _num(d.max_score_delta),
                       "—" if d.min_iou is None else f"{d.min_iou:.4f}",
                       _num(d.max_box_delta)]]), ""]
    decided = [c for c in d.changes if c.kind != "matched"]
    if decided:
        shown = decided[:MAX_ROWS] if compact else decided
        rows = [[c.kind.replace("_", " "), str(c.image),
                 _classes(c.golden_class, c.current_class, names),
                 _score(c.golden_score), _score(c.current_score), _num(c.margin),
                 "expected fragility" if c.expected_fragility else ""] for c in shown]
        lines += _table(["change", "image", "class", "golden score", "current score", "margin",
                         "fragility"], rows)
        lines += _left_out(len(decided) - len(shown), "more changed detections")
        lines += ["", f"Measured noise: {_num(d.noise)}. A change whose decision margin is below "
                  "it is expected fragility (a near-tie flipped), not a model bug.", ""]
    return lines


def _causes(result: CheckResult) -> list[str]:
    if not result.causes:
        return [] if result.verdict == "identical" else ["### Causes", "", "None identified.", ""]
    lines = ["### Causes", ""]
    for i, cause in enumerate(result.causes, 1):
        lines.append(f"{i}. **{_md(cause.label)}**: {_md(cause.change)}")
        lines += [f"   - {_md(e)}" for e in cause.evidence]
    if result.confirmation_skipped:
        lines += ["", "_Confirmation re-runs were skipped (`--no-confirm`): no variable was put"
                  " back._"]
    if result.cannot_affect:
        lines += ["", "Cannot affect these results (not ranked):", ""]
        lines += [f"- {_md(u.change)} — {_md(u.reason)}" for u in result.cannot_affect]
    b = result.bisection
    if b is not None:
        lines += ["", "**Environment bisection (uv)**", ""]
        lines += _table(["environment", "outcome", "packages", "what the bits showed"],
                        [[t.label, t.outcome + (" (cached)" if t.cached else ""),
                          Markdown(", ".join(_code(p) for p in t.pins)), t.detail]
                         for t in b.trials])
        lines += [f"- not restored: {_md(k)}: {_md(v)}" for k, v in b.refused.items()]
        if b.failure:
            lines.append(f"- no environment could be built: {_md(b.failure)}")
    return [*lines, ""]


def _nondeterminism(result: CheckResult) -> list[str]:
    nd = result.nondeterminism
    if result.offline is not None:
        text = "not measured (compared offline: nothing ran)."
    elif nd is None or nd.runs <= 1:
        text = "not measured (use `--repeat N`)."
    elif nd.deterministic:
        text = f"none; {nd.runs} runs were bit-identical to each other."
    else:
        arrays = ", ".join(_code(a) for a in nd.differing_arrays)
        text = f"{nd.runs} runs differ in {arrays} (spread up to {_num(nd.max_spread)})."
    return [f"**Nondeterminism:** {text}", ""]


def _md(text: str) -> str:
    """A stranger's string (or a sentence quoting one) as Markdown text."""
    return for_markdown(text)


def _code(text: str) -> Markdown:
    """A stranger's name or path as a code span it cannot end early."""
    return for_markdown_code(text)


def _growth(c: TensorComparison) -> str:
    return "" if c.growth_shown is None else f" ({growth(c.growth_shown)})"


def _classes(golden: int | None, current: int | None, names: Sequence[str]) -> str:
    labels = [class_label(golden, names), class_label(current, names)]
    if golden is None or current is None:
        return labels[0] if current is None else labels[1]
    return labels[0] if golden == current else f"{labels[0]} → {labels[1]}"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _value(value: Any, limit: int = 60) -> Markdown:
    text = "—" if value is None else str(value)
    return _code(text if len(text) <= limit else text[: limit - 1] + "…")


def _num(value: float | None) -> str:
    return number(value, 2)
