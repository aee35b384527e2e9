"""Tensor metrics on real arrays: bit identity, scale-relative error, ULPs, twin error; where a
difference starts, and whether repeated runs differ."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from envaudit.compare.localize import first_divergence, nondeterminism
from envaudit.compare.tensors import (
    bit_identical,
    compare_arrays,
    compare_tensor,
    cosine_similarity,
    not_run,
    relative_rms_error,
)
from envaudit.compare.types import (
    FirstDivergence,
    Nondeterminism,
    StageReplay,
    TensorComparison,
)
from envaudit.compare.units import ulp, unit_roundoff


def _cmp(golden, current, reference=None, golden_reference=None):
    return compare_tensor("x", "stage", "x", np.asarray(golden), np.asarray(current), reference,
                          golden_reference)


def test_identical_arrays_are_identical_with_zero_metrics():
    a = np.linspace(-3, 3, 101, dtype=np.float32).reshape(1, 101)
    c = _cmp(a, a.copy())
    assert c.identical
    assert (c.max_abs, c.max_rel, c.mismatch_fraction, c.ulp_at_scale) == (0.0, 0.0, 0.0, 0.0)
    assert c.cosine == 1.0
    assert c.shape == (1, 101) and c.dtype == "float32"
    assert c.golden_error is None and c.current_error is None


def test_one_ulp_change_is_measured_in_ulps_at_scale():
    golden = np.array([4.0, 1.0, -2.0, 0.5], dtype=np.float32)
    current = golden.copy()
    current[1] = np.nextafter(np.float32(1.0), np.float32(2.0))  # +1 ulp at 1.0 = 2**-23
    c = _cmp(golden, current)
    assert not c.identical
    assert c.max_abs == 2.0**-23
    assert c.max_rel == pytest.approx(2.0**-23 / 4.0)
    assert c.mismatch_fraction == 0.25
    # The ulp at the tensor's scale (4.0) is 2**-21: a 1-ulp change at 1.0 is a quarter of it.
    assert c.ulp_at_scale == pytest.approx(0.25)
    assert 0.999999 < c.cosine <= 1.0


def test_max_rel_is_relative_to_scale_not_elementwise():
    golden = np.array([1000.0, 1e-6], dtype=np.float32)
    current = np.array([1000.0, 2e-6], dtype=np.float32)
    c = _cmp(golden, current)
    assert c.max_rel == pytest.approx(1e-6 / 1000.0, rel=1e-3)  # elementwise it would be 1.0


def test_negative_zero_is_a_bit_difference_without_magnitude():
    c = _cmp(np.array([0.0, 1.0], np.float32), np.array([-0.0, 1.0], np.float32))
    assert not c.identical
    assert c.max_abs == 0.0 and c.max_rel == 0.0
    assert c.mismatch_fraction == 0.5


def test_all_zero_golden_uses_current_scale():
    c = _cmp(np.zeros(4, np.float32), np.array([0, 0, 0.5, 0], np.float32))
    assert c.max_rel == 1.0
    assert c.cosine == 0.0


def test_uint8_pixels_do_not_wrap_and_count_whole_units():
    golden = np.array([[1, 255, 7]], dtype=np.uint8)
    current = np.array([[0, 255, 9]], dtype=np.uint8)
    c = _cmp(golden, current)
    assert c.max_abs == 2.0  # |9 - 7|; 0 - 1 must not wrap to 255
    assert c.ulp_at_scale == 2.0  # one ulp of an integer is 1
    assert c.max_rel == pytest.approx(2 / 255)
    assert c.mismatch_fraction == pytest.approx(2 / 3)


def test_int_class_ids():
    c = _cmp(np.array([0, 1, 2], np.int32), np.array([0, 2, 2], np.int32))
    assert not c.identical and c.max_abs == 1.0 and c.dtype == "int32"


def test_shape_mismatch_is_a_finding_not_a_crash():
    c = _cmp(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
    assert not c.identical
    assert math.isinf(c.max_abs) and math.isinf(c.max_rel) and math.isinf(c.ulp_at_scale)
    assert c.mismatch_fraction == 1.0
    assert math.isnan(c.cosine)
    assert c.shape == (2, 3)


def test_dtype_mismatch_with_equal_values_is_not_identical():
    c = _cmp(np.ones(3, np.float32), np.ones(3, np.float64))
    assert not c.identical and math.isinf(c.max_abs)


def test_shape_mismatch_keeps_twin_error_of_the_matching_side():
    ref = np.ones((2, 2))
    c = _cmp(np.ones((2, 2), np.float32), np.ones((4,), np.float32), reference=ref)
    assert c.golden_error == 0.0
    assert math.isinf(c.current_error)


def test_nan_handling():
    nan = np.float32("nan")
    same = _cmp(np.array([nan, 1], np.float32), np.array([nan, 1], np.float32))
    assert same.identical
    changed = _cmp(np.array([2, 1], np.float32), np.array([nan, 1], np.float32))
    assert not changed.identical and math.isinf(changed.max_abs) and math.isnan(changed.cosine)


def test_relative_rms_error_values():
    ref = np.array([1.0, -2.0, 3.0])
    assert relative_rms_error(ref * (1 + 1e-3), ref) == pytest.approx(1e-3)
    assert relative_rms_error(np.zeros(3), np.zeros(3)) == 0.0
    assert math.isinf(relative_rms_error(np.ones(3), np.zeros(3)))
    with pytest.raises(ValueError, match="shape"):
        relative_rms_error(np.ones(3), np.ones(4))


def test_twin_errors_use_their_own_references():
    ref_current = np.array([1.0, 2.0, 3.0])
    ref_golden = np.array([1.0, 2.0, 4.0])
    golden = ref_golden.astype(np.float32)
    current = ref_current.astype(np.float32)
    c = _cmp(golden, current, reference=ref_current, golden_reference=ref_golden)
    assert c.golden_error == 0.0 and c.current_error == 0.0
    # Without a golden reference, both are measured against the current run's twin output.
    d = _cmp(golden, current, reference=ref_current)
    assert d.golden_error == pytest.approx(1.0 / math.sqrt(14.0))


def test_fp32_matmul_reordering_sits_at_the_fp32_noise_floor():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((48, 512)).astype(np.float32)
    b = rng.standard_normal((512, 16)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    perm = rng.permutation(512)
    c = _cmp(a @ b, a[:, perm] @ b[perm], reference=ref)
    assert not c.identical
    assert c.max_rel < 1e-5
    assert 0 < c.golden_error < 1e-6 and 0 < c.current_error < 1e-6
    assert c.cosine == pytest.approx(1.0, abs=1e-12)


def test_ulp_and_unit_roundoff():
    assert ulp(np.float32, 1.0) == 2.0**-23
    assert ulp(np.float64, 1.0) == 2.0**-52
    assert ulp(np.uint8, 200) == 1.0
    assert unit_roundoff(np.float32) == 2.0**-24
    assert unit_roundoff(np.float16) == 2.0**-11
    assert unit_roundoff(np.int32) == 0.0


def test_cosine_similarity_edges():
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.array([1.0, 0]), np.array([0, 1.0])) == 0.0
    assert cosine_similarity(np.array([1.0, 2]), np.array([-1.0, -2])) == pytest.approx(-1.0)


def test_to_dict_is_plain_data():
    d = _cmp(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32)).to_dict()
    assert d["shape"] == [2, 2] and d["identical"] is True


def test_names_and_kinds_are_carried():
    c = compare_tensor("matmul_384", "probe", "matmul", np.ones(2, np.float32),
                       np.array([1.0, 2.0], np.float32))
    assert (c.name, c.kind, c.family, c.identical, c.status) == (
        "matmul_384", "probe", "matmul", False, "changed")
    other = compare_tensor("p", "probe", "conv", np.ones(2, np.float32), np.ones(2, np.float64))
    assert (other.name, other.kind, other.family, other.identical) == ("p", "probe", "conv", False)


def test_nan_against_nan_and_inf_against_inf_count_zero():
    nan, inf = np.float32("nan"), np.float32("inf")
    c = _cmp(np.array([nan, inf, 1.0], np.float32), np.array([nan, inf, 1.5], np.float32))
    assert (c.max_abs, c.mismatch_fraction) == (0.5, 1 / 3)
    payload = np.array([nan, 1.0], np.float32)
    other = payload.copy()
    other.view(np.uint32)[0] |= 1  # another NaN payload: bytes differ, magnitude does not
    d = _cmp(payload, other)
    assert (d.identical, d.max_abs, d.mismatch_fraction) == (False, 0.0, 0.5)


def test_infinities_and_overflow_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = _cmp(np.array([np.inf, 1.0], np.float32), np.array([np.inf, 2.0], np.float32))
        assert c.max_abs == 1.0
        # float64 extremes: the difference overflows, inf - inf is invalid; neither warns.
        d = _cmp(np.array([1.7e308, np.inf]), np.array([-1.7e308, np.inf]))
        assert (d.max_abs, d.mismatch_fraction) == (math.inf, 0.5)


def test_not_run_measures_nothing():
    c = not_run("boxes", "stage", "boxes", np.zeros((2, 3), np.float16))
    assert (c.name, c.kind, c.family, c.shape, c.dtype, c.identical, c.status) == (
        "boxes", "stage", "boxes", (2, 3), "float16", False, "not_run")
    assert (c.max_abs, c.max_rel, c.mismatch_fraction, c.ulp_at_scale) == (
        math.inf, math.inf, 1.0, math.inf)
    assert math.isnan(c.cosine)
    assert (c.golden_error, c.current_error, c.error_growth) == (None, None, None)
    assert not_run("p", "probe", "nms", [1, 2]).shape == (2,)


def test_compare_arrays_in_golden_order_with_families_and_references():
    one = np.ones(4, np.float32)
    moved = one + np.float32(0.25)
    golden = {"decode": np.zeros(2, np.uint8), "matmul": one, "conv": one, "tanh": one}
    current = {"tanh": one, "matmul": moved, "conv": one}
    got = compare_arrays("probe", golden, current, families={"matmul": "mm", "conv": "cv"},
                         references={"matmul": np.ones(4)},
                         golden_references={"matmul": np.full(4, 2.0)})
    # matmul moved by 0.25 of its scale, but its twin errors (0.5 -> 0.25) agree: rounding.
    assert [(c.name, c.kind, c.family, c.status) for c in got] == [
        ("decode", "probe", "decode", "not_run"), ("matmul", "probe", "mm", "rounding"),
        ("conv", "probe", "cv", "identical"), ("tanh", "probe", "tanh", "identical")]
    assert (got[1].golden_error, got[1].current_error) == (0.5, 0.25)
    assert got[2].golden_error is None and got[3].current_error is None
    assert (got[0].shape, got[0].dtype) == ((2,), "uint8")
    plain = compare_arrays("stage", {"s": one}, {"s": moved})
    assert (plain[0].family, plain[0].golden_error, plain[0].status) == ("s", None, "changed")
    within = compare_arrays("stage", {"s": one}, {"s": moved}, spread=0.25)
    assert within[0].status == "rounding"
    assert compare_arrays("stage", {}, {"s": one}) == ()


def test_bit_identical_is_dtype_shape_and_bytes():
    assert bit_identical([1.0, 2.0], [1.0, 2.0]) is True
    assert bit_identical(np.zeros(2, np.int32), np.zeros(2, np.float32)) is False  # same bytes
    assert bit_identical(np.zeros((2, 2)), np.zeros(4)) is False
    assert bit_identical(np.array([0.0]), np.array([-0.0])) is False
    assert bit_identical(np.array([1.0, 2.0]), np.array([1.0, 3.0])) is False


# --- localization: first divergence and nondeterminism --------------------------------------


def _stage(name: str, golden, current) -> TensorComparison:
    return compare_tensor(name, "stage", name, np.asarray(golden), np.asarray(current))


def test_first_divergence_and_replay():
    golden = {"decode": np.array([1, 2], np.uint8), "resize": np.array([0.5, 1.0]),
              "stem": np.array([2.0, 4.0]), "head": np.array([1.0, 1.0])}
    current = {"decode": golden["decode"], "resize": np.array([0.5, 1.25]),
               "stem": np.array([2.0, 3.0]), "head": np.array([1.0, 1.5, 2.0])}
    stages = [_stage(n, golden[n], current[n]) for n in golden]
    replayed = {"resize": np.array([0.5, 1.0]),  # computes as before: carries decode's change
                "stem": np.array([2.0, 3.75]),  # changed by itself, by 0.25
                "head": np.array([1.0, 1.0, 1.0])}  # another shape: changed, no magnitude
    found = first_divergence(stages, golden, replayed)
    assert found == FirstDivergence(
        stage="resize", index=1,
        replay=(StageReplay("resize", True, 0.0), StageReplay("stem", False, 0.25),
                StageReplay("head", False, 0.0)),
        changed_stages=("stem", "head"))
    assert found.to_dict() == {
        "stage": "resize", "index": 1,
        "replay": [{"stage": "resize", "identical": True, "max_abs": 0.0},
                   {"stage": "stem", "identical": False, "max_abs": 0.25},
                   {"stage": "head", "identical": False, "max_abs": 0.0}],
        "changed_stages": ["stem", "head"]}


def test_no_divergence_when_every_stage_is_identical():
    stages = [_stage("a", [1.0], [1.0]), _stage("b", [2.0], [2.0])]
    assert first_divergence(stages, {}, {}) is None


def test_nondeterminism_against_the_first_run():
    first = {"stage/a": np.array([1.0, 2.0]), "probe/b": np.array([0.5]),
             "probe/c": np.array([3.0])}
    runs = [first,
            {"stage/a": np.array([1.0, 2.75]), "probe/b": np.array([0.5]),
             "probe/c": first["probe/c"]},
            {"stage/a": np.array([1.0, 2.5]), "probe/b": np.array([0.625]),
             "probe/c": first["probe/c"]}]
    found = nondeterminism(runs)
    assert found == Nondeterminism(runs=3, deterministic=False,
                                   differing_arrays=("stage/a", "probe/b"), max_spread=0.75)
    assert found.to_dict() == {"runs": 3, "deterministic": False,
                               "differing_arrays": ["stage/a", "probe/b"], "max_spread": 0.75}
    late = nondeterminism([first, first, {**first, "probe/c": np.array([2.0])}])
    assert (late.differing_arrays, late.max_spread) == (("probe/c",), 1.0)


def test_repeated_identical_runs_are_deterministic():
    run = {"stage/a": np.array([1.0, -0.0])}
    assert nondeterminism([run, {"stage/a": run["stage/a"].copy()}]) == Nondeterminism(
        runs=2, deterministic=True, differing_arrays=(), max_spread=0.0)
    byte_only = nondeterminism([run, {"stage/a": np.array([1.0, 0.0])}])
    assert byte_only == Nondeterminism(runs=2, deterministic=False,
                                       differing_arrays=("stage/a",), max_spread=0.0)


def test_a_mode_result_is_plain_json_data():
    from envaudit.compare.types import (
        DetectionDiff,
        FirstDivergence,
        ModeResult,
        StageReplay,
    )

    result = ModeResult("xla", "equivalent",
                        FirstDivergence("stem", 3, (StageReplay("stem", False, 1e-7),), ("stem",)),
                        DetectionDiff(2, 2, 2, 0, 0, 0, 0.0, 1.0, 0.0, (), 0.0, mode="xla",
                                      score_threshold=0.5))
    assert result.to_dict() == {
        "mode": "xla", "verdict": "equivalent",
        "first_divergence": {"stage": "stem", "index": 3,
                             "replay": [{"stage": "stem", "identical": False, "max_abs": 1e-7}],
                             "changed_stages": ["stem"]},
        "detections": {"golden": 2, "current": 2, "matched": 2, "added": 0, "removed": 0,
                       "class_changed": 0, "max_score_delta": 0.0, "min_iou": 1.0,
                       "max_box_delta": 0.0, "changes": [], "noise": 0.0, "mode": "xla",
                       "score_threshold": 0.5, "missed": None},
        "not_run": None}
    skipped = ModeResult("graph", None, None, None, "no XLA")
    assert skipped.status == "not_run" and not skipped.moved
    assert skipped.to_dict()["not_run"] == "no XLA"
    assert skipped.to_dict()["verdict"] == "not_run"  # how the check JSON spells it
