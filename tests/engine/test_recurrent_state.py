"""LinearAttention and CausalConvWithState (opset 27) against ``onnx.reference`` and hand-derived
values. ONNX Runtime 1.32 runs neither op, so ONNX's reference implementation is the reference;
the float64 oracle is held to it at float32-rounding tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.opcheck import check_reference_op, make_model
from xverify.engine import Interpreter

OPSET = 27
rng = np.random.default_rng(0)


def _r(*shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _run(op_type, inputs, attrs, dtype="float32"):
    model = make_model(op_type, inputs, attrs, n_outputs=2, opset=OPSET)
    feeds = {f"in{i}": a for i, a in enumerate(inputs) if a is not None}
    got = Interpreter(model, dtype).run(feeds)
    return model, feeds, [got[o.name] for o in model.graph.output]


def _check_against_reference(op_type, inputs, attrs, atol, rtol=1e-5):
    return check_reference_op(op_type, inputs, attrs, n_outputs=2, atol=atol, rtol=rtol, opset=OPSET)


def _qkv(b, t, hq, hkv, d_k, d_v):
    return _r(b, t, hq * d_k, scale=0.5), _r(b, t, hkv * d_k, scale=0.5), _r(b, t, hkv * d_v)


@pytest.mark.parametrize(
    ("rule", "decay_dim", "beta_dim"),
    [
        ("linear", None, None),
        ("gated", "key", None),
        ("gated", "head", None),
        ("delta", None, "head"),
        ("gated_delta", "key", "head"),
        ("gated_delta", "head", "one"),
    ],
)
@pytest.mark.parametrize(("hq", "hkv"), [(4, 4), (4, 2), (4, 1)])
def test_linear_attention_matches_reference(rule, decay_dim, beta_dim, hq, hkv):
    b, t, d_k, d_v = 2, 5, 4, 3
    q, k, v = _qkv(b, t, hq, hkv, d_k, d_v)
    decay = None if decay_dim is None else -np.abs(_r(b, t, hkv * (d_k if decay_dim == "key" else 1)))
    beta = None if beta_dim is None else np.abs(_r(b, t, hkv if beta_dim == "head" else 1))
    inputs = [q, k, v, _r(b, hkv, d_k, d_v), decay, beta]
    attrs = {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule}
    _check_against_reference("LinearAttention", inputs, attrs, atol=1e-5)


def test_linear_attention_explicit_scale_and_half_precision():
    q, k, v = (a.astype(np.float16) for a in _qkv(1, 3, 2, 2, 4, 4))
    decay, beta = -np.abs(_r(1, 3, 2)).astype(np.float16), np.abs(_r(1, 3, 2)).astype(np.float16)
    attrs = {"q_num_heads": 2, "kv_num_heads": 2, "scale": 0.3}
    # Both sides compute in float32 and round once to float16: within one float16 ulp.
    _check_against_reference("LinearAttention", [q, k, v, None, decay, beta], attrs, atol=2e-3, rtol=2e-3)


def test_linear_attention_one_token_by_hand():
    """T=1 from a zero state, linear rule: o = scale (q . k) v per head."""
    q = np.array([[[1.0, 2.0]]], np.float32)
    k = np.array([[[3.0, -1.0]]], np.float32)
    v = np.array([[[0.5, 4.0]]], np.float32)
    _, _, (out, state) = _run(
        "LinearAttention", [q, k, v], {"q_num_heads": 1, "kv_num_heads": 1, "update_rule": "linear"}
    )
    # q . k = 1; scale = 1/sqrt(2); state = k (x) v.
    np.testing.assert_allclose(out, [[[0.5 / np.sqrt(2), 4.0 / np.sqrt(2)]]], rtol=1e-6)
    np.testing.assert_allclose(state, [[[[1.5, 12.0], [-0.5, -4.0]]]], rtol=1e-6)


def test_linear_attention_prefill_then_decode_equals_one_pass():
    """The carried state is the whole history: two calls chained equal one call over both."""
    b, t, h, d = 1, 6, 2, 3
    q, k, v = _qkv(b, t, h, h, d, d)
    decay, beta = -np.abs(_r(b, t, h)), np.abs(_r(b, t, h))
    attrs = {"q_num_heads": h, "kv_num_heads": h}
    _, _, (whole, final) = _run("LinearAttention", [q, k, v, None, decay, beta], attrs)
    part = [a[:, :4] for a in (q, k, v)]
    _, _, (first, state) = _run("LinearAttention", [*part, None, decay[:, :4], beta[:, :4]], attrs)
    rest = [a[:, 4:] for a in (q, k, v)]
    _, _, (second, final2) = _run("LinearAttention", [*rest, state, decay[:, 4:], beta[:, 4:]], attrs)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-6)
    np.testing.assert_allclose(final2, final, atol=1e-6)


@pytest.mark.parametrize("activation", ["none", "silu", "swish"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_past", [False, True])
@pytest.mark.parametrize(("length", "k"), [(7, 4), (2, 5), (5, 1)])
def test_causal_conv_matches_reference(activation, with_bias, with_past, length, k):
    b, c = 2, 3
    inputs = [
        _r(b, c, length),
        _r(c, 1, k),
        _r(c) if with_bias else None,
        _r(b, c, k - 1) if with_past else None,
    ]
    _check_against_reference("CausalConvWithState", inputs, {"activation": activation}, atol=1e-6)


def test_causal_conv_half_precision():
    inputs = [_r(1, 2, 6).astype(np.float16), _r(2, 1, 3).astype(np.float16)]
    _check_against_reference("CausalConvWithState", inputs, {"activation": "silu"}, atol=2e-3, rtol=2e-3)


def test_causal_conv_by_hand():
    """A kernel [1, 0, 0] reads the position two steps back: the past state, then the input."""
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
    w = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    past = np.array([[[-1.0, -2.0]]], np.float32)
    _, _, (out, state) = _run("CausalConvWithState", [x, w, np.array([0.5], np.float32), past], {})
    np.testing.assert_array_equal(out, [[[-0.5, -1.5, 1.5, 2.5]]])
    np.testing.assert_array_equal(state, [[[3.0, 4.0]]])
