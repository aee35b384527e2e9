"""``envaudit check`` in the terminal: a rich renderable, read top to bottom.

Order: a golden recorded on another machine or build says so first (one line), then the headline
verdict (colored by verdict), for a user's model what it is and what the verdict rests on, the
environment changes (numerics-relevant first), the stages (a user model's
arrays, with the tolerance each was given) with a log-scale bar of each one's max_rel, the first
divergence and its replay, the training steps step by step (``training_text``), the conversion
gap of each converted mode and what converted and ran it (``conversion_text``), the probes and
the precision witness, the detections and every decision that changed (with "expected
fragility" marks), the causes with their evidence, nondeterminism.
Everything must still read well without color (NO_COLOR, a file, a CI log): colors only repeat what
the words already say. Every string goes in through ``_t``: as ``Text``, so a path with brackets is
never read as rich markup, with control characters escaped (``escape.for_terminal``), so a
stranger's value cannot drive the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from envaudit.compare.types import (
    ArrayStatus,
    DetectionChange,
    FirstDivergence,
    TensorComparison,
    most_severe,
)
from envaudit.fingerprint.diff import group
from envaudit.render.change_table import ChangeTable, shown_changes, volatile_phrase
from envaudit.render.conversion_text import section as conversion_section
from envaudit.render.escape import for_terminal
from envaudit.render.formatting import (
    STATUS_WORDS,
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
from envaudit.render.palette import terminal_style, verdict_terminal_style
from envaudit.render.training_text import section as training_section
from envaudit.render.training_words import divergence_words, quoted
from envaudit.result import CheckResult

# A verdict's mark and style: bold, in the colour of the status it rests on (``palette``).
VERDICT_STYLE = {
    verdict: (mark, verdict_terminal_style(verdict))
    for verdict, mark in (("identical", "✔"), ("equivalent", "≈"), ("drift", "▲"),
                          ("precision_loss", "✖"))}
CONFIDENCE_STYLE = {"confirmed": "bold green", "likely": "yellow", "possible": "dim",
                    "ruled_out": "dim"}
# Each array status in words (``formatting.STATUS_WORDS``) and its colour (``palette``: one per
# status in every format; on a terminal without true colour rich picks the nearest it has, and
# the word beside it still says which).
STATUS_STYLE: dict[ArrayStatus, tuple[str, str]] = {
    status: (STATUS_WORDS[status], terminal_style(status)) for status in STATUS_WORDS}
# The bar spans 1e-8 (about one fp32 ulp of scale) to 1 (the whole scale), one cell per decade.
BAR_DECADES = (-8, 0)
BAR_WIDTH = 8


def render(result: CheckResult, verbose: bool = False) -> Group:
    """The whole report as one rich renderable; ``verbose`` lists every environment change, build
    details included."""
    parts: list[Any] = [*_elsewhere(result), _headline(result), _where(result),
                        *_offline(result), *_since(result), *_tf32(result), *_model(result),
                        Text()]
    parts += _fingerprint(result, verbose)
    if result.digests_only:
        return Group(*parts, *_digests(result))
    parts += _stages(result.stages, result)
    parts += training_section(result)
    parts += conversion_section(result, verbose)
    parts += _probes(result.probes, result.changed_probe_families)
    parts += _witness(result)
    parts += _detections(result)
    parts += _causes(result)
    parts.append(_nondeterminism(result))
    return Group(*parts)


def headline(result: CheckResult) -> Group:
    """The report in one line, for ``-q``: the headline verdict alone."""
    return Group(_headline(result))


def bar(max_rel: float, identical: bool) -> str:
    """A log-scale bar of a stage's max_rel: empty when identical, full at the tensor's scale."""
    if identical:
        return "·"
    if not math.isfinite(max_rel) or max_rel >= 10.0 ** BAR_DECADES[1]:
        return "█" * BAR_WIDTH
    low, high = BAR_DECADES
    level = (math.log10(max(max_rel, 10.0 ** low)) - low) / (high - low)
    return "█" * max(1, round(level * BAR_WIDTH))


# --- sections -------------------------------------------------------------------------------


def _elsewhere(result: CheckResult) -> list[Any]:
    """First of all: the golden came from another machine or build (one line, decided by the
    check), so a first check against the shipped reference is not read as a regression."""
    if result.recorded_elsewhere is None:
        return []
    return [_t(result.recorded_elsewhere.line, style="bold yellow")]


def _headline(result: CheckResult) -> Text:
    mark, style = VERDICT_STYLE.get(result.verdict, ("?", "bold"))
    return _t(f"{mark} {result.headline}", style=style)


def _where(result: CheckResult) -> Text:
    strict = " (--strict)" if result.strict else ""
    current = (f"current fingerprint {result.current_fingerprint_id[:12]}"
               if result.offline is None else
               f"B {result.offline.current_path} (fingerprint"
               f" {result.current_fingerprint_id[:12]})")
    text = (f"golden {result.golden_path} (fingerprint {result.golden_fingerprint_id[:12]}), "
            f"{current}; exit {result.exit_code}{strict}")
    return _t(text, style="dim")


def _offline(result: CheckResult) -> list[Any]:
    """Two recordings compared offline: what that could and could not tell (decided with the
    data, ``OfflineComparison.said``)."""
    if result.offline is None:
        return []
    return [_t("Compared offline (nothing ran here):", style="bold"),
            *(_t(f"  • {sentence}") for sentence in result.offline.said)]


def _digests(result: CheckResult) -> list[Any]:
    """Two check JSONs: their arrays by digest, mode by mode (no sizes: digests have none)."""
    digests = result.offline.digests if result.offline else None
    if digests is None:
        return []
    table = _table("Arrays by digest (equal digests, equal bits)", "arrays", "compared",
                   "differ", "first that differs")
    for g in digests.groups:
        table.add_row(_t(g.name), _t(str(g.compared)),
                      _t(str(g.differing), style="yellow" if g.differing else None),
                      _t(g.first or "—"))
    return [table, Text()]


def _since(result: CheckResult) -> list[Any]:
    """When this golden was last identical here, from the history (one line, as decided there)."""
    if result.since_last_identical is None:
        return []
    return [_t(result.since_last_identical, style="dim")]


def _tf32(result: CheckResult) -> list[Any]:
    """TF32 in this run and the golden, where it applies or differs (decided in ``tf32.py``)."""
    return [_t(result.tf32.line, style="dim")] if result.tf32 and result.tf32.shown else []


def _model(result: CheckResult) -> list[Any]:
    """A user's model: which one, how it ran on what, its outputs, and what the verdict rests on."""
    m = result.subject.model
    if m is None:
        return []
    parts: list[Any] = [_t(f"Model: {model_identity(m)}"), _t(f"  ran {model_run(m)}"),
                        _t(f"  outputs: {model_outputs(m)}")]
    if result.subject.basis:
        parts.append(_t(f"  basis: {result.subject.basis}", style="dim"))
    return parts


