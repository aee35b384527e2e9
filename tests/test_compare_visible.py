"""``DetectionChange.visible_at`` and ``DetectionDiff.drawn_at``: which changed detections a
picture draws at the size it draws an image, below, at and above each line with the numbers
written out; and which of the canary scenes' own objects the golden never found
(``compare.ground_truth``, on the shipped assets' ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.compare.detections import match_detections
from envaudit.compare.ground_truth import missed_objects
from envaudit.compare.types import VISIBLE_MOVE_PX, DetectionChange
from envaudit.workload.assets import ground_truth, load_assets
from envaudit.workload.types import SCORE_THRESHOLD, Detections

BOX = (0.25, 0.25, 0.75, 0.75)


def matched(dx: float = 0.0, golden_score: float = 0.9, current_score: float = 0.9,
            image: int = 0) -> DetectionChange:
    moved = (BOX[0], BOX[1] + dx, BOX[2], BOX[3] + dx)
    return DetectionChange("matched", image, 1, 1, golden_score, current_score, BOX, moved,
                           0.9, None, False)


def test_a_move_is_measured_in_drawn_pixels_along_its_own_axis():
    change = DetectionChange("matched", 0, 1, 1, 0.9, 0.9, BOX, (0.25 + 0.01, 0.25 + 0.002,
                                                                 0.75, 0.75), 0.9, None, False)
    assert change.move_px(width=100, height=100) == pytest.approx(1.0)  # ymin: 0.01 of 100
    assert change.move_px(width=1000, height=10) == pytest.approx(2.0)  # xmin: 0.002 of 1000
    removed = DetectionChange("removed", 0, 1, None, 0.9, None, BOX, None, None, None, False)
    assert removed.move_px(100, 100) == 0.0


@pytest.mark.parametrize(("dx", "drawn"), [(0.0049, False), (0.005, True), (0.0051, True)])
def test_a_matched_box_is_drawn_from_half_a_drawn_pixel(dx: float, drawn: bool):
    # 0.005 of a 100-pixel image is half a pixel: the line itself.
    assert VISIBLE_MOVE_PX == 0.5
    assert matched(dx).visible_at(100, 100) is drawn
    assert matched(dx).visible_at(1000, 1000)  # ten times larger: 4.9 px and more, all seen


def test_the_xla_size_move_is_not_drawn():
    # 6e-8 of the normalized extent, as XLA's fast math moved the canary's boxes: at 260 px per
    # image that is 1.6e-05 px, far below anything a screen can show.
    change = matched(5.960464477539063e-08)
    assert not change.visible_at(260, 260)
    assert change.move_px(260, 260) == pytest.approx(1.5497e-05, rel=1e-4)


def test_added_removed_and_class_changes_are_always_drawn():
    added = DetectionChange("added", 0, None, 1, None, 0.6, None, BOX, None, None, False)
    removed = DetectionChange("removed", 0, 1, None, 0.6, None, BOX, None, None, None, False)
    flipped = DetectionChange("class_changed", 0, 1, 2, 0.6, 0.6, BOX, BOX, 1.0, None, False)
    assert all(c.visible_at(1, 1) for c in (added, removed, flipped))


@pytest.mark.parametrize(("golden", "current", "flips"), [
    (0.5001, 0.5, True),  # kept (strictly above) -> dropped (equal is not above)
    (0.5, 0.5001, True),
    (0.5002, 0.5001, False),  # both kept: the score moved, not the decision
    (0.5, 0.4, False),  # both dropped
])
def test_a_score_that_crosses_the_threshold_is_drawn(golden: float, current: float,
                                                     flips: bool):
    change = matched(0.0, golden, current)
    assert change.crosses(SCORE_THRESHOLD) is flips
    assert change.visible_at(100, 100, SCORE_THRESHOLD) is flips  # the box itself did not move
    assert not change.crosses(None)  # an unknown threshold is never crossed


def test_drawn_at_counts_boxes_and_keeps_the_largest_move_left_out():
    golden = Detections(image=np.array([0, 0, 1]), classes=np.array([1, 1, 2]),
                        scores=np.array([0.9, 0.8, 0.7], np.float32),
                        boxes=np.array([BOX, (0.0, 0.0, 0.2, 0.2), BOX], np.float32))
    current = Detections(image=np.array([0, 0]), classes=np.array([1, 1]),
                         scores=np.array([0.9, 0.8], np.float32),
                         boxes=np.array([(0.25, 0.26, 0.75, 0.76),  # 0.01: 1 px at 100
                                         (0.0, 0.0, 0.2, 0.2 + 2e-4)],  # 0.02 px at 100
                                        np.float32))
    diff = match_detections(golden, current, mode="graph", score_threshold=SCORE_THRESHOLD)
    assert (diff.mode, diff.score_threshold, diff.missed) == ("graph", SCORE_THRESHOLD, None)
    small = diff.drawn_at(100, 100)
    assert [c.kind for c in small.changes] == ["removed", "matched"]
    assert (small.boxes, small.hidden, small.mode) == (3, 1, "graph")  # 1 + golden and current
    assert small.largest_move_px == pytest.approx(1.0, rel=1e-4)
    tiny = diff.drawn_at(10, 10)  # the 1-pixel move is a tenth of a pixel here
    assert (tiny.boxes, tiny.hidden) == (1, 2)
    assert tiny.largest_move_px == pytest.approx(0.1, rel=1e-4)


def test_ground_truth_the_golden_misses_is_listed_with_whether_this_run_finds_it():
    """The shipped scenes' own objects: a golden that finds all but two of them misses those
    two; the current run finds one of them back."""
    assets = load_assets()
    boxes, classes = ground_truth(assets)
    rows = [(i, b, c) for i, (bs, cs) in enumerate(zip(boxes, classes)) for b, c in zip(bs, cs)]
    assert len(rows) == 24  # four objects in each of the six images

    def detections(kept: list[tuple[int, np.ndarray, int]]) -> Detections:
        return Detections(image=np.array([r[0] for r in kept]),
                          boxes=np.array([r[1] for r in kept], np.float32).reshape(-1, 4),
                          classes=np.array([r[2] for r in kept]),
                          scores=np.full(len(kept), 0.9, np.float32))

    golden = detections(rows[:5] + rows[7:])  # image 1 loses its second and third object
    current = detections(rows[:6] + rows[7:])  # and this run finds the second one again
    missed = missed_objects(boxes, classes, golden, current)
    assert [(m.image, m.object_class, m.found_now) for m in missed] == [
        (1, int(classes[1][1]), True), (1, int(classes[1][2]), False)]
    assert missed[0].box == pytest.approx(tuple(boxes[1][1]))
    assert missed_objects(boxes, classes, current, current)[0].found_now is False
    assert missed_objects(boxes, classes, detections(rows), golden) == ()
