"""stats.py: figures that merge exactly across chunks, and the --gate parser."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xverify.errors import UsageError
from xverify.stats import METRICS, Condition, Stats, gate_failures, parse_gate

EXACT = ("samples", "elements", "max_abs", "max_rel", "pass_rate", "top1", "top5")
EXACT += tuple(m for m in METRICS if m.startswith("p"))
SUMMED = ("mean_abs", "sqnr", "cosine")


def _pair(seed, rows, classes=10):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((rows, classes)).astype(np.float32)
    noise = rng.standard_normal((rows, classes)) * 10.0 ** rng.uniform(-7, -1, (rows, 1))
    a = (b + noise).astype(np.float32)
    same = rng.random(a.shape) < 0.2  # exact agreement: the histograms' zero bin
    a[same] = b[same]
    return a, b


def _chunked(a, b, cuts):
    edges = [0, *sorted(set(cuts)), len(a)]
    parts = [Stats(1e-4, 1e-3).update(a[lo:hi], b[lo:hi]) for lo, hi in itertools.pairwise(edges)]
    merged = Stats(1e-4, 1e-3)
    for part in parts:
        merged.merge(part)
    return merged.to_dict()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 120),
    cuts=st.lists(st.integers(0, 120), max_size=8),
)
def test_chunked_figures_equal_whole_set(seed, rows, cuts):
    a, b = _pair(seed, rows)
    whole = Stats(1e-4, 1e-3).update(a, b).to_dict()
    chunked = _chunked(a, b, [c for c in cuts if c <= rows])
    for name in EXACT:
        assert chunked[name] == whole[name], name
    for name in SUMMED:
        assert chunked[name] == pytest.approx(whole[name], rel=1e-12, abs=0), name


def test_figures_against_direct_numpy():
    a, b = _pair(1, 500)
    got = Stats(1e-4, 1e-3).update(a, b).to_dict()
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = np.abs(a64 - b64)
    assert got["max_abs"] == d.max()
    assert got["mean_abs"] == pytest.approx(d.mean(), rel=1e-12)
    assert got["sqnr"] == pytest.approx(10 * np.log10((b64**2).sum() / (d**2).sum()), rel=1e-12)
    cos = (a64 * b64).sum() / np.linalg.norm(a64) / np.linalg.norm(b64)
    assert got["cosine"] == pytest.approx(cos, rel=1e-12)
    ok = (d <= 1e-4 + 1e-3 * np.abs(b64)).all(axis=1)
    assert got["pass_rate"] == ok.mean()
    assert got["top1"] == (a.argmax(1) == b.argmax(1)).mean()
    for label, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
        true = np.sort(d.ravel())[math.ceil(q * d.size) - 1]  # nearest rank
        assert got[f"{label}_abs"] == pytest.approx(true, rel=10 ** (1 / 200) - 1)


def test_top_k_counts_rows_whose_best_classes_agree():
    b = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    a = np.array([[0.1, 0.6, 0.3], [0.3, 0.5, 0.2], [0.2, 0.2, 0.6]])
    got = Stats().update(a, b).to_dict()
    assert got["top1"] == pytest.approx(2 / 3) and got["top5"] == 1.0  # 3 classes: every top-3 set equal


def test_non_classifier_has_no_top_k_and_equal_sides_are_perfect():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    got = Stats().update(x, x).to_dict()
    assert got["top1"] is None and got["sqnr"] == math.inf and got["cosine"] == 1.0
    assert got["p999_abs"] == 0.0 and got["pass_rate"] == 1.0


def test_non_finite_values_follow_the_tolerance_rule():
    b = np.array([[np.nan, 1.0], [np.inf, 2.0], [1.0, 2.0]])
    a = np.array([[np.nan, 1.0], [np.inf, 2.0], [np.nan, 2.0]])
    got = Stats().update(a, b).to_dict()
    assert got["pass_rate"] == pytest.approx(2 / 3) and got["max_abs"] == math.inf
    assert got["mean_abs"] == 0.0


def test_merge_refuses_other_tolerances_and_shapes():
    with pytest.raises(ValueError, match="tolerances"):
        Stats(1e-4).merge(Stats(1e-3))
    s = Stats().update(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        s.update(np.zeros((2, 4)), np.zeros((2, 4)))


def test_gate_parses_and_judges():
    gate = parse_gate("top1>=0.999, sqnr >= 40,max_abs<1e-3")
    assert gate == (
        Condition("top1", ">=", 0.999),
        Condition("sqnr", ">=", 40.0),
        Condition("max_abs", "<", 1e-3),
    )
    figures = {"top1": 0.99, "sqnr": 50.0, "max_abs": 2e-3}
    assert gate_failures(gate, figures) == ["top1>=0.999 (found 0.99)", "max_abs<0.001 (found 0.002)"]
    assert gate_failures(gate, {"top1": None, "sqnr": 41.0, "max_abs": 0.0}) == []


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected terms"),
        ("top1=>1", "cannot read"),
        ("top3>=0.9", "unknown metric 'top3'"),
        ("sqnr>=x", "cannot read"),
    ],
)
def test_bad_gate_is_a_usage_error(expression, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_gate(expression)
    assert info.value.exit_code == 2