def _fingerprint(result: CheckResult, verbose: bool) -> list[Any]:
    """The environment changes grouped by origin (the grouping and folding come with the data)."""
    changes = shown_changes(result.fingerprint_changes, verbose)
    if result.offline is not None and not result.offline.fingerprints_compared:
        return [_t("Environment: the changes between A and B are not known (see above)."),
                Text()]
    if not changes:
        volatile = volatile_phrase(result.fingerprint_changes)
        return [_t(f"Environment: no fingerprint changes{f' ({volatile})' if volatile else ''}."),
                Text()]
    numerics = sum(1 for c in changes if c.numerics)
    title = _t(f"Environment changes ({len(changes)}, {numerics} numerics-relevant)",
               style="italic")
    return [title, ChangeTable(group(changes), verbose), Text()]


def _stages(stages: Sequence[TensorComparison], result: CheckResult) -> list[Any]:
    if not stages:
        return [_t("Stages: none recorded."), Text()]
    if result.subject.model is not None:
        return _model_arrays(result)
    parts: list[Any] = []
    for label, members, fd, not_run in result.by_mode():
        title = "Stages (pipeline order)" if label is None else \
            f"Stages, {label} mode (pipeline order)"
        if not_run:
            parts += [_t(f"{title}: not run: {not_run}", style="yellow"), Text()]
            continue
        origin = _origins(fd)
        table = _table(title, "#", "stage", "result", "max rel", "log scale", "mismatch",
                       "error vs f64 (growth)", "replay")
        for i, s in enumerate(members):
            status, style = STATUS_STYLE[s.status]
            table.add_row(_t(str(i)), _t(s.name), _t(status, style), _t(_num(s.max_rel)),
                          _t(bar(s.max_rel, s.identical), style),
                          _t(percent(s.mismatch_fraction)), _t(_errors(s)),
                          _t(origin.get(s.name, "")))
        parts.append(table)
        if fd is not None:
            said = divergence_words(fd, quoted) or \
                f"stage '{fd.stage}' (#{fd.index} in pipeline order)"
            parts.append(_t(f"First divergence: {said}."))
            own = list(fd.changed_stages)
            carried = [r.stage for r in fd.replay if r.identical]
            if fd.replay:
                where = "" if label is None else f" in {label} mode"
                line = f"Replayed alone{where} on golden inputs: "
                line += (f"{', '.join(own)} changed by "
                         f"{'itself' if len(own) == 1 else 'themselves'}"
                         if own else "no stage changed by itself")
                if carried:
                    line += f"; {', '.join(carried)} only carry the earlier change"
                parts.append(_t(line + "."))
            elif result.offline is not None:
                parts.append(_t("Not replayed: compared offline, so which later stages changed"
                                " by themselves is not known.", style="dim"))
        parts.append(Text())
    return parts


