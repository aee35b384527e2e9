"""The HTML report's detection overlay: the scene images with the detections worth seeing drawn
over them, as SVG text to inline in the page, and the sentences that say what it shows.

Constraints the next editor must keep:
- matplotlib is imported only inside the drawing functions here, and this module is imported only
  inside ``check_html.render``: every other command stays free of its import cost. The figure and
  its SVG text come from ``charts`` (one canvas, one deterministic SVG writer for every picture).
- Every string from a result is a stranger's: it goes into matplotlib with ``parse_math=False``.
- Nothing here decides anything: which detections are drawn is ``DetectionDiff.drawn_at``'s
  rule, given the size ``panel_pixels`` says one image is drawn at; kinds, fragility, the mode
  and the ground truth the golden misses come with the data.
- ``panel_pixels`` must describe the grid ``detection_grid`` lays out: both read ``_layout``. The
  page shows the SVG at its own size (72 pt per inch, so 96 CSS pixels per inch).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envaudit.compare.types import (
    VISIBLE_MOVE_PX,
    DetectionChange,
    DrawnDetections,
    MissedObject,
)
from envaudit.render.charts import figure, svg_text
from envaudit.render.formatting import class_label, number

# How each detection change is drawn: (edge colour, line style) for its golden and current box.
DETECTION_STYLE: dict[str, dict[str, Any]] = {
    "golden": {"edgecolor": "#00c853", "linestyle": "--", "linewidth": 1.4},
    "moved": {"edgecolor": "#ff6d00", "linestyle": "-", "linewidth": 1.6},
    "added": {"edgecolor": "#d50000", "linestyle": "-", "linewidth": 2.0},
    "removed": {"edgecolor": "#aa00ff", "linestyle": ":", "linewidth": 2.0},
    "class_changed": {"edgecolor": "#ffd600", "linestyle": "-", "linewidth": 2.0},
}

LEGEND = (("golden", "golden box"), ("moved", "current box (matched, moved)"),
          ("added", "added (current only)"), ("removed", "removed (golden only)"),
          ("class_changed", "class changed (current)"))
FRAGILE_COLOR = "#00b8d4"  # the near-tie call-out
# A ground-truth object the golden never detected: thin and dotted, white to read on any scene.
MISSED_STYLE: dict[str, Any] = {"edgecolor": "#ffffff", "linestyle": (0, (1, 2)),
                                "linewidth": 1.2}
KIND_WORDS = {"matched": "moved", "added": "added", "removed": "removed",
              "class_changed": "class changed"}
PANEL_INCHES = 3.0  # each image's cell in the grid
LEGEND_INCHES = 0.6  # the legend's band under the grid
TITLE_INCHES = 0.25  # room above the first row for its titles
CSS_PX_PER_INCH = 96.0


@dataclass(frozen=True)
class _Layout:
    columns: int
    rows: int
    left: float = 0.02  # figure fractions, as ``Figure.subplots_adjust`` takes them
    right: float = 0.98
    wspace: float = 0.08  # fractions of a cell
    hspace: float = 0.12

    @property
    def width(self) -> float:
        return PANEL_INCHES * self.columns

    @property
    def height(self) -> float:
        return PANEL_INCHES * self.rows + LEGEND_INCHES

    def adjust(self) -> dict[str, float]:
        return {"left": self.left, "right": self.right, "top": 1 - TITLE_INCHES / self.height,
                "bottom": LEGEND_INCHES / self.height, "wspace": self.wspace,
                "hspace": self.hspace}


def _layout(count: int) -> _Layout:
    columns = min(3, max(count, 1))
    return _Layout(columns, max(1, math.ceil(count / columns)))


def panel_pixels(count: int) -> float:
    """The side, in CSS pixels, of the square each of ``count`` images is drawn in (an image
    keeps its aspect inside its cell, and the scenes and a model's frame are square)."""
    lay = _layout(count)
    cell_w = lay.width * (lay.right - lay.left) / (lay.columns + lay.wspace * (lay.columns - 1))
    cell_h = (lay.height - TITLE_INCHES - LEGEND_INCHES) / (lay.rows + lay.hspace * (lay.rows - 1))
    return min(cell_w, cell_h) * CSS_PX_PER_INCH


def summary(drawn: DrawnDetections, unchanged: int, places: Sequence[str],
            names: Sequence[str]) -> list[str]:
    """What the overlay shows, in sentences: the mode its boxes are of, what is drawn and what is
    left out (with the largest move left out), and the ground truth the golden misses."""
    mode = f" of {drawn.mode} mode" if drawn.mode else ""
    lines = [f"Detections{mode}, each image drawn at {drawn.width:.0f} px."]
    if drawn.changes:
        lines[0] += (f" Drawn: {_count(len(drawn.changes), 'changed detection')}"
                     f" ({_count(drawn.boxes, 'box', 'boxes')}).")
    if drawn.hidden and not drawn.changes:
        lines[0] += (f" No detection moved visibly (largest move"
                     f" {number(drawn.largest_move_px)} px at this size): none is drawn.")
    elif drawn.hidden:
        lines[0] += (f" Not drawn: {drawn.hidden} more that moved less (the largest of all"
                     f" moves is {number(drawn.largest_move_px)} px at this size).")
    elif not drawn.changes:
        lines[0] += " No detection changed: none is drawn."
    lines.append("A change is drawn when it can be seen: a box added, removed or changing class,"
                 " a score crossing the threshold, or an edge moving at least"
                 f" {VISIBLE_MOVE_PX:g} px.")
    if unchanged:
        lines.append(f"{_count(unchanged, 'matched detection')} did not move at all.")
    lines += [_missed_sentence(m, places, names) for m in drawn.missed or ()]
    return lines


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _missed_sentence(missed: MissedObject, places: Sequence[str], names: Sequence[str]) -> str:
    ymin, xmin, ymax, xmax = missed.box
    where = (f"a {class_label(missed.object_class, names)} at x {xmin:.2f}-{xmax:.2f},"
             f" y {ymin:.2f}-{ymax:.2f} in {places[missed.image]}")
    if missed.found_now:
        return (f"Ground truth: {where} has no detection in the golden; this run has one (the"
                " environment changed what the detector finds).")
    return (f"Ground truth: {where} has no detection in this run and none in the golden either: the"
            " detector misses it, not the environment.")


def decoded(encoded: bytes) -> Any:
    """An encoded PNG or JPEG as an RGB array (Pillow comes with matplotlib)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB"))


def detection_grid(images: Sequence[Any] | None, count: int, drawn: DrawnDetections,
                   names: Sequence[str], titles: Sequence[str], salt: str) -> str:
    """Every image with the drawn changes over it (golden boxes dashed, current boxes by what
    became of them, near-ties called out, each labelled with what happened and the mode) and the
    ground truth the golden misses dotted. ``images`` are RGB arrays in batch order, or None (a
    user's model: the boxes go on an empty square frame of the image's normalized extent)."""
    from matplotlib.patches import Rectangle

    lay = _layout(count)
    fig = figure(lay.width, lay.height)
    for index in range(count):
        ax = fig.add_subplot(lay.rows, lay.columns, index + 1)
        height, width = (1.0, 1.0)
        if images is not None:
            height, width = images[index].shape[:2]
            # Pixel edges at 0..width, so a normalized box maps to it by scaling alone.
            ax.imshow(images[index], interpolation="nearest", extent=(0, width, height, 0))
        else:
            ax.set_facecolor("#f4f4f4")
            ax.set_xlim(0, 1)
            ax.set_ylim(1, 0)
            ax.set_aspect("equal")  # square, as ``panel_pixels`` measures it
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[index], fontsize=8, parse_math=False)
        for change in (c for c in drawn.changes if c.image == index):
            _draw_change(ax, change, width, height, names, drawn.mode, Rectangle)
        for missed in (m for m in drawn.missed or () if m.image == index):
            corner = _box(ax, missed.box, width, height, MISSED_STYLE, Rectangle)
            _label(ax, corner, (width, height),
                   f"ground truth: {class_label(missed.object_class, names)}")
    fig.legend(handles=_legend(bool(drawn.missed)), loc="lower center", ncol=3, fontsize=7,
               frameon=False)
    fig.subplots_adjust(**lay.adjust())
    return svg_text(fig, salt)


def _legend(missed: bool) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=DETECTION_STYLE[k]["edgecolor"],
                      linestyle=DETECTION_STYLE[k]["linestyle"], linewidth=2, label=label)
               for k, label in LEGEND]
    handles.append(Line2D([], [], color=FRAGILE_COLOR, marker="*", linestyle="none",
                          markersize=9, label="near-tie (expected fragility)"))
    if missed:
        handles.append(Line2D([], [], color="#444444", linestyle=MISSED_STYLE["linestyle"],
                              linewidth=2, label="ground truth the golden misses"))
    return handles


def _draw_change(ax: Any, change: DetectionChange, width: float, height: float,
                 names: Sequence[str], mode: str | None, rectangle: Any) -> None:
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
    corner = drawn[-1]
    label = class_label(change.current_class if change.current_class is not None
                        else change.golden_class, names)
    if change.kind == "class_changed":
        label = (f"{class_label(change.golden_class, names)}→"
                 f"{class_label(change.current_class, names)}")
    # The kind in words (a colour never stands alone) and the mode the boxes come from.
    _label(ax, corner, (width, height),
           f"{KIND_WORDS[change.kind]} {label}" + (f" ({mode})" if mode else ""))
    if change.expected_fragility:
        ax.plot([corner[0]], [corner[1]], marker="*", color=FRAGILE_COLOR, markersize=11,
                markeredgecolor="black", markeredgewidth=0.5)


def _label(ax: Any, corner: tuple[float, float, float], size: tuple[float, float],
           text: str) -> None:
    """A label on a box's top edge, from its left corner, or from its right one for a box in the
    image's right half, and inside the box for one at the image's top (so that the label stays
    inside the image, which clips it)."""
    left, top, right = corner
    on_right = left > size[0] / 2
    ax.text(right if on_right else left, top, text, fontsize=6, color="white",
            va="bottom" if top > 0.08 * size[1] else "top", ha="right" if on_right else "left",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
            parse_math=False, clip_on=True)


def _box(ax: Any, box: tuple[float, float, float, float], width: float, height: float,
         style: dict[str, Any], rectangle: Any) -> tuple[float, float, float]:
    """Draw a normalized (ymin, xmin, ymax, xmax) box; its left, top and right edges in axes
    data units."""
    from matplotlib import patheffects

    ymin, xmin, ymax, xmax = box
    left, top = xmin * width, ymin * height
    # A dark halo under the line: a box on a shape's edge in the shape's own colour stays seen.
    halo = [patheffects.Stroke(linewidth=style["linewidth"] + 1.6, foreground="black"),
            patheffects.Normal()]
    ax.add_patch(rectangle((left, top), (xmax - xmin) * width, (ymax - ymin) * height,
                           fill=False, path_effects=halo, **style))
    return left, top, xmax * width
