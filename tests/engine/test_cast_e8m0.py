"""Cast to FLOAT8E8M0 (powers of two, opset 25+): against onnx.reference on values inside the
type's range, and against the spec's table (hand-derived) where the reference departs from it."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from tests.engine.opcheck import make_model
from xverify.engine import Interpreter

rng = np.random.default_rng(0)
MAX, MIN = 2.0**127, 2.0**-127


def _cast(x, **attrs):
    model = make_model("Cast", [x], {"to": TensorProto.FLOAT8E8M0, **attrs}, opset=25)
    out = {dtype: Interpreter(model, dtype).run({"in0": x})["out0"] for dtype in ("float32", "float64")}
    # The oracle keeps FLOAT8E8M0 (a storage type): both policies give the same codes.
    assert out["float32"].dtype == ml_dtypes.float8_e8m0fnu
    np.testing.assert_array_equal(out["float32"].view(np.uint8), out["float64"].view(np.uint8))
    return model, out["float32"]


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_normal_values_match_reference(round_mode, saturate, dtype):
    tiny = float(np.finfo(dtype).tiny)  # normal values of the input type: the reference is exact there
    x = np.exp(rng.uniform(np.log(tiny), np.log(float(np.finfo(dtype).max) / 2), 200)).astype(dtype)
    x[:6] = [1.0, 2.0, 0.75, 1.5, 3.0, 96.0]  # powers of two and the midpoints
    model, got = _cast(x, saturate=saturate, round_mode=round_mode)
    want = ReferenceEvaluator(model).run(None, {"in0": x})[0]
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_rounding_by_hand():
    x = np.array([1.0, 1.25, 1.5, 1.75, 3.0, 0.3], np.float32)
    expected = {
        "up": [1, 2, 2, 2, 4, 0.5],
        "down": [1, 1, 1, 1, 2, 0.25],
        "nearest": [1, 1, 2, 2, 4, 0.25],  # 1.5 is the midpoint of 1 and 2: ties go up
    }
    for mode, want in expected.items():
        _, got = _cast(x, round_mode=mode)
        np.testing.assert_array_equal(got.astype(np.float64), want, err_msg=mode)


def test_special_values_follow_the_spec_table():
    """The spec's table (saturate + up; non-saturate + nearest), where onnx.reference 1.23 gives NaN
    for an infinity, 2^-126 for float32 subnormals and 2^-127 for zero without saturation."""
    x = np.array([0.0, np.nan, np.inf, 1e-40, 2.0**-127, 3e38], np.float32)
    _, sat = _cast(x, saturate=1, round_mode="up")
    np.testing.assert_array_equal(sat.astype(np.float64), [MIN, np.nan, MAX, MIN, MIN, MAX])
    _, raw = _cast(x, saturate=0, round_mode="nearest")
    np.testing.assert_array_equal(raw.astype(np.float64), [np.nan, np.nan, np.nan, np.nan, MIN, np.nan])


def test_cast_like_uses_round_mode():
    x = np.array([1.25, 3.0], np.float32)
    target = np.array([1.0], ml_dtypes.float8_e8m0fnu)
    model = make_model("CastLike", [x, target], {"round_mode": "down"}, opset=25)
    got = Interpreter(model, "float32").run({"in0": x, "in1": target})["out0"]
    np.testing.assert_array_equal(got.astype(np.float64), [1.0, 2.0])