def _model_arrays(result: CheckResult) -> list[Any]:
    """A user model's arrays: no float64 twin and no replay, but the tolerance each output got."""
    parts: list[Any] = []
    for label, members, fd, not_run in result.by_mode():
        mode = label or (result.subject.model.mode if result.subject.model else "")
        title = f"Model arrays, {mode} mode (inputs, layers, outputs)"
        if not_run:
            parts += [_t(f"{title}: not run: {not_run}", style="yellow"), Text()]
            continue
        table = _table(title, "#", "array", "result", "max rel", "log scale", "mismatch",
                       "tolerance")
        for i, s in enumerate(members):
            status, style = STATUS_STYLE[s.status]
            table.add_row(_t(str(i)), _t(s.name), _t(status, style), _t(_num(s.max_rel)),
                          _t(bar(s.max_rel, s.identical), style),
                          _t(percent(s.mismatch_fraction)), _t(s.tolerance or "—"))
        parts.append(table)
        if fd is not None:
            said = divergence_words(fd, quoted) or \
                f"{fd.stage} (#{fd.index}: inputs, then layers, then outputs)"
            parts.append(_t(f"First divergence: {said}."))
        parts.append(Text())
    return parts


def _probes(probes: Sequence[TensorComparison], families: Sequence[str]) -> list[Any]:
    if not probes:
        return []
    changed = [p for p in probes if not p.identical]
    if not changed:
        return [_t(f"Probes: all {len(probes)} bit-identical."), Text()]
    head = _t(f"Probes: {len(changed)} of {len(probes)} differ; changed families: "
              f"{', '.join(families) or ', '.join(sorted({p.family for p in changed}))}.")
    table = _table(None, "family", "probes", "differ", "max rel", "error growth", "result")
    for family in dict.fromkeys(p.family for p in probes):
        members = [p for p in probes if p.family == family]
        differ = [p for p in members if not p.identical]
        growths = [p.growth_shown for p in differ if p.growth_shown is not None]
        status, style = STATUS_STYLE[most_severe(p.status for p in members)]
        table.add_row(_t(family), _t(str(len(members))), _t(str(len(differ))),
                      _t(_num(max((p.max_rel for p in differ), default=0.0))),
                      _t(growth(max(growths)) if growths else "—"), _t(status, style))
    return [head, table, Text()]


