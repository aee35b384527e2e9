"""Tensor metrics on real arrays: bit identity, scale-relative error, ULPs, twin error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envaudit.compare.tensors import compare_tensor, cosine_similarity, relative_rms_error
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
