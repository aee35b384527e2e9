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
- Nothing here decides anything: statuses, fragility and the noise floor come with the data.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

from envaudit.compare.types import (
    EQUIVALENT_SLACK_ULPS,
    FP32_UNIT_ROUNDOFF,
    TensorComparison,
)

EQUIVALENT_SLACK = EQUIVALENT_SLACK_ULPS * FP32_UNIT_ROUNDOFF  # the slack "equivalent" allows
# An exact error (0) has no place on a log axis: it is drawn at this fraction of the smallest
# value shown, on a labelled "exact" row at the bottom of the chart.
EXACT_BELOW = 0.1
GOLDEN_COLOR = "#1f77b4"
CURRENT_COLOR = "#d62728"
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


def error_chart(stages: Sequence[TensorComparison], salt: str) -> str:
    """Each stage's relative RMS error against the float64 twin, golden and current, on a log
    axis, over the fp32 unit roundoff and the slack "equivalent" allows."""
    names = [s.name for s in stages]
    series = {"golden": [s.golden_error for s in stages],
              "current": [s.current_error for s in stages]}
    positive = [v for vs in series.values() for v in vs if v is not None and v > 0]
    low = min([*positive, FP32_UNIT_ROUNDOFF]) * EXACT_BELOW
    fig = figure(max(6.0, 0.55 * len(stages) + 1.5), CHART_HEIGHT)
    ax = fig.add_subplot()
    x = list(range(len(stages)))
    for label, color, marker, offset in (("golden", GOLDEN_COLOR, "o", -0.12),
                                         ("current", CURRENT_COLOR, "x", 0.12)):
        xs = [i + offset for i, v in zip(x, series[label]) if v is not None]
        ys = [low if v == 0 else v for v in series[label] if v is not None]
        ax.plot(xs, ys, marker=marker, linestyle="-", linewidth=1, color=color,
                label=f"{label} vs float64")
    ax.axhline(FP32_UNIT_ROUNDOFF, color="#555555", linestyle="--", linewidth=1,
               label="fp32 unit roundoff 2⁻²⁴")
    ax.axhline(EQUIVALENT_SLACK, color="#999999", linestyle=":", linewidth=1,
               label=f"equivalent slack ({EQUIVALENT_SLACK_ULPS:g} roundoffs)")
    ax.set_yscale("log")
    ax.set_ylim(low / 2, max([*positive, EQUIVALENT_SLACK]) * 4)
    if any(v == 0 for vs in series.values() for v in vs):
        ax.axhline(low, color="#dddddd", linewidth=6, zorder=0)
        ax.text(-0.5, low, "exact (0) ", fontsize=7, ha="right", va="center", parse_math=False)
    _log_axis(fig, ax, names, "relative RMS error vs float64")
    ax.grid(axis="y", which="major", color="#eeeeee")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    return svg_text(fig, salt)


def max_rel_chart(arrays: Sequence[TensorComparison], salt: str) -> str:
    """A user model's arrays (no float64 twin): each one's max_rel against the golden, log axis,
    over the fp32 unit roundoff; an identical array sits on the "identical" row."""
    positive = [a.max_rel for a in arrays if a.max_rel > 0 and math.isfinite(a.max_rel)]
    low = min([*positive, FP32_UNIT_ROUNDOFF]) * EXACT_BELOW
    fig = figure(max(6.0, 0.45 * len(arrays) + 1.5), CHART_HEIGHT)
    ax = fig.add_subplot()
    x = list(range(len(arrays)))
    ys = [a.max_rel if a.max_rel > 0 and math.isfinite(a.max_rel) else low for a in arrays]
    ax.bar(x, [y - low / 2 for y in ys], bottom=low / 2, color=CURRENT_COLOR, width=0.6,
           label="max rel, current vs golden")
    ax.axhline(FP32_UNIT_ROUNDOFF, color="#555555", linestyle="--", linewidth=1,
               label="fp32 unit roundoff 2⁻²⁴")
    ax.set_yscale("log")
    ax.set_ylim(low / 2, max([*positive, FP32_UNIT_ROUNDOFF]) * 4)
    _log_axis(fig, ax, [a.name for a in arrays], "max relative difference")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    return svg_text(fig, salt)


def _log_axis(fig: Any, ax: Any, names: Sequence[str], ylabel: str) -> None:
    """Labels and margins of a log-scale chart over named arrays. Plain "1e-07" tick labels: the
    default ones are mathtext, which costs a third of the page's render time."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    labels = [n if len(n) <= LABEL_CHARS else n[: LABEL_CHARS - 1] + "…" for n in names]
    ax.set_xticks(range(len(names)), labels=labels, rotation=45, ha="right", fontsize=8,
                  parse_math=False)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    # Room for the rotated labels (about 0.045 inch of height per character at 8 points).
    bottom = 0.3 + 0.045 * max((len(label) for label in labels), default=0)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + bottom)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width,
                        bottom=bottom / (height + bottom), top=1 - 0.15 / (height + bottom))
