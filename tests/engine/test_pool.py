"""Pooling kernels against ONNX Runtime (and onnx.reference), through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.engine.opcheck import check_op, check_reference_op, make_model, run_ort
from xverify.engine import Interpreter
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
TOL = dict(atol=1e-5, rtol=1e-5)
X = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)

POOL_CASES = [
    {"kernel_shape": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [0, 0, 1, 1], "ceil_mode": 1},  # drops a window
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [2, 3], "auto_pad": "VALID"},
]


@pytest.mark.parametrize(
    "attrs",
    POOL_CASES
    + [
        {"kernel_shape": [2, 2], "dilations": [2, 2]},
        {
            "kernel_shape": [2, 2],
            "dilations": [2, 1],
            "pads": [1, 1, 1, 1],
            "ceil_mode": 1,
            "strides": [2, 2],
        },
        {"kernel_shape": [3, 3], "storage_order": 1},
    ],
)
def test_max_pool(attrs):
    check_op("MaxPool", [X], attrs, **TOL)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [1, 0, 0, 1], "storage_order": 1},
        {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]},
    ],
)
def test_max_pool_indices(attrs):
    check_op("MaxPool", [X], attrs, n_outputs=2, **TOL)


def test_max_pool_1d_3d_and_int8():
    check_op(
        "MaxPool",
        [rng.standard_normal((2, 3, 9)).astype(np.float32)],
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1]},
        **TOL,
    )
    check_op(
        "MaxPool",
        [rng.standard_normal((1, 2, 5, 4, 6)).astype(np.float32)],
        {"kernel_shape": [2, 2, 3], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 1]},
        **TOL,
    )
    check_op(
        "MaxPool",
        [rng.integers(-100, 100, (1, 2, 5, 5)).astype(np.int8)],
        {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]},
    )


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(attrs, count_include_pad):
    check_op("AveragePool", [X], {**attrs, "count_include_pad": count_include_pad}, **TOL)


def test_average_pool_1d_3d():
    check_op(
        "AveragePool",
        [rng.standard_normal((2, 3, 9)).astype(np.float32)],
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "count_include_pad": 1},
        **TOL,
    )
    check_op(
        "AveragePool",
        [rng.standard_normal((1, 2, 5, 4, 6)).astype(np.float32)],
        {"kernel_shape": [2, 2, 3], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 1]},
        **TOL,
    )


def test_average_pool_dilations_opset19():
    check_op(
        "AveragePool",
        [X],
        {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
        opset=19,
        **TOL,
    )


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [3, 2], "p": 3, "auto_pad": "SAME_UPPER"},
        {"kernel_shape": [2, 2], "p": 1},
    ],
)
def test_lp_pool(attrs):
    check_op("LpPool", [X], attrs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_global_pools(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    check_op("GlobalAveragePool", [x], **TOL)
    check_op("GlobalMaxPool", [x], **TOL)
    check_op("GlobalLpPool", [x], atol=1e-4, rtol=1e-4)
    check_op("GlobalLpPool", [x], {"p": 3}, atol=1e-4, rtol=1e-4)


def test_pool_bad_auto_pad_is_unsupported():
    from xverify.engine.ops.pool import average_pool

    with pytest.raises(UnsupportedOpError, match="AveragePool: auto_pad='SAME'"):
        average_pool(X, kernel_shape=[2, 2], auto_pad="SAME")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    op_type=st.sampled_from(["MaxPool", "AveragePool"]),
    nsp=st.integers(1, 3),
    size=st.integers(2, 8),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    p=st.integers(0, 1),
    ceil=st.integers(0, 1),
    include=st.integers(0, 1),
    auto_pad=st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]),
)
def test_pool_property(op_type, nsp, size, k, s, p, ceil, include, auto_pad):
    assume(p < k)  # ONNX Runtime wants pads smaller than the kernel
    assume(auto_pad != "VALID" or size >= k)
    r = np.random.default_rng(size * 100 + k * 10 + s)
    x = r.standard_normal((2, 3) + (size,) * nsp).astype(np.float32)
    attrs = {"kernel_shape": [k] * nsp, "strides": [s] * nsp, "auto_pad": auto_pad, "ceil_mode": ceil}
    if auto_pad == "NOTSET":
        attrs["pads"] = [p] * (2 * nsp)
    if op_type == "AveragePool":
        attrs["count_include_pad"] = include
    check_op(op_type, [x], attrs, **TOL)


# MaxUnpool ------------------------------------------------------------------------------------


def _pooled(x, attrs):
    """MaxPool's values and indices of ``x``, as ONNX Runtime computes them."""
    return run_ort(make_model("MaxPool", [x], attrs, n_outputs=2), {"in0": x})


# (MaxPool's input shape, attributes) where MaxUnpool's inferred shape is that input's shape
UNPOOL_CASES = [
    ((2, 3, 6, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((2, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
]


@pytest.mark.parametrize(("shape", "attrs"), UNPOOL_CASES)
def test_max_unpool_inverts_max_pool(shape, attrs):
    values, indices = _pooled(rng.standard_normal(shape).astype(np.float32), attrs)
    check_op("MaxUnpool", [values, indices], attrs, reference=True, **TOL)


@pytest.mark.parametrize(("shape", "attrs"), UNPOOL_CASES)
def test_max_unpool_larger_output_shape_pads_the_ends(shape, attrs):
    """ONNX's reference and node test read I in the inferred shape and pad each axis at its end;
    ONNX Runtime reads I in output_shape's layout (microsoft/onnxruntime#2193): onnx.reference is
    the reference here."""
    values, indices = _pooled(rng.standard_normal(shape).astype(np.float32), attrs)
    larger = np.array([shape[0], shape[1], shape[2] + 2, shape[3] + 1], np.int64)
    (got,) = check_reference_op("MaxUnpool", [values, indices, larger], attrs, **TOL)
    assert not got[:, :, shape[2] :].any() and not got[:, :, :, shape[3] :].any()


def test_max_unpool_output_shape_by_hand():
    """ONNX's node test test_maxunpool_export_with_output_shape: indices 5, 7, 13, 15 of the
    inferred 4x4 plane, padded to 5x5 at the bottom and right."""
    values = np.array([5, 6, 7, 8], np.float32).reshape(1, 1, 2, 2)
    indices = np.array([5, 7, 13, 15], np.int64).reshape(1, 1, 2, 2)
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2]}
    (got,) = check_reference_op("MaxUnpool", [values, indices, np.array([1, 1, 5, 5], np.int64)], attrs)
    want = np.zeros((5, 5), np.float32)
    want[1, 1], want[1, 3], want[3, 1], want[3, 3] = 5, 6, 7, 8
    np.testing.assert_array_equal(got[0, 0], want)


def test_max_unpool_smaller_output_shape_is_refused():
    shape, attrs = UNPOOL_CASES[0]
    values, indices = _pooled(rng.standard_normal(shape).astype(np.float32), attrs)
    smaller = np.array([2, 3, 5, 8], np.int64)  # onnx.reference fails there too (a broadcast error)
    model = make_model("MaxUnpool", [values, indices, smaller], attrs)
    with pytest.raises(UnsupportedOpError, match="smaller than the shape"):
        Interpreter(model, "float32").run({"in0": values, "in1": indices, "in2": smaller})
