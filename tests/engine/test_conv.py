"""Conv and ConvTranspose kernels against ONNX Runtime (and onnx.reference), through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.engine.opcheck import check_op, make_model
from xverify.engine import Interpreter
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
TOL = dict(atol=1e-4, rtol=1e-4)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


X2 = randn(2, 4, 7, 6)
W2 = randn(6, 4, 3, 3)
B6 = randn(6)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 2, 1, 0]},
        {"strides": [2, 2]},
        {"strides": [2, 1], "pads": [1, 0, 1, 0]},
        {"dilations": [2, 2]},
        {"dilations": [2, 1], "pads": [2, 1, 2, 1], "strides": [1, 2]},
        {"auto_pad": "VALID"},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"kernel_shape": [3, 3]},
    ],
)
def test_conv2d_attributes(attrs):
    check_op("Conv", [X2, W2, B6], attrs, **TOL, reference=True)


def test_conv_same_with_dilation_matches_onnx_reference():
    # ONNX Runtime refuses dilations with SAME_*; the spec's formula is checked against onnx.reference.
    from onnx.reference import ReferenceEvaluator

    from tests.engine.opcheck import make_model
    from xverify.engine import Interpreter

    for auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        attrs = {"auto_pad": auto_pad, "dilations": [2, 2], "strides": [1, 2]}
        model = make_model("Conv", [X2, W2], attrs)
        want = ReferenceEvaluator(model).run(None, {"in0": X2, "in1": W2})[0]
        got = Interpreter(model).run({"in0": X2, "in1": W2})["out0"]
        np.testing.assert_allclose(got, want, **TOL)


def test_conv_without_bias():
    check_op("Conv", [X2, W2], {"pads": [1, 1, 1, 1]}, **TOL)


def test_conv_1x1_and_1x1_strided():
    w = randn(5, 4, 1, 1)
    check_op("Conv", [X2, w], {}, **TOL)
    check_op("Conv", [X2, w], {"strides": [2, 2]}, **TOL)


def test_conv1d_and_conv3d():
    check_op("Conv", [randn(2, 3, 9), randn(4, 3, 3), randn(4)], {"pads": [1, 2], "strides": [2]}, **TOL)
    check_op(
        "Conv",
        [randn(1, 2, 5, 6, 4), randn(3, 2, 3, 2, 3), randn(3)],
        {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 1], "dilations": [1, 1, 2]},
        **TOL,
    )


def test_conv_grouped():
    check_op("Conv", [X2, randn(6, 2, 3, 3), B6], {"group": 2, "pads": [1, 1, 1, 1]}, **TOL)


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"dilations": [2, 2]},
    ],
)
def test_conv_depthwise(attrs):
    check_op("Conv", [X2, randn(4, 1, 3, 3), randn(4)], {"group": 4, **attrs}, **TOL)


def test_conv_depthwise_multiplier_and_batch_chunks():
    # depth multiplier 2 (output channel o reads input channel o // 2); a batch large enough
    # for the depthwise kernel to split its work into chunks.
    x = randn(3, 3, 5, 5)
    check_op("Conv", [x, randn(6, 1, 3, 3)], {"group": 3, "pads": [1, 1, 1, 1]}, **TOL)
    check_op("Conv", [randn(5, 8, 130, 130), randn(8, 1, 3, 3)], {"group": 8}, **TOL)


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 2, 1, 0], "strides": [2, 2]},
        {"pads": [2, 1, 2, 1], "dilations": [2, 1], "strides": [1, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"dilations": [2, 3]},
        {"pads": [0, 1, 2, 0], "dilations": [1, 2]},
    ],
)
def test_conv_depthwise_padded_in_blocks(attrs):
    # The padding is applied per block of channels, in a scratch plane whose border stays zero
    # across blocks of several images; stride 1 takes the flattened-plane path, dilated too.
    x = randn(3, 5, 23, 21)
    check_op("Conv", [x, randn(10, 1, 3, 3), randn(10)], {"group": 5, **attrs}, **TOL)
    check_op("Conv", [x, randn(5, 1, 3, 3)], {"group": 5, **attrs}, **TOL)


def test_conv_keeps_float64():
    # ONNX Runtime has no double Conv; the float64 oracle path is covered by check_op.
    from xverify.engine.ops.conv import conv

    want = check_op("Conv", [X2, W2], {"pads": [1, 1, 1, 1]}, **TOL)[0]
    got = conv(X2.astype(np.float64), W2.astype(np.float64), pads=[1, 1, 1, 1])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, **TOL)


def test_conv_bad_auto_pad_is_unsupported():
    from xverify.engine.ops.conv import conv

    with pytest.raises(UnsupportedOpError, match="auto_pad='SAME'"):
        conv(X2, W2, auto_pad="SAME")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    nsp=st.integers(1, 3),
    size=st.integers(3, 8),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    p=st.integers(0, 2),
    groups=st.sampled_from([1, 2, 3]),
    mult=st.integers(1, 2),
    auto_pad=st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]),
)
def test_conv_property(nsp, size, k, s, d, p, groups, mult, auto_pad):
    r = np.random.default_rng(size * 1000 + k * 100 + s * 10 + d)
    cg = 1 if groups == 3 else 2
    x = r.standard_normal((2, cg * groups) + (size,) * nsp).astype(np.float32)
    w = r.standard_normal((groups * mult, cg) + (k,) * nsp).astype(np.float32)
    if auto_pad.startswith("SAME"):
        d = 1  # ONNX Runtime does not support dilations with SAME_*
    assume(size + (2 * p if auto_pad == "NOTSET" else 0) >= (k - 1) * d + 1)
    attrs = {"strides": [s] * nsp, "dilations": [d] * nsp, "group": groups, "auto_pad": auto_pad}
    if auto_pad == "NOTSET":
        attrs["pads"] = [p] * (2 * nsp)
    check_op("Conv", [x, w, r.standard_normal(groups * mult).astype(np.float32)], attrs, **TOL)


# ConvTranspose ------------------------------------------------------------------------------

WT = randn(4, 3, 3, 3)  # (C_in, C_out / group, kH, kW)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"strides": [2, 2]},
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"strides": [2, 3], "pads": [0, 1, 2, 0], "output_padding": [1, 2]},
        {"dilations": [2, 1]},
        {"strides": [2, 2], "output_shape": [14, 12]},
        {"strides": [2, 2], "output_shape": [15, 13]},
        {"strides": [2, 2], "output_shape": [15, 13], "auto_pad": "SAME_UPPER"},
        {"strides": [2, 2], "output_shape": [15, 13], "auto_pad": "SAME_LOWER"},
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
        {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
        {"strides": [2, 2], "auto_pad": "VALID"},
        {"kernel_shape": [3, 3]},
    ],
)
def test_conv_transpose_attributes(attrs):
    check_op("ConvTranspose", [X2, WT, randn(3)], attrs, **TOL)


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [2, 2], "output_shape": [16, 14]},
        {"strides": [3, 2], "output_shape": [23, 14], "pads": [1, 1, 1, 1]},  # pads ignored
        {"strides": [3, 2], "output_shape": [23, 14], "output_padding": [1, 0]},
        {"strides": [2, 2], "output_shape": [16, 14], "auto_pad": "SAME_UPPER"},
        {"strides": [2, 2], "output_shape": [16, 14], "auto_pad": "SAME_LOWER"},
    ],
)
def test_conv_transpose_output_shape_beyond_the_full_output(attrs):
    """Zeros at the end, as output_padding adds, up to the stride: ONNX Runtime, and ONNX's
    reference (test_convtranspose_output_shape) where it ignores pads as the spec says (it applies
    them) and has no auto_pad."""
    reference = "auto_pad" not in attrs and "pads" not in attrs
    check_op("ConvTranspose", [X2, WT, randn(3)], attrs, reference=reference, **TOL)


def test_conv_transpose_output_shape_beyond_the_stride_is_refused():
    """No Conv input has such an output: ONNX Runtime rejects the model, the engine refuses it."""
    model = make_model("ConvTranspose", [X2, WT], {"strides": [2, 2], "output_shape": [17, 13]})
    with pytest.raises(UnsupportedOpError, match="reaches the stride"):
        Interpreter(model, "float32").run({"in0": X2, "in1": WT})


def test_conv_transpose_output_shape_by_hand():
    """A 1x1 kernel of 1 at stride 3 spreads x = [1, 2] to [1, 0, 0, 2]; output_shape 6 (2 beyond)
    appends two zeros."""
    x = np.array([1.0, 2.0], np.float32).reshape(1, 1, 2)
    w = np.ones((1, 1, 1), np.float32)
    (got,) = check_op("ConvTranspose", [x, w], {"strides": [3], "output_shape": [6]}, reference=True, **TOL)
    np.testing.assert_array_equal(got.ravel(), [1, 0, 0, 2, 0, 0])


def test_conv_transpose_grouped_1d_3d_no_bias():
    check_op("ConvTranspose", [X2, randn(4, 2, 3, 3)], {"group": 2, "strides": [2, 1]}, **TOL)
    check_op(
        "ConvTranspose", [randn(2, 3, 5), randn(3, 2, 4), randn(2)], {"strides": [3], "pads": [1, 2]}, **TOL
    )
    check_op(
        "ConvTranspose",
        [randn(1, 2, 3, 4, 3), randn(2, 2, 2, 3, 2)],
        {"strides": [2, 1, 2], "output_padding": [1, 0, 0]},
        **TOL,
    )


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    nsp=st.integers(1, 3),
    size=st.integers(2, 6),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    p=st.integers(0, 1),
    groups=st.sampled_from([1, 2]),
    adj=st.integers(0, 2),
)
def test_conv_transpose_property(nsp, size, k, s, d, p, groups, adj):
    r = np.random.default_rng(size * 1000 + k * 100 + s * 10 + d)
    adj = min(adj, s - 1)  # ONNX Runtime wants output_padding < stride
    assume(s * (size - 1) + adj + (k - 1) * d + 1 > 2 * p)
    x = r.standard_normal((2, 2 * groups) + (size,) * nsp).astype(np.float32)
    w = r.standard_normal((2 * groups, 2) + (k,) * nsp).astype(np.float32)
    attrs = {
        "strides": [s] * nsp,
        "dilations": [d] * nsp,
        "group": groups,
        "pads": [p] * (2 * nsp),
        "output_padding": [adj] * nsp,
    }
    check_op("ConvTranspose", [x, w], attrs, **TOL)
