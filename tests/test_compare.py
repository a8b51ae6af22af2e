"""compare.py against hand-computed values."""

import numpy as np
import pytest

from xverify.compare import compare, within_tolerance


def test_metrics_by_hand():
    a = np.array([1.0, 2.0, 3.5, -1.0], np.float32)
    b = np.array([1.0, 2.1, 3.0, -1.0], np.float32)
    d = compare(a, b, atol=0.2, rtol=0.0, a_name="x", b_name="y", output="o")
    assert d.max_abs_diff == pytest.approx(0.5)
    assert d.max_rel_diff == pytest.approx(0.5 / 3.0)
    assert d.mean_abs_diff == pytest.approx((0.1 + 0.5) / 4, rel=1e-6)
    assert d.mismatch_fraction == pytest.approx(0.25)
    assert not d and not d.passed
    # smallest atol at rtol=0 is the max abs diff; smallest rtol at atol=0.2 is (0.5-0.2)/3
    assert d.min_atol == pytest.approx(0.5)
    assert d.min_rtol == pytest.approx(0.1)
    assert compare(a, b, atol=d.min_atol + 1e-9, rtol=0.0)
    assert compare(a, b, atol=0.2, rtol=d.min_rtol + 1e-9)


def test_rtol_is_relative_to_reference_b():
    assert compare(np.array([110.0]), np.array([100.0]), atol=0, rtol=0.1)
    assert not compare(np.array([100.0]), np.array([90.0]), atol=0, rtol=0.1)


def test_nan_never_passes_and_equal_infinities_do():
    nan = compare(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), atol=1, rtol=1)
    assert not nan and "NaN" in nan.note
    assert compare(np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf]), atol=0, rtol=0)
    assert not compare(np.array([np.inf]), np.array([-np.inf]), atol=1e9, rtol=1)
    assert within_tolerance(np.array([np.inf]), np.array([np.inf]), 0, 0).all()


def test_shape_mismatch_fails_with_note():
    d = compare(np.zeros((2, 3)), np.zeros((3, 2)), atol=1, rtol=1)
    assert not d and "shape" in d.note and d.max_abs_diff == float("inf")


def test_computed_in_float64():
    a = np.array([16777216.0], np.float32)  # 2**24: float32 cannot hold 2**24 + 1
    b = np.array([16777217.0], np.float64)
    assert compare(a, b, atol=0, rtol=0).max_abs_diff == 1.0