def _witness(result: CheckResult) -> list[Any]:
    """Whether fp32 ran at full precision here (a user model's precision rests on it)."""
    w = result.subject.witness
    if w is None:
        return []
    style = None if w.full_precision else ("red" if w.lossy else "yellow")
    return [_t(witness_sentence(w), style=style), Text()]


def _detections(result: CheckResult) -> list[Any]:
    if result.subject.model is not None and result.subject.model.detections is None:
        return [_t("Detections: none (the model's outputs are not detections; name them with "
                   "--detections boxes=NAME,scores=NAME,classes=NAME to compare boxes)."),
                Text()]
    d = result.detections
    names = class_names(result.subject.model)
    moved = sum(1 for c in d.changes if c.kind == "matched")
    summary = (f"Detections: golden {d.golden}, current {d.current}; {d.matched} matched"
               f"{f' ({moved} with moved score or box)' if moved else ''}, {d.removed} removed, "
               f"{d.added} added, {d.class_changed} changed class; max score Δ "
               f"{_num(d.max_score_delta)}, min IoU {_iou(d.min_iou)}, max box Δ "
               f"{_num(d.max_box_delta)}; noise {_num(d.noise)}.")
    parts: list[Any] = [_t(summary, style=None if d.same else "yellow")]
    if len(result.modes) > 1:
        for m in result.modes:
            md = m.detections
            parts.append(_t(f"  {m.mode}: " + (f"not run ({m.not_run})" if md is None else
                            f"{md.matched} matched, {md.removed} removed, {md.added} added, "
                            f"{md.class_changed} changed class; max score Δ "
                            f"{_num(md.max_score_delta)}")))
    decided = [c for c in d.changes if c.kind != "matched"]
    if decided:
        table = _table(None, "change", "image", "class", "score", "box", "IoU", "margin", "")
        for c in decided:
            table.add_row(_t(c.kind.replace("_", " ")), _t(str(c.image)), _t(_classes(c, names)),
                          _t(_pair(c.golden_score, c.current_score)),
                          _t(_box(c.golden_box if c.golden_box is not None else c.current_box)),
                          _t(_iou(c.iou)), _t(_num(c.margin)),
                          _t("expected fragility" if c.expected_fragility else "",
                             "cyan" if c.expected_fragility else None))
        parts.append(table)
        if any(c.expected_fragility for c in decided):
            parts.append(_t("Expected fragility: the decision sat closer to its threshold than "
                            "the measured noise, so a rounding change may flip it; not a model "
                            "bug.", style="dim"))
    parts.append(Text())
    return parts


def _causes(result: CheckResult) -> list[Any]:
    if not result.causes:
        if result.verdict == "identical":
            return []
        return [_t("Causes: none identified from the evidence."), Text()]
    parts: list[Any] = [_t("Causes (most likely first):", style="bold")]
    for i, cause in enumerate(result.causes, 1):
        line = _t(f"{i}. ")
        line.append_text(_t(f"[{cause.label}]", CONFIDENCE_STYLE.get(cause.confidence)))
        line.append_text(_t(f" {cause.change}"))
        parts.append(line)
        parts.extend(_t(f"   • {e}") for e in cause.evidence)
    if result.confirmation_skipped:
        parts.append(_t("Confirmation re-runs were skipped (--no-confirm): no variable was "
                        "put back.", style="dim"))
    parts += _cannot_affect(result)
    parts += _bisection(result)
    parts.append(Text())
    return parts


