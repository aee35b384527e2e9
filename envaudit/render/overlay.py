"""The HTML report's detection overlay: the scene images with the changed detections drawn over
them, as SVG text to inline in the page.

Constraints the next editor must keep:
- matplotlib is imported only inside the functions here, and this module is imported only inside
  ``check_html.render``: every other command stays free of its import cost. The figure and its
  SVG text come from ``charts`` (one canvas, one deterministic SVG writer for every picture).
- Every string from a result is a stranger's: it goes into matplotlib with ``parse_math=False``.
- Nothing here decides anything: which detections are drawn, their kind and fragility come with
  the data.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from envaudit.compare.types import DetectionChange
from envaudit.render.charts import figure, svg_text
from envaudit.render.formatting import class_label

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
