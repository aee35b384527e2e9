"""``render.overlay``: the size it says an image is drawn at is the size matplotlib lays it out
at, and its sentences say what the picture leaves out with the real numbers."""

from __future__ import annotations

import pytest

from envaudit.compare.types import DetectionChange, DetectionDiff, MissedObject
from envaudit.render import overlay

BOX = (0.2, 0.2, 0.6, 0.6)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 7])
def test_panel_pixels_is_the_laid_out_size(count: int):
    """Lay out the grid as ``detection_grid`` does and measure an image's axes after the aspect
    is applied: figure pixels at the figure's dpi, in CSS pixels (96 per inch)."""
    import numpy as np

    lay = overlay._layout(count)
    fig = overlay.figure(lay.width, lay.height)
    ax = fig.add_subplot(lay.rows, lay.columns, 1)
    ax.imshow(np.zeros((100, 100, 3), np.uint8), extent=(0, 100, 100, 0))
    fig.subplots_adjust(**lay.adjust())
    ax.apply_aspect()
    box = ax.get_position()  # figure fractions
    width, height = box.width * lay.width * 96, box.height * lay.height * 96
    assert width == pytest.approx(height, abs=0.01)  # square scenes stay square
    assert overlay.panel_pixels(count) == pytest.approx(width, abs=0.01)


def _diff(*changes: DetectionChange, matched: int = 3,
          missed: tuple[MissedObject, ...] | None = None) -> DetectionDiff:
    return DetectionDiff(golden=3, current=3, matched=matched, added=0, removed=0,
                         class_changed=0, max_score_delta=0.0, min_iou=1.0, max_box_delta=0.0,
                         changes=changes, noise=0.0, mode="xla", score_threshold=0.5,
                         missed=missed)


def test_the_summary_says_no_detection_moved_visibly_with_the_largest_move():
    tiny = DetectionChange("matched", 0, 1, 1, 0.9, 0.9, BOX,
                           (0.2, 0.2 + 6e-8, 0.6, 0.6 + 6e-8), 1.0, None, False)
    drawn = _diff(tiny).drawn_at(260, 260)
    lines = overlay.summary(drawn, 2, ["image 0 (scene0.png)"], ("a", "b"))
    assert lines[0] == ("Detections of xla mode, each image drawn at 260 px. No detection moved"
                        " visibly (largest move 1.56e-05 px at this size): none is drawn.")
    assert "2 matched detections did not move at all." in lines


def test_the_summary_counts_what_is_drawn_and_explains_missed_ground_truth():
    removed = DetectionChange("removed", 1, 0, None, 0.7, None, BOX, None, None, None, False)
    tiny = DetectionChange("matched", 0, 1, 1, 0.9, 0.9, BOX, BOX[:3] + (0.6 + 1e-6,), 1.0,
                           None, False)
    missed = (MissedObject(1, 2, (0.1, 0.5, 0.3, 0.9), False),
              MissedObject(0, 0, (0.0, 0.0, 0.5, 0.5), True))
    drawn = _diff(removed, tiny, matched=2, missed=missed).drawn_at(260, 260)
    places = ["image 0 (scene0.png)", "image 1 (scene1.png)"]
    lines = overlay.summary(drawn, 1, places, ("rectangle", "ellipse", "triangle"))
    assert "Drawn: 1 changed detection (1 box). Not drawn: 1 more that moved less" in lines[0]
    assert ("Ground truth: a triangle at x 0.50-0.90, y 0.10-0.30 in image 1 (scene1.png) has no"
            " detection in this run and none in the golden either: the detector misses it, not"
            " the environment.") in lines
    assert any(line.startswith("Ground truth: a rectangle at x 0.00-0.50") and "this run has one"
               in line for line in lines)
    # Without ground truth (a user's model: ``missed`` None) nothing is said about it.
    plain = overlay.summary(_diff(removed).drawn_at(260, 260), 0, places, ("r", "e", "t"))
    assert not any("Ground truth" in line for line in plain)


def test_the_screenshot_tool_keeps_one_section_of_a_report():
    """``tools/screenshot_report.py --section detections``, as the docs' overlay picture is made:
    the page's head, then the detections section alone (to the next heading)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("screenshot_report", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    page = ('<html><head><style>p{}</style></head><body><h1>v</h1><h2 id="causes">Causes</h2>'
            '<p>c</p><h2 id="detections">Detections</h2><div id="overlay">o</div>'
            '<h2 id="probes">Probes</h2><p>p</p></body></html>\n')
    assert tool.prepared(page, [], None, "detections") == (
        '<html><head><style>p{}</style></head><body><h2 id="detections">Detections</h2>'
        '<div id="overlay">o</div></body></html>\n')
    last = tool.prepared(page, [], None, "probes")
    assert last.endswith('<h2 id="probes">Probes</h2><p>p</p></body></html>\n')
    with pytest.raises(SystemExit, match="no element #missing"):
        tool.prepared(page, [], None, "#missing")
