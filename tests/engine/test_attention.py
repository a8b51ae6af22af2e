"""Attention and RotaryEmbedding against ONNX Runtime: 3-D and 4-D inputs, grouped heads, past
key/value, bool and float masks, causal masking with a cache offset, softcap, qk output modes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.opcheck import check_op, check_reference_op

rng = np.random.default_rng(0)


def _r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_4d_with_past_and_float_mask(mode, causal):
    q, k, v = _r(2, 4, 3, 8), _r(2, 2, 3, 8), _r(2, 2, 3, 8)
    past_k, past_v = _r(2, 2, 4, 8), _r(2, 2, 4, 8)
    mask = _r(3, 7)
    if mode == 2 and causal:
        # Masked positions of the scores: -inf in ONNX's reference and node tests, the lowest
        # float in ONNX Runtime (microsoft/onnxruntime#25966): the engine follows the node tests.
        (_, _, _, scores) = check_reference_op(
            "Attention",
            [q, k, v, mask, past_k, past_v],
            {"is_causal": causal, "qk_matmul_output_mode": mode},
            n_outputs=4,
            opset=23,
            atol=1e-4,
        )
        assert np.isneginf(scores).sum() == 2 * 4 * sum(range(3))  # keys after each query
        return
    check_op(
        "Attention",
        [q, k, v, mask, past_k, past_v],
        {"is_causal": causal, "qk_matmul_output_mode": mode, "softcap": 2.5},
        n_outputs=4,
        opset=23,
        atol=1e-4,
    )


@pytest.mark.parametrize("opset", [23, 24])
def test_attention_3d_heads_and_scale(opset):
    q, k, v = _r(2, 3, 12), _r(2, 5, 6), _r(2, 5, 9)
    check_op(
        "Attention", [q, k, v], {"q_num_heads": 6, "kv_num_heads": 3, "scale": 0.3}, opset=opset, atol=1e-4
    )


def test_rotary_embedding_4d_interleaved_partial():
    x = _r(2, 3, 5, 8)
    cos, sin = _r(6, 2), _r(6, 2)
    ids = np.array([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]], np.int64)
    check_op(
        "RotaryEmbedding",
        [x, cos, sin, ids],
        {"interleaved": 1, "rotary_embedding_dim": 4},
        opset=23,
        atol=1e-5,
    )
