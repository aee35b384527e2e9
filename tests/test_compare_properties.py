"""Rules of ``compare/`` that must hold for all inputs, checked with Hypothesis.

Boxes are drawn on a grid of 1/64 so that every coordinate, area and most IoUs are exact in
float32 and float64; the expected outcome of each example is derived independently of the code
under test (from how the scene was built), never by calling it twice the same way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_compare_detections import dets

from envaudit.compare.detections import box_iou, decision_margins, match_detections
from envaudit.compare.noise import array_status, at_noise_floor
from envaudit.compare.types import DetectionDiff, TensorComparison
from envaudit.compare.verdict import VERDICTS, classify, exit_code
from envaudit.workload.types import Candidates

GRID = 64.0
SCORES = (0.625, 0.75, 0.875)  # exact in float32: ties are real ties


def boxes():
    """(ymin, xmin, ymax, xmax) on the 1/64 grid, positive area."""
    return st.tuples(st.integers(0, 48), st.integers(0, 48), st.integers(1, 16),
                     st.integers(1, 16)).map(
        lambda t: (t[0] / GRID, t[1] / GRID, (t[0] + t[2]) / GRID, (t[1] + t[3]) / GRID))


# --- IoU ------------------------------------------------------------------------------------


@given(st.lists(boxes(), min_size=1, max_size=6), st.lists(boxes(), min_size=1, max_size=6))
def test_iou_is_symmetric_and_bounded(a, b):
    ab, ba = box_iou(np.array(a), np.array(b)), box_iou(np.array(b), np.array(a))
    assert ab.shape == (len(a), len(b))
    assert (ab == ba.T).all()
    assert ((ab >= 0.0) & (ab <= 1.0)).all()
    assert (np.diag(box_iou(np.array(a), np.array(a))) == 1.0).all()


@given(boxes(), boxes())
def test_iou_does_not_depend_on_corner_order(a, b):
    flipped = (a[2], a[3], a[0], a[1])
    assert box_iou(np.array([flipped]), np.array([b]))[0, 0] == \
        box_iou(np.array([a]), np.array([b]))[0, 0]


# --- matching -------------------------------------------------------------------------------

# A site: one cell of a 4x4 grid of 16/64-wide cells, holding a golden and/or a current box (8/64
# wide, the current one shifted right by 0..6/64), so that boxes of different sites never overlap
# and a golden box can only ever pair with the current box of its own site.
sites = st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 2), st.integers(0, 2),
                           st.integers(0, 6), st.sampled_from(SCORES), st.sampled_from(SCORES)),
                 max_size=16)


def _scene(drawn):
    golden, current, expected = [], [], {"matched": 0, "class_changed": 0, "removed": 0,
                                         "added": 0}
    for cell, (has_g, has_c, g_cls, c_cls, shift, g_score, c_score) in enumerate(drawn):
        y, x = (cell // 4) * 16 + 4, (cell % 4) * 16 + 2
        g_box = (y / GRID, x / GRID, (y + 8) / GRID, (x + 8) / GRID)
        c_box = (y / GRID, (x + shift) / GRID, (y + 8) / GRID, (x + shift + 8) / GRID)
        if has_g:
            golden.append((0, g_cls, g_score, g_box))
        if has_c:
            current.append((0, c_cls, c_score, c_box))
        overlap = (8 - shift) / (8 + shift) >= 0.5  # IoU of two 8-wide boxes shifted by `shift`
        if has_g and has_c and overlap:
            expected["matched" if g_cls == c_cls else "class_changed"] += 1
        else:
            expected["removed"] += has_g
            expected["added"] += has_c
    return dets(*golden), dets(*current), expected


def _counts(diff: DetectionDiff) -> dict[str, int]:
    return {"matched": diff.matched, "class_changed": diff.class_changed,
            "removed": diff.removed, "added": diff.added}


@given(sites)
def test_matching_is_symmetric_where_every_pairing_is_unambiguous(drawn):
    golden, current, expected = _scene(drawn)
    forward, backward = match_detections(golden, current), match_detections(current, golden)
    assert _counts(forward) == expected
    assert _counts(backward) == {**expected, "removed": expected["added"],
                                 "added": expected["removed"]}
    assert forward.min_iou == backward.min_iou
    assert forward.max_box_delta == backward.max_box_delta
    assert forward.max_score_delta == backward.max_score_delta


@given(sites)
def test_every_pair_overlaps_at_least_the_matching_iou(drawn):
    golden, current, _ = _scene(drawn)
    diff = match_detections(golden, current)
    assert diff.matched + diff.removed + diff.class_changed == diff.golden == len(golden)
    assert diff.matched + diff.added + diff.class_changed == diff.current == len(current)
    paired = [c.iou for c in diff.changes if c.kind in ("matched", "class_changed")]
    assert all(0.5 <= iou <= 1.0 for iou in paired)
    assert diff.min_iou is None or 0.5 <= diff.min_iou <= 1.0
    assert diff.same == (diff.added == diff.removed == diff.class_changed == 0)


@given(st.permutations(range(12)), st.lists(st.sampled_from(SCORES), min_size=12, max_size=12))
def test_the_same_detections_in_any_order_all_match(order, scores):
    rows = [(i % 3, i % 2, scores[i], ((i // 4) * 0.25, (i % 4) * 0.25, (i // 4) * 0.25 + 0.125,
                                      (i % 4) * 0.25 + 0.125)) for i in range(12)]
    diff = match_detections(dets(*rows), dets(*[rows[i] for i in order]))
    assert (diff.matched, diff.same, diff.changes, diff.min_iou) == (12, True, (), 1.0)


@given(st.lists(st.sampled_from(SCORES), min_size=2, max_size=40))
def test_ties_in_golden_score_go_to_the_first_in_array_order(scores):
    """Every golden box overlaps the one current box (IoU above 0.53); the highest score takes it,
    and of equal highest scores the first in the golden arrays."""
    golden = [(0, 0, s, (0.0, i / 256, 0.5, 0.5 + i / 256)) for i, s in enumerate(scores)]
    diff = match_detections(dets(*golden), dets(*[(0, 0, 0.5, (0.0, 0.0, 0.5, 0.5))]))
    winner = scores.index(max(scores))
    (matched,) = [c for c in diff.changes if c.kind == "matched"]
    assert matched.golden_box == (0.0, winner / 256, 0.5, 0.5 + winner / 256)
    assert diff.removed == len(scores) - 1


@given(st.lists(st.sampled_from(SCORES), min_size=2, max_size=40))
def test_ties_in_iou_go_to_the_first_current_detection(scores):
    current = [(0, 0, s, (0.0, 0.0, 0.5, 0.5)) for s in scores]
    diff = match_detections(dets(*[(0, 0, 0.5, (0.0, 0.0, 0.5, 0.5))]), dets(*current))
    (matched,) = [c for c in diff.changes if c.kind == "matched"]
    assert matched.current_score == scores[0]
    assert diff.added == len(scores) - 1


# --- NMS replay -----------------------------------------------------------------------------


@given(st.lists(st.tuples(boxes(), st.sampled_from((0.0, 0.5) + SCORES),
                          st.sampled_from((0.0, 0.5) + SCORES)), min_size=1, max_size=14))
def test_nms_replay_matches_the_textbook_algorithm_and_margins_are_never_negative(rows):
    box = np.array([[b for b, _, _ in rows]], np.float32)
    scores = np.array([[[s0, s1] for _, s0, s1 in rows]], np.float32)
    m = decision_margins(Candidates(box, scores), max_detections=4)
    assert (m.margins >= 0.0).all()
    kept = []
    for cls in range(2):
        chosen: list[int] = []
        for a in sorted(range(len(rows)), key=lambda i: -scores[0, i, cls]):  # stable
            if scores[0, a, cls] > 0.5 and all(
                    box_iou(box[0, [a]], box[0, [b]])[0, 0] <= 0.5 for b in chosen):
                chosen.append(a)
        kept += [(float(scores[0, a, cls]), a, cls) for a in chosen]
    final = {(a, cls) for _, a, cls in sorted(kept, key=lambda t: -t[0])[:4]}
    assert {(int(a), int(c)) for a, c in np.argwhere(m.final[0])} == final


# --- noise floor and verdict ----------------------------------------------------------------

RANK = {verdict: i for i, verdict in enumerate(("identical", "equivalent", "drift",
                                                 "precision_loss"))}
NO_CHANGE = DetectionDiff(3, 3, 3, 0, 0, 0, 0.0, 1.0, 0.0, (), 0.0)


def _judged(golden_error: float, current_error: float, dtype: str) -> TensorComparison:
    measured = TensorComparison(
        name="stem", kind="stage", family="stem", shape=(8,), dtype=dtype, identical=False,
        max_abs=1e-3, max_rel=1e-3, mismatch_fraction=0.5, ulp_at_scale=4.0, cosine=1.0,
        golden_error=golden_error, current_error=current_error,
        error_growth=current_error / golden_error)
    return replace(measured, status=array_status(measured))


errors = st.floats(1e-10, 1e-1, allow_nan=False)
growths = st.floats(1.0, 1e5, allow_nan=False)


@given(errors, growths, growths, st.sampled_from(("float32", "float16", "float64")))
def test_verdict_is_monotone_in_error_growth(golden_error, a, b, dtype):
    """As the error against the twin grows (from the golden's own, growth >= 1), the verdict never
    becomes milder: equivalent, then drift, then precision loss."""
    low, high = sorted((a, b))
    mild = classify([_judged(golden_error, golden_error * low, dtype)], [], NO_CHANGE)
    severe = classify([_judged(golden_error, golden_error * high, dtype)], [], NO_CHANGE)
    assert RANK[mild] <= RANK[severe]
    assert mild != "identical"


@given(st.one_of(st.none(), errors), st.one_of(st.none(), errors),
       st.floats(0.0, 1.0), st.sampled_from(("float32", "float16", "int32")))
def test_noise_floor_is_symmetric_in_the_twin_errors(golden_error, current_error, max_rel, dtype):
    def floor(g, c):
        return at_noise_floor(TensorComparison(
            name="s", kind="stage", family="s", shape=(2,), dtype=dtype, identical=False,
            max_abs=max_rel, max_rel=max_rel, mismatch_fraction=0.5, ulp_at_scale=1.0,
            cosine=1.0, golden_error=g, current_error=c))

    assert floor(golden_error, current_error) == floor(current_error, golden_error)


@given(st.sampled_from(VERDICTS))
def test_strict_exit_code_is_never_milder(verdict):
    assert exit_code(verdict, strict=True) >= exit_code(verdict)
    assert exit_code(verdict, strict=True) == (0 if verdict == "identical" else 1)
