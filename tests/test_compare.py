"""compare.py against hand-computed values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_non_finite_values_compared_position_by_position():
    both = compare(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), atol=0, rtol=0)
    assert both and both.max_abs_diff == 0.0 and both.min_atol == 0.0 and both.min_rtol == 0.0
    assert "both sides" in both.note
    for a, b in (
        ([np.nan, 1.0], [1.0, 1.0]),
        ([1.0, 1.0], [np.nan, 1.0]),
        ([np.nan, 1.0], [1.0, np.nan]),
    ):  # one side only, or not at the same place
        lone = compare(np.array(a), np.array(b), atol=1e9, rtol=1)
        assert not lone and lone.max_abs_diff == np.inf and "one side only" in lone.note
        assert lone.mismatch_fraction == pytest.approx(
            np.isnan(a).sum() / 2 + np.isnan(b).sum() / 2 - (np.isnan(a) & np.isnan(b)).sum() / 2
        )
    assert not compare(np.array([np.nan]), np.array([np.inf]), atol=1e9, rtol=1)
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


def _reference(a, b, atol, rtol):
    """The direct, whole-array formulation (the first implementation, with its nan_to_num fixed to
    keep +inf: it reported 'no rtol passes' as 1.8e308): what the blockwise one must reproduce."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = within_tolerance(a64, b64, atol, rtol)
    agree = (np.isnan(a64) & np.isnan(b64)) | (np.isinf(a64) & (a64 == b64))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(a64 - b64)
        diff[agree] = 0.0
        diff[~agree & ~(np.isfinite(a64) & np.isfinite(b64))] = np.inf
        absb = np.where(np.isfinite(b64), np.abs(b64), 0.0)
        rel = np.nan_to_num(diff / (absb + 1e-12), nan=np.inf)
        min_atol = float(np.max(diff - rtol * absb))
        need = np.where(diff > atol, (diff - atol) / absb, 0.0)
    return dict(
        max_abs_diff=float(diff.max()),
        max_rel_diff=float(rel.max()),
        mean_abs_diff=float(diff.mean()),
        mismatch_fraction=float(1 - ok.mean()),
        min_atol=max(min_atol, 0.0) if np.isfinite(min_atol) else float("inf"),
        min_rtol=float(np.nan_to_num(need, nan=np.inf, posinf=np.inf).max()),
        passed=bool(ok.all()),
    )


special = st.sampled_from([0.0, -0.0, 1.0, -2.5, 1e-8, np.inf, -np.inf, np.nan])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 9),
    seed=st.integers(0, 2**16),
    n_special=st.integers(0, 4),
    specials=st.lists(special, min_size=4, max_size=4),
    atol=st.sampled_from([0.0, 1e-4, 0.1]),
    rtol=st.sampled_from([0.0, 1e-3, 0.5]),
    block=st.sampled_from([1, 3, 1 << 18]),
    strided=st.booleans(),
)
def test_blockwise_equals_whole_array_reference(n, seed, n_special, specials, atol, rtol, block, strided):
    import xverify.compare as module

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 3)).astype(np.float32)
    b = (a + rng.normal(0, 0.05, a.shape)).astype(np.float32)
    for k in range(n_special):  # place special values on either side
        (a if k % 2 else b).flat[rng.integers(a.size)] = specials[k]
    if strided:  # a transposed view, as a channels-first tensor moved to channels-last is
        a, b = a.T, b.T
    old, module._BLOCK = module._BLOCK, block  # several blocks, or one
    try:
        got = compare(a, b, atol=atol, rtol=rtol)
    finally:
        module._BLOCK = old
    want = _reference(a, b, atol, rtol)
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, rel=1e-12, abs=0, nan_ok=True), key
