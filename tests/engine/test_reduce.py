"""Reduction kernels against ONNX Runtime, through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.opcheck import check_op

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)
POS = (rng.random((2, 3, 4)) + 0.5).astype(np.float32)
I = rng.integers(-9, 9, (2, 3, 4)).astype(np.int64)
TIES = np.array([[1, 3, 3, 0], [2, 2, 1, 2], [0, 0, 0, 0]], dtype=np.float32)

OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
]
AXES = [[1], [-1], [0, 2], [-3, -2, -1], None]


@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op_type", OPS)
def test_reduce_axes_input_opset18(op_type, axes, keepdims):
    x = POS if op_type == "ReduceLogSum" else X
    inputs = [x] if axes is None else [x, np.array(axes, dtype=np.int64)]
    check_op(op_type, inputs, {"keepdims": keepdims}, atol=1e-5, opset=18)


@pytest.mark.parametrize("op_type", OPS)
def test_reduce_axes_attribute_opset13(op_type):
    x = POS if op_type == "ReduceLogSum" else X
    if op_type == "ReduceSum":
        check_op(op_type, [x], {"axes": [0, -1], "keepdims": 0}, atol=1e-5, opset=11)
    else:
        check_op(op_type, [x], {"axes": [0, -1], "keepdims": 0}, atol=1e-5, opset=13)
        check_op(op_type, [x], {}, atol=1e-5, opset=13)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMax", "ReduceProd", "ReduceMean"])
def test_reduce_int64(op_type):
    check_op(op_type, [I, np.array([1], dtype=np.int64)], {"keepdims": 1}, opset=18)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean"])
def test_reduce_noop_with_empty_axes(op_type):
    check_op(op_type, [X, np.array([], dtype=np.int64)], {"noop_with_empty_axes": 1}, opset=18)
    check_op(op_type, [X, np.array([], dtype=np.int64)], {"noop_with_empty_axes": 0}, opset=18, atol=1e-5)


def test_reduce_sum_axes_as_constant_input():
    check_op("ReduceSum", [X, np.array([-1], dtype=np.int64)], const_inputs=(1,), atol=1e-5)


def test_reduce_log_sum_exp_large_values():
    x = np.array([[1000.0, 1000.0], [-1e4, -1e4], [-np.inf, 0.0]], dtype=np.float32)
    check_op("ReduceLogSumExp", [x, np.array([1])], opset=18, atol=1e-3)


@pytest.mark.parametrize("select_last_index", [0, 1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
def test_arg(op_type, axis, keepdims, select_last_index):
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": select_last_index}
    check_op(op_type, [TIES], attrs)
    check_op(op_type, [I[0]], attrs)


def test_arg_defaults_3d():
    check_op("ArgMax", [X])
    check_op("ArgMin", [X], {"axis": 2})
