"""The HTML report's pictures, drawn with matplotlib as SVG text to inline in the page.

Constraints the next editor must keep:
- matplotlib is imported here, and this module is imported only inside ``check_html.render``:
  every other command stays free of its import cost.
- No pyplot: figures are ``matplotlib.figure.Figure`` objects on the Agg-free SVG canvas, so no
  global figure state and no GUI backend is touched.
- Deterministic output: a fixed ``svg.hashsalt`` per figure (unique per figure, because several
  SVGs share one HTML document and their element ids must not collide), no date metadata.
  ``svg.fonttype = 'none'`` keeps text as text (small, and the browser's own fonts are used).
- Every string from a result is a stranger's: it goes into matplotlib with ``parse_math=False``
  (a ``$`` is not mathtext) and matplotlib escapes it as XML; the SVG is cut to its ``<svg>``
  element so it can be inlined.
- Nothing here decides anything: statuses and the noise band's edge come with the data
  (``compare/types.py``); colours and words come from ``palette`` (one per status, and every
  colour drawn has its status word in the chart's legend).
- The first picture of a mode is how far current is from golden (``difference_chart``); the
  error against the float64 twin (``error_chart``) is the second view, never the first.
- Training's picture is the growth of the weights' difference (``growth_chart``), drawn only
  when a step moved.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from envaudit.compare.types import (
    EQUIVALENT_MAX_REL_ULPS,
    EQUIVALENT_SLACK_ULPS,
    FP32_UNIT_ROUNDOFF,
    ROUNDING_BAND_FP32,
    STATUS_SEVERITY,
    ArrayStatus,
    TensorComparison,
)
from envaudit.render.palette import (
    BLACK,
    BLUE,
    GOLDEN_SERIES,
    NOISE_BAND,
    ORANGE,
    REDDISH_PURPLE,
    REFERENCE,
    STATUS,
)

EQUIVALENT_SLACK = EQUIVALENT_SLACK_ULPS * FP32_UNIT_ROUNDOFF  # the slack "equivalent" allows
# An exact error or a difference of 0 has no place on a log axis: it is drawn at this fraction of
# the smallest value shown, on a labelled row at the bottom of the chart.
EXACT_BELOW = 0.1
# A difference that is not a number (another shape, an array not run: max_rel is inf) is drawn on
# a labelled row this factor above the largest finite value.
NOT_COMPARABLE_ABOVE = 10.0
LABEL_CHARS = 24  # an axis label longer than this is cut (the table beside the chart has it whole)
CHART_HEIGHT = 3.2  # inches, before the room the rotated labels need


def figure(width: float, height: float) -> Any:
    """A bare figure on the SVG canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasSVG(fig)
    return fig


