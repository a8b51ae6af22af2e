"""Dense, activation and normalization kernels against ONNX Runtime, through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.opcheck import check_op
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
X = (rng.standard_normal((2, 3, 4, 5)) * 3).astype(np.float32)
M = rng.standard_normal((3, 4)).astype(np.float32)
C = rng.standard_normal((3,)).astype(np.float32)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(
    "a, b",
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((4,), (4,)),
    ],
)
def test_matmul_shapes(a, b):
    check_op("MatMul", [randn(*a), randn(*b)], atol=1e-5)


def test_matmul_int64():
    check_op("MatMul", [rng.integers(-5, 5, (3, 4)), rng.integers(-5, 5, (4, 2))])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    m=st.integers(1, 6),
    k=st.integers(1, 6),
    n=st.integers(1, 6),
    batch=st.lists(st.integers(1, 3), max_size=2),
)
def test_matmul_property(m, k, n, batch):
    r = np.random.default_rng(m * 100 + k * 10 + n)
    a = r.standard_normal((*batch, m, k)).astype(np.float32)
    b = r.standard_normal((k, n)).astype(np.float32)
    check_op("MatMul", [a, b], atol=1e-5)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    m=st.integers(1, 5),
    k=st.integers(1, 5),
    n=st.integers(1, 5),
    ta=st.booleans(),
    tb=st.booleans(),
    alpha=st.sampled_from([1.0, 0.5, -2.0]),
    beta=st.sampled_from([1.0, 0.0, 3.0]),
    c=st.sampled_from(["none", "row", "full", "scalar"]),
)
def test_gemm_property(m, k, n, ta, tb, alpha, beta, c):
    r = np.random.default_rng(0)
    a = r.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = r.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    cs = {"none": None, "row": (n,), "full": (m, n), "scalar": ()}[c]
    inputs = [a, b] + ([] if cs is None else [r.standard_normal(cs).astype(np.float32)])
    check_op("Gemm", inputs, {"alpha": alpha, "beta": beta, "transA": int(ta), "transB": int(tb)}, atol=1e-5)


def test_gemm_dense_layer():
    check_op("Gemm", [M, randn(4, 3), C], atol=1e-5)


@pytest.mark.parametrize(
    "op_type",
    [
        "Relu",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Softsign",
        "HardSwish",
        "Mish",
        "Elu",
        "Selu",
        "Celu",
        "LeakyRelu",
        "ThresholdedRelu",
        "HardSigmoid",
    ],
)
def test_activation_defaults(op_type):
    check_op(op_type, [X], atol=1e-5, opset=18)


def test_activation_extremes():
    x = np.array([-1e4, -100, -30, -1, 0, 1, 30, 100, 1e4], dtype=np.float32)
    for op_type in ["Sigmoid", "Softplus", "Tanh", "Elu", "Mish", "Selu"]:
        check_op(op_type, [x], atol=1e-6, rtol=1e-5, opset=18)


@pytest.mark.parametrize(
    "op_type, attrs",
    [
        ("LeakyRelu", {"alpha": 0.3}),
        ("Elu", {"alpha": 0.5}),
        ("Selu", {"alpha": 1.5, "gamma": 2.0}),
        ("Celu", {"alpha": 2.0}),
        ("ThresholdedRelu", {"alpha": 0.7}),
        ("HardSigmoid", {"alpha": 0.1, "beta": 0.3}),
    ],
)
def test_activation_attributes(op_type, attrs):
    check_op(op_type, [X], attrs, atol=1e-5)


def test_relu_int():
    check_op("Relu", [rng.integers(-5, 5, (3, 4)).astype(np.int32)], opset=14)


@pytest.mark.parametrize("axis", [-1, 0, 1, 3])
@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax(op_type, axis):
    check_op(op_type, [X], {"axis": axis}, atol=1e-5, reference=True)


def test_softmax_large_logits_stable():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -999.0]], dtype=np.float32)
    check_op("Softmax", [x], atol=1e-6)
    check_op("LogSoftmax", [x], atol=1e-3)


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (None, 0.5), (0.0, None), (None, None)])
def test_clip_inputs(lo, hi):
    as_in = lambda v: None if v is None else np.float32(v)  # noqa: E731
    inputs = [X, as_in(lo), as_in(hi)]
    while inputs[-1] is None:
        inputs.pop()
    check_op("Clip", inputs)


def test_clip_int64_and_attributes():
    check_op("Clip", [rng.integers(-9, 9, (4, 5)), np.int64(-3), np.int64(4)])
    check_op("Clip", [X], {"min": -0.5, "max": 2.0}, opset=6)


def test_prelu_broadcast():
    check_op("PRelu", [X, randn(3, 1, 1)])
    check_op("PRelu", [X, randn(5)])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    check_op("Gelu", [X], {"approximate": approximate}, opset=20, atol=1e-5, reference=True)


def test_dropout_inference_with_mask():
    check_op("Dropout", [X], n_outputs=2)
    check_op("Dropout", [X, np.float32(0.3), np.bool_(False)], n_outputs=2)
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        check_op("Dropout", [X, np.float32(0.3), np.bool_(True)])


def test_batch_normalization():
    ch = [randn(3), randn(3), randn(3), np.abs(randn(3)) + 0.1]
    check_op("BatchNormalization", [randn(2, 3, 4, 5)] + ch, {"epsilon": 1e-3}, atol=1e-5)
    check_op("BatchNormalization", [randn(6, 3)] + ch, atol=1e-5)
    with pytest.raises(UnsupportedOpError, match="training_mode=1"):
        check_op("BatchNormalization", [randn(2, 3, 4)] + ch, {"training_mode": 1}, n_outputs=3)


def test_instance_normalization():
    check_op("InstanceNormalization", [X, randn(3), randn(3)], {"epsilon": 1e-3}, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, -2, 1])
def test_layer_normalization(axis):
    s = X.shape[axis:] if axis != 1 else X.shape[1:]
    check_op(
        "LayerNormalization",
        [X, randn(*s), randn(*s)],
        {"axis": axis, "epsilon": 1e-3},
        n_outputs=3,
        atol=1e-4,
    )
    check_op("LayerNormalization", [X, randn(*s)], {"axis": axis}, atol=1e-4)


@pytest.mark.parametrize("p, axis", [(2, -1), (1, 1), (2, 0)])
def test_lp_normalization(p, axis):
    check_op("LpNormalization", [X], {"p": p, "axis": axis}, atol=1e-5)


@pytest.mark.parametrize(
    "eq, shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        ("ii->i", [(4, 4)]),
        ("ij->", [(3, 4)]),
        ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ],
)
def test_einsum(eq, shapes):
    check_op("Einsum", [randn(*s) for s in shapes], {"equation": eq}, atol=1e-5)