def _bisection(result: CheckResult) -> list[Any]:
    b = result.bisection
    if b is None:
        return []
    parts: list[Any] = [_t("Environment bisection (uv):", style="bold")]
    if not b.groups:
        return [*parts, _t("   no package that can move numbers changed: nothing to bisect")]
    parts += [_t(f"   change: {g}") for g in b.groups]
    for trial in b.trials:
        cached = ", results cached" if trial.cached else ""
        parts.append(_t(f"   • {trial.label} [{trial.outcome}{cached}]: {', '.join(trial.pins)}"))
        parts.append(_t(f"     {trial.detail}", style="dim"))
    parts += [_t(f"   not restored: {name}: {why}") for name, why in b.refused.items()]
    if b.failure:
        parts.append(_t(f"   no environment could be built: {b.failure}", style="yellow"))
    return parts


def _cannot_affect(result: CheckResult) -> list[Any]:
    if not result.cannot_affect:
        return []
    parts: list[Any] = [_t("Cannot affect these results (not ranked):", style="bold")]
    parts += [_t(f"   • {u.change} — {u.reason}") for u in result.cannot_affect]
    return parts


def _nondeterminism(result: CheckResult) -> Text:
    nd = result.nondeterminism
    if result.offline is not None:
        return _t("Nondeterminism: not measured (compared offline: nothing ran).", style="dim")
    if nd is None or nd.runs <= 1:
        return _t("Nondeterminism: not measured (use --repeat N).", style="dim")
    if nd.deterministic:
        return _t(f"Nondeterminism: none; {nd.runs} runs were bit-identical to each other.")
    return _t(f"Nondeterminism: {nd.runs} runs differ among themselves in "
              f"{', '.join(nd.differing_arrays)} (spread up to {_num(nd.max_spread)}); "
              f"differences within that spread count as noise.", style="yellow")


# --- cells ----------------------------------------------------------------------------------


def _table(title: str | None, *columns: str) -> Table:
    # A str title or header would be read as rich markup: each goes in as Text.
    table = Table(title=None if title is None else _t(title), title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in columns:
        table.add_column(_t(column), overflow="fold")
    return table


def _t(value: str, style: str | None = None) -> Text:
    """Every string this report shows goes in here: as ``Text`` (never read as markup), with
    control characters escaped."""
    return Text(for_terminal(value), style=style or "")


def _origins(fd: FirstDivergence | None) -> dict[str, str]:
    """Per stage: first divergence, and whether its replay changed by itself or only carries."""
    if fd is None:
        return {}
    notes = {r.stage: ["carried" if r.identical else "changed here"] for r in fd.replay}
    notes.setdefault(fd.stage, []).insert(0, "first")
    return {stage: ", ".join(n) for stage, n in notes.items()}


def _errors(c: TensorComparison) -> str:
    """The current run's error against the float64 twin, and how much it grew from golden's."""
    if c.current_error is None:
        return "—"
    if c.growth_shown is None:
        return _num(c.current_error)
    return f"{_num(c.current_error)} ({growth(c.growth_shown)})"


def _classes(c: DetectionChange, names: Sequence[str]) -> str:
    if c.kind == "class_changed":
        return f"{class_label(c.golden_class, names)} → {class_label(c.current_class, names)}"
    return class_label(c.golden_class if c.golden_class is not None else c.current_class, names)


def _pair(golden: float | None, current: float | None) -> str:
    g = "—" if golden is None else f"{golden:.4f}"
    c = "—" if current is None else f"{current:.4f}"
    return f"{g} → {c}"


def _box(b: Sequence[float] | None) -> str:
    return "—" if b is None else "(" + ", ".join(f"{v:.3f}" for v in b) + ")"


def _iou(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _num(value: float | None) -> str:
    return number(value, 1)