def svg_text(fig: Any, salt: str) -> str:
    """The figure as an inline ``<svg>`` element (no XML declaration or DOCTYPE)."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"envaudit-{salt}", "svg.fonttype": "none",
                                "svg.image_inline": True}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    text = text[text.index("<svg"):]
    # The RDF metadata block and the namespace declarations are URLs that name vocabularies; an
    # HTML parser puts inline SVG in its namespaces by itself, and the page stays free of URLs.
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)


def difference_chart(arrays: Sequence[TensorComparison], salt: str) -> str:
    """How far each array (a stage, a layer, an output) is from its golden value, relative to its
    scale (max_rel), on a log axis, over the rounding-noise band. A bar per array that differs,
    in its status's colour; an array that does not (max_rel 0) is a marker on the "0" row, and
    one that cannot be compared (max_rel inf: another shape, not run) a marker on the "inf" row;
    the legend names each status drawn."""
    positive = [a.max_rel for a in arrays if a.max_rel > 0 and math.isfinite(a.max_rel)]
    low = min([*positive, FP32_UNIT_ROUNDOFF]) * EXACT_BELOW
    high = max([*positive, ROUNDING_BAND_FP32]) * NOT_COMPARABLE_ABOVE
    rows = {low: "0"}
    if any(not math.isfinite(a.max_rel) for a in arrays):
        rows[high] = "inf"
    fig = figure(max(6.0, 0.55 * len(arrays) + 1.5), CHART_HEIGHT)
    ax = fig.add_subplot()
    ax.axhspan(low / 2, ROUNDING_BAND_FP32, color=NOISE_BAND, zorder=0, linewidth=0)
    ax.axhline(ROUNDING_BAND_FP32, color=STATUS["rounding"].fill, linestyle="-", linewidth=1)
    ax.axhline(FP32_UNIT_ROUNDOFF, color=REFERENCE, linestyle="--", linewidth=1)
    for i, a in enumerate(arrays):
        colour = STATUS[a.status].fill
        # Each array's mark is named in the SVG (``<g id="SALT-bar-3">``), so a reader of the
        # page (a test) can tell a bar from a mark on the "0" row without measuring pixels.
        if a.max_rel > 0 and math.isfinite(a.max_rel):
            ax.bar(i, a.max_rel - low / 2, bottom=low / 2, width=0.6, color=colour,
                   edgecolor=REFERENCE, linewidth=0.5, zorder=2, gid=f"{salt}-bar-{i}")
        else:
            row = "zero" if a.max_rel == 0 else "not-comparable"
            ax.plot([i], [low if a.max_rel == 0 else high], marker="s" if a.max_rel == 0
                    else "^", markersize=8, color=colour, markeredgecolor=REFERENCE,
                    markeredgewidth=0.5, zorder=3, gid=f"{salt}-{row}-{i}")
    ax.set_yscale("log")
    ax.set_ylim(low / 2, high * 3)
    _log_axis(fig, ax, [a.name for a in arrays], "max rel difference, current vs golden")
    _rows_and_decades(ax, rows, low, high)
    ax.grid(axis="y", which="major", color="#eeeeee", zorder=1)
    ax.legend(handles=[*_status_keys(a.status for a in arrays), *_band_keys()], fontsize=7,
              loc="upper left", framealpha=0.85, ncol=2)
    return svg_text(fig, salt)


def _rows_and_decades(ax: Any, rows: dict[float, str], low: float, high: float) -> None:
    """Y ticks at the decades between the special rows, and the rows ("0", "inf")
    labelled in words where a decade would be."""
    first, last = math.ceil(math.log10(low * 4)), math.floor(math.log10(high / 2))
    ticks = {10.0 ** k: f"1e{k:+03d}".replace("+", "") for k in range(first, last + 1)}
    ticks.update(rows)
    ax.set_yticks(sorted(ticks), labels=[ticks[y] for y in sorted(ticks)])


def _status_keys(statuses: Iterable[ArrayStatus]) -> list[Any]:
    """A legend entry per status drawn (not per status that exists), least severe first."""
    from matplotlib.patches import Patch

    shown = set(statuses)
    return [Patch(facecolor=STATUS[s].fill, edgecolor=REFERENCE, linewidth=0.5,
                  label=STATUS[s].word) for s in STATUS_SEVERITY if s in shown]


def _band_keys() -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Patch(facecolor=NOISE_BAND, edgecolor=STATUS["rounding"].fill, linewidth=1,
                  label=f"rounding-noise band (fp32, max rel ≤ {EQUIVALENT_MAX_REL_ULPS:g} u"
                        f" = {ROUNDING_BAND_FP32:.1e})"),
            Line2D([], [], color=REFERENCE, linestyle="--", linewidth=1,
                   label="fp32 unit roundoff u = 2⁻²⁴")]


def error_chart(stages: Sequence[TensorComparison], salt: str) -> str:
    """The second view: each stage's relative RMS error against the float64 twin, golden (black
    circles) and current (crosses in the stage's status colour), on a log axis, over the fp32
    unit roundoff and the slack "equivalent" allows."""
    names = [s.name for s in stages]
    golden = [(i, s.golden_error) for i, s in enumerate(stages) if s.golden_error is not None]
    current = [(i, s.current_error, s.status) for i, s in enumerate(stages)
               if s.current_error is not None]
    positive = [v for _, v in golden if v > 0] + [v for _, v, _ in current if v > 0]
    low = min([*positive, FP32_UNIT_ROUNDOFF]) * EXACT_BELOW
    fig = figure(max(6.0, 0.55 * len(stages) + 1.5), CHART_HEIGHT)
    ax = fig.add_subplot()
    ax.plot([i - 0.12 for i, _ in golden], [v or low for _, v in golden], marker="o",
            linestyle="-", linewidth=1, color=GOLDEN_SERIES, label="golden vs float64")
    ax.plot([i + 0.12 for i, _, _ in current], [v or low for _, v, _ in current],
            linestyle="-", linewidth=1, color=REFERENCE, label="current vs float64")
    for i, v, status in current:
        ax.plot([i + 0.12], [v or low], marker="X", markersize=7, linestyle="none",
                color=STATUS[status].fill, markeredgecolor=REFERENCE, markeredgewidth=0.5)
    ax.axhline(FP32_UNIT_ROUNDOFF, color=REFERENCE, linestyle="--", linewidth=1,
               label="fp32 unit roundoff 2⁻²⁴")
    ax.axhline(EQUIVALENT_SLACK, color="#999999", linestyle=":", linewidth=1,
               label=f"equivalent slack ({EQUIVALENT_SLACK_ULPS:g} roundoffs)")
    ax.set_yscale("log")
    ax.set_ylim(low / 2, max([*positive, EQUIVALENT_SLACK]) * 4)
    if any(v == 0 for _, v in golden) or any(v == 0 for _, v, _ in current):
        ax.axhline(low, color="#dddddd", linewidth=6, zorder=0)
        ax.text(-0.5, low, "exact (0) ", fontsize=7, ha="right", va="center", parse_math=False)
    _log_axis(fig, ax, names, "relative RMS error vs float64")
    ax.grid(axis="y", which="major", color="#eeeeee")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *_status_keys(s for _, _, s in current)], fontsize=7,
              loc="upper left", framealpha=0.8, ncol=2)
    return svg_text(fig, salt)


def _log_axis(fig: Any, ax: Any, names: Sequence[str], ylabel: str) -> None:
    """Labels and margins of a log-scale chart over named arrays. Plain "1e-07" tick labels: the
    default ones are mathtext, which costs a third of the page's render time."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    labels = [n if len(n) <= LABEL_CHARS else n[: LABEL_CHARS - 1] + "…" for n in names]
    ax.set_xticks(range(len(names)), labels=labels, rotation=45, ha="right", fontsize=8,
                  parse_math=False)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    # No minor ticks: eight unlabelled marks per decade say nothing the decades do not, and
    # drawing them costs a fifth of the page's render time.
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    # Room for the rotated labels (about 0.045 inch of height per character at 8 points).
    bottom = 0.3 + 0.045 * max((len(label) for label in labels), default=0)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + bottom)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width,
                        bottom=bottom / (height + bottom), top=1 - 0.15 / (height + bottom))


