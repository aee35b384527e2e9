"""Detection matching and NMS decision margins on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest

from envaudit.compare.detections import (
    box_iou,
    decision_margins,
    decision_noise,
    match_detections,
)
from envaudit.workload.types import Candidates, Detections

P = (0.1, 0.1, 0.3, 0.3)  # a 0.2 x 0.2 box
Q = (0.6, 0.6, 0.8, 0.8)  # far from P


def dets(*rows) -> Detections:
    """rows: (image, class, score, box)."""
    if not rows:
        return Detections(np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
                          np.zeros(0, np.int32), np.zeros(0, np.float32))
    image, cls, score, boxes = zip(*rows, strict=True)
    return Detections(np.array(image, np.int32), np.array(boxes, np.float32),
                      np.array(cls, np.int32), np.array(score, np.float32))


def shift(box, iou: float, axis: str = "x"):
    """``box`` moved along one axis so that its IoU with the original is ``iou``."""
    w = box[2] - box[0]
    d = w * (1 - iou) / (1 + iou)
    if axis == "x":
        return (box[0], box[1] + d, box[2], box[3] + d)
    return (box[0] + d, box[1], box[2] + d, box[3])


def test_shift_helper_gives_the_asked_iou():
    assert box_iou(np.array([P]), np.array([shift(P, 0.505)]))[0, 0] == pytest.approx(0.505)


def test_same_detections_match_fully():
    d = dets((0, 0, 0.9, P), (0, 1, 0.7, Q))
    diff = match_detections(d, d)
    assert diff.same and diff.matched == 2 and diff.changes == ()
    assert diff.min_iou == pytest.approx(1.0) and diff.max_score_delta == 0.0


def test_shifted_box_still_matches_and_reports_its_delta():
    golden = dets((0, 0, 0.9, P))
    current = dets((0, 0, 0.88, (0.1, 0.12, 0.3, 0.32)))
    diff = match_detections(golden, current)
    assert diff.same and diff.matched == 1
    assert diff.max_box_delta == pytest.approx(0.02, abs=1e-6)
    assert diff.min_iou == pytest.approx(0.18 / 0.22, abs=1e-5)
    assert diff.max_score_delta == pytest.approx(0.02, abs=1e-6)
    (change,) = diff.changes
    assert change.kind == "matched" and not change.expected_fragility


def test_box_moved_past_the_threshold_is_removed_and_added():
    diff = match_detections(dets((0, 0, 0.9, P)), dets((0, 0, 0.9, shift(P, 0.45))))
    assert (diff.matched, diff.removed, diff.added) == (0, 1, 1)
    assert diff.min_iou is None


def test_removed():
    diff = match_detections(dets((0, 0, 0.9, P), (0, 2, 0.6, Q)), dets((0, 0, 0.9, P)))
    assert (diff.golden, diff.current, diff.matched, diff.removed, diff.added) == (2, 1, 1, 1, 0)
    (removed,) = diff.changes
    assert removed.kind == "removed" and removed.golden_class == 2
    assert removed.current_box is None and removed.golden_score == pytest.approx(0.6)
    assert not diff.same


def test_added():
    diff = match_detections(dets((0, 0, 0.9, P)), dets((0, 0, 0.9, P), (0, 1, 0.55, Q)))
    assert (diff.matched, diff.added, diff.removed) == (1, 1, 0)
    assert diff.changes[0].kind == "added" and diff.changes[0].current_class == 1


def test_class_flip_at_the_same_place():
    diff = match_detections(dets((0, 0, 0.9, P)), dets((0, 1, 0.85, P)))
    assert (diff.matched, diff.class_changed, diff.added, diff.removed) == (0, 1, 0, 0)
    (flip,) = diff.changes
    assert (flip.golden_class, flip.current_class) == (0, 1)
    assert flip.iou == pytest.approx(1.0)


def test_same_class_match_wins_over_a_class_flip():
    golden = dets((0, 0, 0.9, P))
    current = dets((0, 1, 0.95, P), (0, 0, 0.8, shift(P, 0.7)))
    diff = match_detections(golden, current)
    assert (diff.matched, diff.class_changed, diff.added) == (1, 0, 1)
    assert diff.min_iou == pytest.approx(0.7, abs=1e-5)


def test_highest_golden_score_chooses_first():
    near = shift(P, 0.95)
    golden = dets((0, 0, 0.6, near), (0, 0, 0.9, shift(P, 0.6, "y")))
    diff = match_detections(golden, dets((0, 0, 0.9, P)))
    (removed,) = [c for c in diff.changes if c.kind == "removed"]
    assert removed.golden_score == pytest.approx(0.6)  # the better-overlapping box lost


def test_equal_scores_keep_golden_array_order():
    """Ties in score are decided by the order of the golden arrays (stable sort)."""
    a = shift(P, 0.6)  # IoU 0.6 with the current box
    b = shift(P, 0.9, "y")  # IoU 0.9 with it
    diff = match_detections(dets((0, 0, 0.8, a), (0, 0, 0.8, b)), dets((0, 0, 0.8, P)))
    (removed,) = [c for c in diff.changes if c.kind == "removed"]
    assert removed.golden_box == pytest.approx(b)
    swapped = match_detections(dets((0, 0, 0.8, b), (0, 0, 0.8, a)), dets((0, 0, 0.8, P)))
    (removed,) = [c for c in swapped.changes if c.kind == "removed"]
    assert removed.golden_box == pytest.approx(a)


def test_equal_iou_takes_the_first_current_detection():
    left, right = (0.1, 0.05, 0.3, 0.25), (0.1, 0.15, 0.3, 0.35)  # mirror shifts of P
    diff = match_detections(dets((0, 0, 0.9, P)), dets((0, 0, 0.7, right), (0, 0, 0.7, left)))
    (added,) = [c for c in diff.changes if c.kind == "added"]
    assert added.current_box == pytest.approx(left)


def test_images_are_matched_separately():
    golden = dets((0, 0, 0.9, P), (1, 0, 0.8, Q))
    current = dets((1, 0, 0.9, P), (1, 0, 0.8, Q))
    diff = match_detections(golden, current)
    assert (diff.matched, diff.removed, diff.added) == (1, 1, 1)
    kinds = {(c.kind, c.image) for c in diff.changes}
    assert kinds == {("removed", 0), ("added", 1)}


def test_empty_detections():
    empty = dets()
    diff = match_detections(empty, empty)
    assert diff.same and diff.golden == 0 and diff.min_iou is None and diff.max_box_delta == 0.0
    added = match_detections(empty, dets((0, 0, 0.9, P), (3, 1, 0.6, Q)))
    assert added.added == 2 and {c.image for c in added.changes} == {0, 3}
    flat = Detections(np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                      np.zeros(0, np.float32))
    assert match_detections(flat, empty).same


# --- fragility ------------------------------------------------------------------------------


def _candidates(rows, classes: int = 3) -> Candidates:
    """rows per image: list of (box, class, score); other class scores 0.01."""
    n, a = len(rows), max(len(r) for r in rows)
    boxes = np.zeros((n, a, 4), np.float32)
    scores = np.full((n, a, classes), 0.01, np.float32)
    for i, image_rows in enumerate(rows):
        for j, (box, cls, score) in enumerate(image_rows):
            boxes[i, j] = box
            scores[i, j, cls] = score
    return Candidates(boxes, scores)


R2 = shift(P, 0.8)  # overlaps P a lot, below the score threshold
R3 = shift(P, 0.505, "y")  # suppressed by P by a hair


def _scene(q_score: float = 0.5003, r3_box=R3):
    return [[(P, 0, 0.9), (Q, 0, q_score), (R2, 0, 0.4), (r3_box, 0, 0.8)]]


def test_decision_margins_replay_nms():
    m = decision_margins(_candidates(_scene()))
    assert m.final[0, :, 0].tolist() == [True, True, False, False]
    assert not m.final[0, :, 1:].any()
    margins = m.margins[0, :, 0]
    assert margins[0] == pytest.approx(0.05, abs=1e-6)  # R3 (0.8) could overtake P (0.9)
    assert margins[1] == pytest.approx(0.0003, abs=1e-6)  # Q is just above the score threshold
    assert margins[2] == pytest.approx(0.25, abs=1e-6)  # R2 must cross 0.5 and escape P
    assert margins[3] == pytest.approx(0.005, abs=1e-5)  # R3's IoU with P is 0.505
    assert m.margins[0, 0, 1] == pytest.approx(0.49, abs=1e-6)


def test_score_near_threshold_flip_is_expected_fragility():
    golden_c = _candidates(_scene())
    current_c = _candidates(_scene(q_score=0.4998))
    noise = decision_noise(golden_c, current_c)
    assert noise == pytest.approx(0.0005, abs=1e-6)
    golden = dets((0, 0, 0.9, P), (0, 0, 0.5003, Q))
    current = dets((0, 0, 0.9, P))
    diff = match_detections(golden, current, noise=noise, golden_candidates=golden_c)
    (removed,) = diff.changes
    assert removed.kind == "removed" and removed.expected_fragility
    assert removed.margin == pytest.approx(0.0003, abs=1e-6)
    assert diff.noise == noise
    quiet = match_detections(golden, current, noise=1e-5, golden_candidates=golden_c)
    assert not quiet.changes[0].expected_fragility


def test_iou_near_threshold_flip_is_expected_fragility():
    r3_now = shift(P, 0.495, "y")
    golden_c, current_c = _candidates(_scene()), _candidates(_scene(r3_box=r3_now))
    noise = decision_noise(golden_c, current_c)
    assert noise == pytest.approx(0.01, abs=1e-5)
    golden = dets((0, 0, 0.9, P), (0, 0, 0.5003, Q))
    current = dets((0, 0, 0.9, P), (0, 0, 0.8, r3_now), (0, 0, 0.5003, Q))
    diff = match_detections(golden, current, noise=noise, golden_candidates=golden_c)
    (added,) = diff.changes
    assert added.kind == "added" and added.expected_fragility
    assert added.margin == pytest.approx(0.005, abs=1e-5)


def test_change_far_from_any_candidate_is_not_fragility():
    golden_c = _candidates(_scene())
    golden = dets((0, 0, 0.9, P), (0, 0, 0.5003, Q))
    current = dets((0, 0, 0.9, P), (0, 0, 0.5003, Q), (0, 2, 0.9, (0.4, 0.0, 0.5, 0.1)))
    diff = match_detections(golden, current, noise=0.1, golden_candidates=golden_c)
    (added,) = diff.changes
    assert added.margin is None and not added.expected_fragility


def test_equal_scores_of_overlapping_boxes_have_zero_margin():
    m = decision_margins(_candidates([[(P, 1, 0.7), (shift(P, 0.9), 1, 0.7)]]))
    assert m.final[0, :, 1].tolist() == [True, False]  # stable: the first of a tie is kept
    assert m.margins[0, 0, 1] == 0.0 and m.margins[0, 1, 1] == 0.0


def test_top_k_cut_margins():
    grid = [(0.1 * i, 0.0, 0.1 * i + 0.05, 0.05) for i in range(11)]
    scores = [0.95 - 0.03 * i for i in range(9)] + [0.6002, 0.6]
    m = decision_margins(_candidates([[(b, 0, s) for b, s in zip(grid, scores, strict=True)]]),
                         max_detections=10)
    assert m.final[0, :, 0].tolist() == [True] * 10 + [False]
    assert m.margins[0, 9, 0] == pytest.approx(0.0001, abs=1e-6)
    assert m.margins[0, 10, 0] == pytest.approx(0.0001, abs=1e-6)
    assert m.margins[0, 0, 0] == pytest.approx(0.175, abs=1e-6)


def test_multi_image_margins_come_from_their_own_image():
    golden_c = _candidates([[(Q, 1, 0.9)], _scene()[0]])
    current_c = _candidates([[(Q, 1, 0.9)], _scene(q_score=0.4998)[0]])
    golden = dets((0, 1, 0.9, Q), (1, 0, 0.9, P), (1, 0, 0.5003, Q))
    current = dets((0, 1, 0.9, Q), (1, 0, 0.9, P))
    diff = match_detections(golden, current, noise=decision_noise(golden_c, current_c),
                            golden_candidates=golden_c)
    (removed,) = diff.changes
    assert removed.image == 1 and removed.expected_fragility


def test_decision_noise_edges():
    c = _candidates(_scene())
    assert decision_noise(c, c) == 0.0
    other = _candidates([[(P, 0, 0.9)]])
    assert decision_noise(c, other) == float("inf")
    empty = Candidates(np.zeros((1, 0, 4), np.float32), np.zeros((1, 0, 3), np.float32))
    assert decision_noise(empty, empty) == 0.0
    assert not decision_margins(empty).final.any()


def test_diff_to_dict_is_plain_data():
    d = match_detections(dets((0, 0, 0.9, P)), dets((0, 1, 0.9, P))).to_dict()
    assert d["class_changed"] == 1 and d["changes"][0]["kind"] == "class_changed"


def test_a_score_equal_to_the_threshold_is_dropped_with_zero_margin():
    """As tf.image.combined_non_max_suppression does: it keeps only scores above the threshold."""
    m = decision_margins(_candidates([[(P, 0, 0.5), (Q, 0, 0.7)]]))
    assert m.final[0, :, 0].tolist() == [False, True]
    assert m.margins[0, 0, 0] == 0.0


def _random_candidates(seed: int, anchors: int = 40) -> Candidates:
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.1, 0.9, (2, 2, anchors))
    h, w = rng.uniform(0.05, 0.3, (2, 2, anchors))
    boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1).astype(np.float32)
    return Candidates(boxes, (rng.uniform(0, 1, (2, anchors, 3)) ** 2).astype(np.float32))


def _plain_nms(c: Candidates, k: int = 10) -> set[tuple[int, int, int]]:
    """The textbook algorithm, written independently: (image, anchor, class) of final detections."""
    final = set()
    for n in range(c.scores.shape[0]):
        kept = []
        for cls in range(c.scores.shape[2]):
            s = c.scores[n, :, cls]
            chosen: list[int] = []
            for a in sorted(range(len(s)), key=lambda i: -s[i]):
                if s[a] > 0.5 and all(box_iou(c.boxes[n, [a]], c.boxes[n, [b]])[0, 0] <= 0.5
                                      for b in chosen):
                    chosen.append(a)
            kept += [(float(s[a]), a, cls) for a in chosen]
        final |= {(n, a, cls) for _, a, cls in sorted(kept, key=lambda t: -t[0])[:k]}
    return final


@pytest.mark.parametrize("seed", range(4))
def test_nms_replay_agrees_with_a_plain_implementation(seed):
    c = _random_candidates(seed)
    m = decision_margins(c)
    assert {tuple(int(v) for v in idx) for idx in np.argwhere(m.final)} == _plain_nms(c)


@pytest.mark.parametrize("seed", range(4))
def test_perturbations_below_every_margin_change_no_decision(seed):
    c = _random_candidates(seed, anchors=25)
    m = decision_margins(c)
    delta = 0.9 * float(m.margins.min())
    assert delta > 0
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        moved = c.scores.astype(np.float64) + rng.uniform(-delta, delta, c.scores.shape)
        again = decision_margins(Candidates(c.boxes, moved))
        assert (again.final == m.final).all()
    # Moving the most fragile candidate past its margin, the right way, flips a decision (by twice
    # the margin: a half-gap margin needs the whole gap when only one of the two scores moves).
    n, a, cls = np.unravel_index(np.argmin(m.margins), m.margins.shape)
    step = 2.2 * float(m.margins[n, a, cls])
    flipped = [decision_margins(Candidates(c.boxes, _nudge(c.scores, (n, a, cls), sign * step)))
               for sign in (-1.0, 1.0)]
    assert any((f.final != m.final).any() for f in flipped)


def _nudge(scores: np.ndarray, index, amount: float) -> np.ndarray:
    out = scores.astype(np.float64)
    out[index] += amount
    return out


# --- exact values of matches, changes and margins -------------------------------------------

# One image, three anchors in a row (IoU 0.6 between neighbours 0.125 apart, 1/3 at 0.25 apart).
A0, A1, A2 = (0.0, 0.25, 0.5, 0.75), (0.0, 0.5, 0.5, 1.0), (0.0, 0.125, 0.5, 0.625)
MOVED = (0.0, 0.375, 0.5, 0.875)  # IoU 0.6 with A0 and A1, 1/3 with A2


def _row_scene() -> Candidates:
    """Class 0: A0 kept (0.875, margin 0.375), A1 dropped (0.25, margin 0.25); class 1 nothing
    kept: A0 0.25, A1 0.375, A2 0.4375 (margins 0.25, 0.125, 0.0625)."""
    boxes = np.array([[A0, A1, A2]], np.float32)
    scores = np.array([[[0.875, 0.25], [0.25, 0.375], [0.0, 0.4375]]], np.float32)
    return Candidates(boxes, scores)


def test_row_scene_margins():
    m = decision_margins(_row_scene())
    assert m.final[0].tolist() == [[True, False], [False, False], [False, False]]
    assert m.margins[0].tolist() == [[0.375, 0.25], [0.25, 0.125], [0.5, 0.0625]]
    assert (m.boxes.dtype, m.margins.dtype) == (np.float64, np.float64)


def test_class_change_margin_includes_a_dropped_candidate_of_the_new_class_at_the_old_place():
    diff = match_detections(dets((0, 0, 0.875, A0)), dets((0, 1, 0.4375, MOVED)), noise=0.0625,
                            golden_candidates=_row_scene())
    (change,) = diff.changes
    # min(A0 kept as class 0: 0.375; class 1 dropped near MOVED: 0.125; near A0: 0.0625)
    assert (change.kind, change.margin, change.expected_fragility) == ("class_changed", 0.0625,
                                                                       False)
    assert (change.golden_score, change.current_score, change.iou) == (0.875, 0.4375, 0.6)


def test_a_moved_match_keeps_only_the_golden_decisions_margin():
    diff = match_detections(dets((0, 0, 0.875, A0)), dets((0, 0, 0.875, MOVED)), noise=1.0,
                            golden_candidates=_row_scene())
    assert (diff.matched, diff.max_score_delta, diff.max_box_delta) == (1, 0.0, 0.125)
    (change,) = diff.changes  # the box moved, the score did not: still a change
    assert (change.kind, change.margin, change.expected_fragility) == ("matched", 0.375, False)


def test_added_detection_margin_and_scores():
    diff = match_detections(dets((0, 0, 0.875, A0)),
                            dets((0, 0, 0.875, A0), (0, 1, 0.4375, MOVED)),
                            noise=0.125, golden_candidates=_row_scene())
    (added,) = diff.changes
    assert (added.golden_score, added.current_score, added.golden_box) == (None, 0.4375, None)
    assert (added.margin, added.expected_fragility) == (0.125, False)
    assert (diff.max_score_delta, diff.max_box_delta, diff.min_iou) == (0.0, 0.0, 1.0)


def test_change_to_dict_is_plain_data():
    diff = match_detections(dets((0, 0, 0.875, A0)), dets((0, 1, 0.4375, MOVED)), noise=0.0625,
                            golden_candidates=_row_scene())
    assert diff.changes[0].to_dict() == {
        "kind": "class_changed", "image": 0, "golden_class": 0, "current_class": 1,
        "golden_score": 0.875, "current_score": 0.4375, "golden_box": [0.0, 0.25, 0.5, 0.75],
        "current_box": [0.0, 0.375, 0.5, 0.875], "iou": 0.6, "margin": 0.0625,
        "expected_fragility": False}


def test_unmatched_diff_has_zero_deltas():
    diff = match_detections(dets((0, 0, 0.875, A0)), dets((0, 0, 0.875, Q)))
    assert (diff.max_score_delta, diff.max_box_delta, diff.min_iou) == (0.0, 0.0, None)


def test_box_delta_is_measured_in_float64():
    golden = dets((0, 0, 0.9, (1e-9, 0.0, 1.0, 1.0)))
    current = dets((0, 0, 0.9, (0.25, 0.0, 1.0, 1.0)))
    assert match_detections(golden, current).max_box_delta == 0.24999999900000003


def test_box_corners_are_put_in_order():
    flipped = np.array([[0.1, 0.95, 0.5, 0.2]])  # ymin < ymax, but xmin > xmax
    assert box_iou(flipped, np.array([[0.1, 0.2, 0.5, 0.95]])).tolist() == [[1.0]]
    assert box_iou(np.array([[0.5, 0.5, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.5, 0.25]])).tolist() \
        == [[0.5]]


def test_margins_are_float64_arithmetic():
    m = decision_margins(_candidates(_scene()))
    assert m.margins[0, 0, 1] == 0.4900000002235174  # 0.5 - float32(0.01), not 0.49000000953674316


def test_nan_scores_are_never_kept():
    m = decision_margins(_candidates([[(P, 0, np.nan), (Q, 0, 0.75)]]))
    assert m.final[0, :, 0].tolist() == [False, True]
    assert m.margins[0, 0, 0] == float("inf")


@pytest.mark.parametrize(("boxes", "scores"), [
    ((1, 4, 4), (1, 4)), ((1, 4), (1, 4, 3)), ((1, 4, 4), (1, 5, 3)), ((2, 4, 4), (1, 4, 3)),
])
def test_decision_margins_rejects_malformed_candidates(boxes, scores):
    with pytest.raises(ValueError, match=r"candidates must be boxes \[N, A, 4\] and scores "
                                         r"\[N, A, C\]; got "):
        decision_margins(Candidates(np.zeros(boxes), np.zeros(scores)))


def test_equal_scores_are_matched_in_golden_array_order_at_scale():
    """Fifty golden detections in 25 pairs of equal scores (three score levels), each pair over
    one current detection: the first of each pair in the golden arrays takes it."""
    golden_rows, current_rows, losers = [], [], []
    for site in range(25):
        y, x = 0.2 * (site // 5), 0.2 * (site % 5)
        box = (y, x, y + 0.1, x + 0.1)
        near = (y, x + 0.01, y + 0.1, x + 0.11)
        score = (0.625, 0.75, 0.875)[site % 3]
        first, second = (box, near) if site % 2 else (near, box)
        golden_rows += [(0, 0, score, first), (0, 0, score, second)]
        current_rows.append((0, 0, 0.5, box))
        losers.append(second)
    diff = match_detections(dets(*golden_rows), dets(*current_rows))
    assert (diff.matched, diff.removed, diff.added) == (25, 25, 0)
    removed = sorted(c.golden_box for c in diff.changes if c.kind == "removed")
    assert removed == sorted(tuple(float(v) for v in np.float32(b)) for b in losers)


@pytest.mark.parametrize("seed", range(4))
def test_nms_replay_agrees_with_a_plain_implementation_under_ties(seed):
    """Scores on four levels: ties between overlapping boxes are decided by anchor order."""
    c = _random_candidates(seed)
    rng = np.random.default_rng(200 + seed)
    levels = np.array([0.0, 0.625, 0.75, 0.875], np.float32)
    tied = Candidates(c.boxes, levels[rng.integers(0, 4, c.scores.shape)])
    m = decision_margins(tied)
    assert {tuple(int(v) for v in idx) for idx in np.argwhere(m.final)} == _plain_nms(tied)
