"""Elementwise kernels against ONNX Runtime, one case per line, through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.engine.opcheck import check_op
from xverify.engine.ops.elementwise import erf
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
F = rng.standard_normal((2, 3, 4)).astype(np.float32)
G = rng.standard_normal((2, 3, 4)).astype(np.float32)
ROW = rng.standard_normal((4,)).astype(np.float32)
POS = (rng.random((3, 4)) + 0.1).astype(np.float32)
UNIT = rng.uniform(-0.9, 0.9, (3, 4)).astype(np.float32)
I = rng.integers(-20, 20, (3, 4)).astype(np.int64)
J = rng.integers(1, 7, (3, 4)).astype(np.int64) * np.where(rng.random((3, 4)) < 0.5, -1, 1)
I32 = rng.integers(-20, 20, (3, 4)).astype(np.int32)
B1 = rng.random((3, 4)) < 0.5
B2 = rng.random((4,)) < 0.5
HALF = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51], dtype=np.float32)
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 3.0], dtype=np.float32)

UNARY = [
    "Neg",
    "Abs",
    "Exp",
    "Floor",
    "Ceil",
    "Sign",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
]


@pytest.mark.parametrize("op_type", UNARY)
def test_unary_float(op_type):
    check_op(op_type, [F])


@pytest.mark.parametrize("op_type", ["Sqrt", "Log", "Reciprocal", "Acosh"])
def test_unary_positive(op_type):
    check_op(op_type, [POS + (1 if op_type == "Acosh" else 0)])


@pytest.mark.parametrize("op_type", ["Asin", "Acos", "Atanh"])
def test_unary_unit_interval(op_type):
    check_op(op_type, [UNIT])


@pytest.mark.parametrize("op_type", ["Neg", "Abs", "Sign"])
def test_unary_int(op_type):
    check_op(op_type, [I])


def test_round_half_to_even():
    check_op("Round", [HALF])


def test_erf_wide_range_and_specials():
    x = np.concatenate([np.linspace(-7, 7, 301, dtype=np.float32), SPECIAL[:3]])
    check_op("Erf", [x], atol=1e-6)
    grid = np.linspace(-6, 6, 1201)
    assert np.max(np.abs(erf(grid) - np.vectorize(__import__("math").erf)(grid))) < 1e-15


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Mean"])
@pytest.mark.parametrize("b", [G, ROW, np.float32(1.5)], ids=["same", "row", "scalar"])
def test_binary_float_broadcast(op_type, b):
    a = np.abs(F) + 0.5 if op_type == "Pow" else F
    check_op(op_type, [a, np.asarray(b)], atol=1e-5)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Min", "Max"])
@pytest.mark.parametrize("a", [I, I32], ids=["int64", "int32"])
def test_binary_int(op_type, a):
    check_op(op_type, [a, J.astype(a.dtype)])


def test_int_div_truncates_toward_zero():
    (out,) = check_op("Div", [np.array([7, -7, 7, -7]), np.array([2, 2, -2, -2])])
    np.testing.assert_array_equal(out, [3, -3, -3, 3])


def test_pow_int_exponent_on_float_base():
    check_op("Pow", [POS, np.array([2, 3, 1, 0], dtype=np.int64)])


@pytest.mark.parametrize("op_type", ["Min", "Max", "Sum", "Mean"])
def test_variadic_three_inputs(op_type):
    check_op(op_type, [F, G, ROW])
    check_op(op_type, [F])


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_int(fmod):
    check_op("Mod", [I, J], {"fmod": fmod})


def test_mod_float():
    check_op("Mod", [F * 5, G], {"fmod": 1})


@pytest.mark.parametrize("op_type", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_comparison(op_type):
    check_op(op_type, [np.round(F), np.round(ROW)])
    check_op(op_type, [I, J])


@pytest.mark.parametrize("op_type", ["And", "Or", "Xor"])
def test_logic(op_type):
    check_op(op_type, [B1, B2])


def test_not():
    check_op("Not", [B1])


def test_where_broadcast():
    check_op("Where", [B2, F, np.float32(0)])
    check_op("Where", [B1, I, J])


def test_isnan_isinf():
    check_op("IsNaN", [SPECIAL])
    for neg, pos in [(1, 1), (1, 0), (0, 1), (0, 0)]:
        check_op("IsInf", [SPECIAL], {"detect_negative": neg, "detect_positive": pos})


@pytest.mark.parametrize(
    "to",
    [
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.INT64,
        TensorProto.INT32,
        TensorProto.BOOL,
        TensorProto.UINT8,
        TensorProto.FLOAT16,
    ],
)
def test_cast_from_float(to):
    check_op("Cast", [F * 10], {"to": to}, atol=1e-2 if to == TensorProto.FLOAT16 else 1e-5)


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT32])
def test_cast_from_int(to):
    check_op("Cast", [I], {"to": to})


def test_cast_to_float_is_float64_in_oracle():
    from tests.engine.opcheck import make_model
    from xverify.engine import Interpreter

    model = make_model("Cast", [I], {"to": TensorProto.FLOAT})
    out = Interpreter(model, "float64").run({"in0": I})["out0"]
    assert out.dtype == np.float64


def test_cast_string_unsupported():
    with pytest.raises(UnsupportedOpError, match="to=STRING"):
        check_op("Cast", [F], {"to": TensorProto.STRING})


def test_castlike_and_identity():
    check_op("CastLike", [F * 10, I[:1, :1]])
    check_op("CastLike", [I, F[:1, :1, :1]])
    check_op("Identity", [F])
    check_op("Identity", [I])