# One colour per execution mode on the growth chart (Okabe-Ito, apart from the statuses' own
# colours where it can be: a mode is not a status). The legend names each line.
MODE_COLOURS = {"eager": BLUE, "graph": ORANGE, "xla": REDDISH_PURPLE}
OTHER_MODE_COLOUR = BLACK


def growth_chart(modes: Sequence[Any], salt: str) -> str:
    """How the relative weight difference grows, step by step, one line per mode that moved
    (``TrainingMode.growth``), on a log axis; the size it is projected to (the growth target) as
    a dashed line, and the projection from the last step to that size as a dotted line. A step
    whose weights are bit-identical has no place on a log axis and is left out of its line."""
    drawn = [m for m in modes if m.growth is not None and m.growth.last > 0]
    target = drawn[0].growth.target
    last = max(m.growth.steps[-1] for m in drawn)
    fig = figure(7.0, CHART_HEIGHT)
    ax = fig.add_subplot()
    values = [target]
    for m in drawn:
        g = m.growth
        colour = MODE_COLOURS.get(m.mode, OTHER_MODE_COLOUR)
        points = [(s, r) for s, r in zip(g.steps, g.relative) if r > 0 and math.isfinite(r)]
        values += [r for _, r in points]
        ax.plot([s for s, _ in points], [r for _, r in points], marker="o", markersize=3,
                linewidth=1.2, color=colour, label=f"{m.mode}", gid=f"{salt}-growth-{m.mode}")
        if g.reaches_target_at is not None and not g.measured:
            ax.plot([g.steps[-1], g.reaches_target_at], [g.last, target], linestyle=":",
                    linewidth=1.2, color=colour, label=f"{m.mode}: projected",
                    gid=f"{salt}-projection-{m.mode}")
            last = max(last, g.reaches_target_at)
    ax.axhline(target, color=REFERENCE, linestyle="--", linewidth=1,
               label=f"target {target:.0e}", gid=f"{salt}-target")
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 3, max(values) * 3)
    ax.set_xlim(0.5, last + 0.5)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("relative weight difference", fontsize=8)
    _plain_ticks(ax)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", which="major", color="#eeeeee")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.16, top=0.96)
    return svg_text(fig, salt)


def _plain_ticks(ax: Any) -> None:
    """Plain "1e-07" labels and no minor ticks on a log y axis (mathtext labels and unlabelled
    minor marks cost most of a chart's drawing time; ``_log_axis``)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax.yaxis.set_minor_locator(NullLocator())
