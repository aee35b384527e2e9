"""Every threshold and comparison in the deciding code of ``compare/``, just below, at and just
above, with the expected values written out.

The thresholds (docs/design.md, "Per-array status", "Detection matching", "Fragility") are written
here as the numbers they stand for, never as the imported constants: a test that compares against
``PRECISION_LOSS_FACTOR`` passes whatever the factor becomes. fp32 unit roundoff u = 2**-24, so
128 u = 7.62939453125e-06, 16 u = 9.5367431640625e-07 and 2048 u = 0.0001220703125; fp16 u = 2**-11,
so 128 u = 0.0625. The neighbours of a boundary are its float64 (or float32) neighbours.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from envaudit.compare.detections import decision_margins, decision_noise, match_detections
from envaudit.compare.noise import array_status, at_noise_floor, lost_precision
from envaudit.compare.tensors import (
    compare_tensor,
    cosine_similarity,
    error_growth,
    not_run,
    relative_rms_error,
    tensor_scale,
)
from envaudit.compare.types import TensorComparison
from envaudit.compare.units import is_float, ulp, unit_roundoff
from envaudit.workload.types import Candidates, Detections

INF = math.inf


def comparison(**fields) -> TensorComparison:
    """A differing float32 array; ``fields`` override what a rule under test looks at."""
    base = dict(name="s", kind="stage", family="s", shape=(4,), dtype="float32", identical=False,
                max_abs=1e-6, max_rel=1e-6, mismatch_fraction=0.25, ulp_at_scale=8.0,
                cosine=1.0, golden_error=None, current_error=None, error_growth=None)
    base.update(fields)
    return TensorComparison(**base)


def grown(golden_error: float, current_error: float, dtype: str = "float32") -> TensorComparison:
    return comparison(dtype=dtype, golden_error=golden_error, current_error=current_error,
                      error_growth=current_error / golden_error)


# --- units ----------------------------------------------------------------------------------


def test_unit_roundoff_and_ulp_of_every_dtype_kind():
    assert unit_roundoff(np.float32) == 5.960464477539063e-08
    assert unit_roundoff(np.float16) == 0.00048828125
    assert unit_roundoff(np.float64) == 1.1102230246251565e-16
    assert unit_roundoff(np.uint8) == 0.0 and unit_roundoff(np.bool_) == 0.0
    assert ulp(np.float32, -3.0) == 2.384185791015625e-07
    assert ulp(np.int64, 1e9) == 1.0 and ulp(np.bool_, 0.5) == 1.0


def test_extension_floats_are_measured_in_float32_units():
    from ml_dtypes import bfloat16  # TensorFlow's own dependency; a NumPy dtype of kind "V"

    assert unit_roundoff(bfloat16) == 5.960464477539063e-08
    assert ulp(bfloat16, -3.0) == 2.384185791015625e-07
    assert unit_roundoff(np.complex64) == 5.960464477539063e-08
    assert ulp(np.complex64, 0.75) == 5.960464477539063e-08


@pytest.mark.parametrize(("dtype", "expected"), [
    ("float32", True), ("float16", True), (np.float64, True), ("int32", False),
    ("uint8", False), ("bool", False), ("<U3", False), ("not-a-dtype", False),
])
def test_is_float(dtype, expected):
    assert is_float(dtype) is expected


# --- precision loss: growth > 8 and current error > 128 u -----------------------------------


@pytest.mark.parametrize(("growth", "current_error", "dtype", "expected"), [
    (7.999999999999999, 1e-3, "float32", False),
    (8.0, 1e-3, "float32", False),
    (8.000000000000002, 1e-3, "float32", True),
    (9.0, 1e-3, "float32", True),
    (INF, 1e-3, "float32", True),  # from an exact golden
    (100.0, 7.629394531249999e-06, "float32", False),
    (100.0, 7.62939453125e-06, "float32", False),
    (100.0, 7.629394531250002e-06, "float32", True),
    (100.0, 0.06249999999999999, "float16", False),
    (100.0, 0.0625, "float16", False),
    (100.0, 0.06250000000000001, "float16", True),
    (100.0, 1.0, "int32", False),  # integers round nothing: never precision loss
])
def test_lost_precision_boundaries(growth, current_error, dtype, expected):
    c = comparison(dtype=dtype, golden_error=current_error / growth, current_error=current_error,
                   error_growth=growth)
    assert lost_precision(c) is expected
    assert array_status(c) == ("precision_loss" if expected else "changed")


def test_lost_precision_needs_a_growth_a_current_error_and_a_difference():
    assert lost_precision(comparison(error_growth=None, current_error=1.0)) is False
    assert lost_precision(comparison(error_growth=100.0, current_error=None)) is False
    assert lost_precision(comparison(error_growth=100.0, current_error=1.0, identical=True,
                                     max_abs=0.0)) is False


# --- rounding: spread, twin errors within 2x + 16 u, max_rel <= 2048 u ----------------------


@pytest.mark.parametrize(("max_abs", "spread", "expected"), [
    (0.24999999999999997, 0.25, True), (0.25, 0.25, True), (0.25000000000000006, 0.25, False),
])
def test_spread_boundary(max_abs, spread, expected):
    c = comparison(dtype="int32", max_abs=max_abs, max_rel=max_abs)
    assert at_noise_floor(c, spread) is expected
    assert array_status(c, spread) == ("rounding" if expected else "changed")


def test_without_a_spread_any_magnitude_is_beyond_it():
    c = comparison(dtype="int32", max_abs=0.5, max_rel=0.5)
    assert at_noise_floor(c) is False
    assert array_status(c) == "changed"
    # A byte-only difference (-0.0 vs 0.0) has no magnitude and is within a zero spread.
    assert at_noise_floor(comparison(dtype="int32", max_abs=0.0, max_rel=0.0)) is True


@pytest.mark.parametrize(("golden_error", "current_error", "expected"), [
    # boundary 2 * 2**-10 + 16 u = 0.0019540786743164062, approached from both sides
    (0.0009765625, 0.001954078674316406, True),
    (0.0009765625, 0.0019540786743164062, True),
    (0.0009765625, 0.0019540786743164067, False),
    (0.001954078674316406, 0.0009765625, True),
    (0.0019540786743164062, 0.0009765625, True),
    (0.0019540786743164067, 0.0009765625, False),
    (0.0, 9.5367431640625e-07, True),  # an exact stage picking up 16 u of rounding
    (0.0, 9.536743164062502e-07, False),
    (9.536743164062502e-07, 0.0, False),
])
def test_twin_errors_agree_within_twice_plus_slack(golden_error, current_error, expected):
    c = comparison(golden_error=golden_error, current_error=current_error, error_growth=None,
                   max_rel=1.0)  # the twin rule decides, whatever max_rel says
    assert at_noise_floor(c) is expected


def test_twin_rule_is_not_applied_to_integers():
    c = comparison(dtype="int32", golden_error=1.0, current_error=1.0, max_rel=0.5, max_abs=1.0)
    assert at_noise_floor(c) is False


@pytest.mark.parametrize(("golden_error", "current_error"), [(1e-3, None), (None, 1e-3)])
def test_one_twin_error_alone_falls_back_to_max_rel(golden_error, current_error):
    assert at_noise_floor(comparison(golden_error=golden_error, current_error=current_error,
                                     max_rel=0.0001220703125)) is True
    assert at_noise_floor(comparison(golden_error=golden_error, current_error=current_error,
                                     max_rel=0.00012207031250000003)) is False


@pytest.mark.parametrize(("dtype", "max_rel", "expected"), [
    ("float32", 0.00012207031249999999, True),
    ("float32", 0.0001220703125, True),
    ("float32", 0.00012207031250000003, False),
    ("float64", 2.2737367544323206e-13, True),
    ("float64", 2.2737367544323211e-13, False),
    ("float16", 1.0, True),  # 2048 * 2**-11
    ("float16", 1.0000000000000002, False),
])
def test_max_rel_boundary_without_twin(dtype, max_rel, expected):
    assert at_noise_floor(comparison(dtype=dtype, max_rel=max_rel)) is expected


def test_status_order():
    assert array_status(not_run("s", "stage", "s", np.zeros(3, np.float32))) == "not_run"
    assert array_status(comparison(identical=True, max_abs=0.0, max_rel=0.0)) == "identical"
    # Within the spread and grown 100x: precision loss is checked first.
    lossy = grown(1e-7, 1e-5)
    assert at_noise_floor(lossy, spread=1.0) is True
    assert array_status(lossy, spread=1.0) == "precision_loss"
    assert array_status(grown(1e-6, 1.5e-6)) == "rounding"
    assert array_status(grown(1e-6, 4e-6)) == "changed"


# --- tensor metrics at their edges ----------------------------------------------------------


@pytest.mark.parametrize(("golden_error", "current_error", "expected"), [
    (None, 1.0, None), (1.0, None, None), (None, None, None),
    (0.0, 0.0, 1.0), (0.0, 1.0, INF), (0.0, 5e-324, INF), (0.25, 2.0, 8.0), (2.0, 0.0, 0.0),
])
def test_error_growth(golden_error, current_error, expected):
    assert error_growth(golden_error, current_error) == expected


def test_relative_rms_error_edges():
    assert relative_rms_error(np.zeros(0), np.zeros(0)) == 0.0
    assert relative_rms_error(np.array([3.0]), np.array([2.0])) == 0.5
    assert relative_rms_error(np.ones(4, np.float32), np.full(4, 2.0)) == 0.5
    assert relative_rms_error(np.array([np.nan, 1.0]), np.ones(2)) == INF
    assert relative_rms_error(np.ones(2), np.array([np.inf, 1.0])) == INF
    assert relative_rms_error(np.array([1.0, 0.0]), np.zeros(2)) == INF


def test_tensor_scale_edges():
    assert tensor_scale(np.zeros(0, np.float32)) == 0.0
    assert tensor_scale(np.array([np.nan, np.inf, -np.inf])) == 0.0
    assert tensor_scale(np.array([-3.0, np.nan, 2.0], np.float32)) == 3.0
    assert tensor_scale(np.array([200, 7], np.uint8)) == 200.0


def test_cosine_similarity_values():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == 0.7071067811865475
    assert cosine_similarity(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == 1.0
    assert cosine_similarity(np.array([0.0, 1.0]), np.array([2.0, 0.0])) == 0.0
    # Rounding would give 1.0000000000000002 and -1.0000000000000002: clipped.
    v = np.array([0.1, 0.1, 0.3])
    assert cosine_similarity(v, v) == 1.0
    assert cosine_similarity(v, -v) == -1.0
    # float16 inputs are measured in float64 (their squared norm, 180000, overflows float16).
    h = np.array([300.0, 300.0], np.float16)
    assert cosine_similarity(h, np.array([300.0, 300.0])) == 1.0
    assert cosine_similarity(np.array([300.0, 300.0]), h) == 1.0
    assert math.isnan(cosine_similarity(np.zeros(2), np.array([np.inf, 0.0])))
    assert math.isnan(cosine_similarity(np.array([np.nan, 0.0]), np.zeros(2)))


def test_scale_is_the_golden_arrays():
    c = compare_tensor("s", "stage", "s", np.array([4.0, 1.0], np.float32),
                       np.array([4.0, 9.0], np.float32))
    assert (c.max_abs, c.max_rel, c.ulp_at_scale) == (8.0, 2.0, 16777216.0)


# --- detection matching: IoU >= 0.5 ---------------------------------------------------------

G = (0.0, 0.0, 0.5, 0.5)
BELOW, AT, ABOVE = 0.2499999850988388, 0.25, 0.2500000298023224  # float32 neighbours of 0.25


def dets(*rows) -> Detections:
    """rows: (image, class, score, box)."""
    image, cls, score, boxes = zip(*rows, strict=True)
    return Detections(np.array(image, np.int32), np.array(boxes, np.float32),
                      np.array(cls, np.int32), np.array(score, np.float32))


@pytest.mark.parametrize(("xmax", "matched", "min_iou"), [
    (BELOW, 0, None), (AT, 1, 0.5), (ABOVE, 1, 0.5000000596046448),
])
def test_matching_iou_boundary(xmax, matched, min_iou):
    """(0, 0, 0.5, 0.25) covers exactly half of (0, 0, 0.5, 0.5): IoU 0.5 is a match."""
    diff = match_detections(dets((0, 0, 0.875, G)), dets((0, 0, 0.875, (0.0, 0.0, 0.5, xmax))))
    assert (diff.matched, diff.removed, diff.added) == (matched, 1 - matched, 1 - matched)
    assert diff.min_iou == min_iou


@pytest.mark.parametrize(("xmax", "class_changed"), [(BELOW, 0), (AT, 1)])
def test_class_change_iou_boundary(xmax, class_changed):
    diff = match_detections(dets((0, 0, 0.875, G)), dets((0, 1, 0.875, (0.0, 0.0, 0.5, xmax))))
    assert (diff.class_changed, diff.removed, diff.added) == (
        class_changed, 1 - class_changed, 1 - class_changed)


def test_matching_threshold_is_a_parameter():
    golden, current = dets((0, 0, 0.875, G)), dets((0, 0, 0.875, (0.0, 0.0, 0.5, 0.375)))
    assert match_detections(golden, current).matched == 1  # IoU 0.75
    assert match_detections(golden, current, iou_threshold=0.75).matched == 1
    assert match_detections(golden, current, iou_threshold=0.7500001).matched == 0
    # At threshold 0 even disjoint boxes (IoU 0 >= 0) pair up.
    far = dets((0, 0, 0.875, (0.75, 0.75, 1.0, 1.0)))
    assert match_detections(golden, far, iou_threshold=0.0).matched == 1
    assert match_detections(golden, far).matched == 0


# --- NMS replay: score > 0.5 kept, IoU > 0.5 suppresses, top-k ------------------------------


def candidates(rows, classes: int = 1) -> Candidates:
    """One image; rows: (box, class, score); every other class score 0."""
    boxes = np.array([box for box, _, _ in rows], np.float32)[None]
    scores = np.zeros((1, len(rows), classes), np.float32)
    for j, (_, cls, score) in enumerate(rows):
        scores[0, j, cls] = score
    return Candidates(boxes, scores)


@pytest.mark.parametrize(("xmax", "kept", "margin_a", "margin_b"), [
    (AT, True, 0.375, 0.0),  # IoU exactly 0.5: kept, zero margin to suppression
    # IoU 0.5000000596046448: suppressed, escaping by IoU - 0.5; A now competes with B for its
    # place, half their score gap (0.875 - 0.75) / 2.
    (ABOVE, False, 0.0625, 5.960464477539063e-08),
    (BELOW, True, 0.375, 2.9802322387695312e-08),  # IoU 0.4999999701976776
])
def test_nms_iou_boundary(xmax, kept, margin_a, margin_b):
    m = decision_margins(candidates([(G, 0, 0.875), ((0.0, 0.0, 0.5, xmax), 0, 0.75)]))
    assert m.final[0, :, 0].tolist() == [True, kept]
    assert m.margins[0, :, 0].tolist() == [margin_a, margin_b]


@pytest.mark.parametrize(("score", "kept", "margin"), [
    (0.49999997, False, 2.9802322387695312e-08),
    (0.5, False, 0.0),
    (0.50000006, True, 5.960464477539063e-08),
])
def test_nms_score_boundary(score, kept, margin):
    m = decision_margins(candidates([(G, 0, score)]))
    assert m.final[0, 0, 0] is np.bool_(kept)
    assert m.margins[0, 0, 0] == margin


def test_suppression_accumulates_over_kept_boxes():
    """C overlaps A (IoU 0.75) but not B: B being kept after A must not release C."""
    far, c = (0.625, 0.625, 0.875, 0.875), (0.0, 0.0, 0.5, 0.375)
    m = decision_margins(candidates([(G, 0, 0.875), (far, 0, 0.75), (c, 0, 0.625)]))
    assert m.final[0, :, 0].tolist() == [True, True, False]
    assert m.margins[0, :, 0].tolist() == [0.125, 0.25, 0.125]


@pytest.mark.parametrize(("max_detections", "final", "margins"), [
    (3, [True, True, False], [0.375, 0.25, 0.125]),  # fewer survivors than k: no box to beat
    (2, [True, True, False], [0.375, 0.25, 0.1875]),  # exactly k: beat the last kept one too
    (1, [True, False, False], [0.0625, 0.0625, 0.25]),  # one past the cut: half the gap
])
def test_top_k_boundary(max_detections, final, margins):
    """Two survivors (0.875, 0.75) and one candidate below the score threshold (0.375): once k
    survivors are kept, it must also beat the last of them, max(0.5 - 0.375, (0.75 - 0.375) / 2).
    """
    rows = [((0.0, 0.0, 0.2, 0.2), 0, 0.875), ((0.5, 0.5, 0.7, 0.7), 0, 0.75),
            ((0.8, 0.0, 1.0, 0.2), 0, 0.375)]
    m = decision_margins(candidates(rows), max_detections=max_detections)
    assert m.final[0, :, 0].tolist() == final
    assert m.margins[0, :, 0].tolist() == margins


# --- fragility: margin < noise --------------------------------------------------------------


@pytest.mark.parametrize(("noise", "fragile"), [
    (0.12499999999999999, False), (0.125, False), (0.12500000000000003, True),
])
def test_fragility_is_a_margin_strictly_below_the_noise(noise, fragile):
    q = (0.625, 0.625, 0.875, 0.875)
    golden_c = candidates([(G, 0, 0.875), (q, 0, 0.625)])
    diff = match_detections(dets((0, 0, 0.875, G), (0, 0, 0.625, q)), dets((0, 0, 0.875, G)),
                            noise=noise, golden_candidates=golden_c)
    (removed,) = diff.changes
    assert (removed.kind, removed.margin, removed.expected_fragility) == (
        "removed", 0.125, fragile)


def test_without_a_noise_nothing_is_fragile():
    q = (0.625, 0.625, 0.875, 0.875)
    diff = match_detections(dets((0, 0, 0.875, G), (0, 0, 0.625, q)), dets((0, 0, 0.875, G)),
                            golden_candidates=candidates([(G, 0, 0.875), (q, 0, 0.625)]))
    assert (diff.changes[0].margin, diff.changes[0].expected_fragility, diff.noise) == (
        0.125, False, 0.0)


# --- decision noise: anchors with a score >= 0.5 in either run ------------------------------


def _two_runs(golden_score: float, current_score: float):
    """Anchor 0 is considered in both runs; anchor 1's box moves from IoU 0.5 with anchor 0 to 1.0
    (an IoU change of 0.5), and its score from ``golden_score`` to ``current_score``; anchor 2,
    never considered (0.25), jumps far away."""
    half, far = (0.0, 0.0, 0.5, 0.25), (0.625, 0.625, 0.875, 0.875)
    golden = candidates([(G, 0, 0.75), (half, 0, golden_score), (G, 0, 0.25)])
    current = candidates([(G, 0, 0.75), (G, 0, current_score), (far, 0, 0.25)])
    return golden, current


@pytest.mark.parametrize(("golden_score", "current_score", "noise"), [
    (0.5, 0.4375, 0.5), (0.4375, 0.5, 0.5),  # at the threshold in one run: considered
    (0.49999997, 0.4375, 0.06249997019767761), (0.4375, 0.49999997, 0.06249997019767761),
])
def test_decision_noise_considers_scores_at_the_threshold(golden_score, current_score, noise):
    golden, current = _two_runs(golden_score, current_score)
    assert decision_noise(golden, current) == noise
    assert decision_noise(current, golden) == noise


def test_decision_noise_cannot_compare_other_shapes_or_nan():
    c = candidates([(G, 0, 0.75)])
    two = candidates([(G, 0, 0.75), (G, 0, 0.75)])
    assert decision_noise(c, two) == INF
    moved_boxes = Candidates(np.zeros((1, 2, 4), np.float32), c.scores)
    assert decision_noise(c, moved_boxes) == INF
    flat = Candidates(np.zeros((1, 4)), np.zeros((1, 4)))
    assert decision_noise(flat, flat) == INF
    nan = candidates([(G, 0, np.nan)])
    assert decision_noise(nan, c) == INF


def test_decision_noise_with_infinite_scores_warns_nothing():
    c = candidates([(G, 0, np.inf)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decision_noise(c, c) == INF


# --- margins looked up at a location --------------------------------------------------------


def test_margin_lookup_boundaries():
    m = decision_margins(candidates([(G, 0, 0.875), ((0.0, 0.0, 0.5, 0.25), 0, 0.75)],
                                    classes=2))
    assert m.at(0, G, [0], final=True) == 0.0  # both candidates near G: the smaller margin
    # (0, 0.25, 0.5, 0.5) has IoU 0.5 with G (near) and 0 with the other box.
    assert m.at(0, (0.0, 0.25, 0.5, 0.5), [0], final=True) == 0.375
    assert m.at(0, (0.0, ABOVE, 0.5, 0.5), [0], final=True) is None
    assert m.at(0, G, [1], final=False) == 0.5  # class 1 scored 0 everywhere
    assert m.at(0, G, [0], final=False) is None  # near, but nothing near was dropped
    assert m.at(0, G, [2], final=False) is None  # no such class
    assert m.at(0, G, [-1], final=False) is None
    assert m.at(1, G, [0], final=True) is None  # no such image
    assert m.at(-1, G, [0], final=True) is None
