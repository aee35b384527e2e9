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
    DetectionChange,
    TensorComparison,
)
from envaudit.render.formatting import class_label

EQUIVALENT_SLACK = EQUIVALENT_SLACK_ULPS * FP32_UNIT_ROUNDOFF  # the slack "equivalent" allows
# An exact error (0) has no place on a log axis: it is drawn at this fraction of the smallest
# value shown, on a labelled "exact" row at the bottom of the chart.
EXACT_BELOW = 0.1
GOLDEN_COLOR = "#1f77b4"
CURRENT_COLOR = "#d62728"
# How each detection change is drawn: (edge colour, line style) for its golden and current box.
DETECTION_STYLE: dict[str, dict[str, Any]] = {
    "golden": {"edgecolor": "#00c853", "linestyle": "--", "linewidth": 1.4},
    "moved": {"edgecolor": "#ff6d00", "linestyle": "-", "linewidth": 1.6},
    "added": {"edgecolor": "#d50000", "linestyle": "-", "linewidth": 2.0},
    "removed": {"edgecolor": "#aa00ff", "linestyle": ":", "linewidth": 2.0},
    "class_changed": {"edgecolor": "#ffd600", "linestyle": "-", "linewidth": 2.0},
}
LABEL_CHARS = 24  # an axis label longer than this is cut (the table beside the chart has it whole)
CHART_HEIGHT = 3.2  # inches, before the room the rotated labels need
LEGEND = (("golden", "golden box"), ("moved", "current box (matched, moved)"),
          ("added", "added (current only)"), ("removed", "removed (golden only)"),
          ("class_changed", "class changed (current)"))
FRAGILE_COLOR = "#00b8d4"  # the near-tie call-out


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


def decoded(encoded: bytes) -> Any:
    """An encoded PNG or JPEG as an RGB array (Pillow comes with matplotlib)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB"))


def detection_grid(images: Sequence[Any] | None, count: int,
                   changes: Sequence[DetectionChange], names: Sequence[str],
                   titles: Sequence[str], salt: str) -> str:
    """Every image with its changed detections drawn over it: golden boxes dashed, current boxes
    by what became of them, near-ties called out. ``images`` are RGB arrays in batch order, or
    None (a user's model: the boxes go on an empty frame of the image's normalized extent)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    columns = min(3, max(count, 1))
    rows = max(1, math.ceil(count / columns))
    fig = figure(3.0 * columns, 3.0 * rows + 0.6)
    for index in range(count):
        ax = fig.add_subplot(rows, columns, index + 1)
        height, width = (1.0, 1.0)
        if images is not None:
            height, width = images[index].shape[:2]
            # Pixel edges at 0..width, so a normalized box maps to it by scaling alone.
            ax.imshow(images[index], interpolation="nearest", extent=(0, width, height, 0))
        else:
            ax.set_facecolor("#f4f4f4")
            ax.set_xlim(0, 1)
            ax.set_ylim(1, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[index], fontsize=8, parse_math=False)
        for change in (c for c in changes if c.image == index):
            _draw_change(ax, change, width, height, names, Rectangle)
    handles = [Line2D([], [], color=DETECTION_STYLE[k]["edgecolor"],
                      linestyle=DETECTION_STYLE[k]["linestyle"], linewidth=2, label=label)
               for k, label in LEGEND]
    handles.append(Line2D([], [], color=FRAGILE_COLOR, marker="*", linestyle="none",
                          markersize=9, label="near-tie (expected fragility)"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    total = 3.0 * rows + 0.6  # inches: three per row of images, and the legend's band
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.25 / total, bottom=0.6 / total,
                        wspace=0.08, hspace=0.12)
    return svg_text(fig, salt)


def _draw_change(ax: Any, change: DetectionChange, width: float, height: float,
                 names: Sequence[str], rectangle: Any) -> None:
    current_style = {"matched": "moved"}.get(change.kind, change.kind)
    drawn = []
    if change.golden_box is not None:
        style = DETECTION_STYLE["removed" if change.kind == "removed" else "golden"]
        drawn.append(_box(ax, change.golden_box, width, height, style, rectangle))
    if change.current_box is not None:
        drawn.append(_box(ax, change.current_box, width, height, DETECTION_STYLE[current_style],
                          rectangle))
    if not drawn:
        return
    left, top = drawn[-1]
    label = class_label(change.current_class if change.current_class is not None
                        else change.golden_class, names)
    if change.kind == "class_changed":
        label = (f"{class_label(change.golden_class, names)}→"
                 f"{class_label(change.current_class, names)}")
    ax.text(left, top, label, fontsize=6, color="white", va="bottom", ha="left",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
            parse_math=False, clip_on=True)
    if change.expected_fragility:
        ax.plot([left], [top], marker="*", color=FRAGILE_COLOR, markersize=11,
                markeredgecolor="black", markeredgewidth=0.5)


def _box(ax: Any, box: tuple[float, float, float, float], width: float, height: float,
         style: dict[str, Any], rectangle: Any) -> tuple[float, float]:
    """Draw a normalized (ymin, xmin, ymax, xmax) box; its top-left corner in axes data units."""
    ymin, xmin, ymax, xmax = box
    left, top = xmin * width, ymin * height
    ax.add_patch(rectangle((left, top), (xmax - xmin) * width, (ymax - ymin) * height,
                           fill=False, **style))
    return left, top
