"""Kernels: the transformer building blocks ONNX added as ops (RotaryEmbedding, Attention)."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


@op(
    "RotaryEmbedding",
    attributes=("interleaved", "num_heads", "rotary_embedding_dim"),
    notes="3-D (num_heads given) or 4-D input; halves or interleaved pairs; partial rotation",
)
def rotary_embedding(
    x, cos_cache, sin_cache, position_ids=None, interleaved=0, num_heads=0, rotary_embedding_dim=0
):
    """Rotates pairs (x1, x2) of each head's first ``rotary_embedding_dim`` features by the angle
    of the token's position: (x1 cos - x2 sin, x1 sin + x2 cos)."""
    shape = x.shape
    if x.ndim == 4:  # (batch, heads, seq, head) -> (batch, seq, heads, head)
        heads = np.transpose(x, (0, 2, 1, 3))
    else:
        heads = x.reshape(shape[0], shape[1], num_heads, -1)
    dim = rotary_embedding_dim or heads.shape[-1]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    cos, sin = cos_cache[..., None, :], sin_cache[..., None, :]  # (batch, seq, 1, dim / 2)
    rotated = heads[..., :dim]
    x1, x2 = (rotated[..., 0::2], rotated[..., 1::2]) if interleaved else np.split(rotated, 2, -1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:
        rotated = np.stack([real, imag], axis=-1).reshape(rotated.shape)
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    out = np.concatenate([rotated, heads[..., dim:]], axis=-1).astype(x.dtype, copy=False)
    return np.transpose(out, (0, 2, 1, 3)) if x.ndim == 4 else out.reshape(shape)


def _heads(t, n_heads):
    """(batch, seq, heads * size) -> (batch, heads, seq, size)."""
    b, s, _ = t.shape
    return t.reshape(b, s, n_heads, -1).transpose(0, 2, 1, 3)


def _allowed(q_len, k_len, offsets, is_causal, left, right, nonpad):
    """(batch or 1, 1, q_len, k_len) booleans: which keys each query may attend. ``offsets``
    (batch or 1,): the number of valid keys before the query block."""
    i = np.arange(q_len)[None, :, None] + offsets[:, None, None]  # absolute query positions
    j = np.arange(k_len)[None, None, :]
    ok = np.ones((len(offsets), q_len, k_len), bool)
    if is_causal:
        ok &= j <= i
    if left >= 0:
        ok &= j >= i - left
    if right >= 0:
        ok &= j <= i + right
    if nonpad is not None:
        ok &= j < np.asarray(nonpad).reshape(-1, 1, 1)
    return ok[:, None]


def _softmax_rows(scores, dtype):
    """Softmax over the last axis in ``dtype``; a row with no allowed key (all -inf) gives 0s."""
    s = scores.astype(dtype, copy=False)
    top = np.max(s, axis=-1, keepdims=True)
    empty = ~np.isfinite(top) & (top < 0)
    e = np.exp(s - np.where(empty, 0, top))
    total = np.sum(e, axis=-1, keepdims=True)
    return np.where(empty, 0, e / np.where(empty, 1, total))


@op(
    "Attention",
    context=True,
    since=23,
    attributes=(
        "is_causal",
        "kv_num_heads",
        "q_num_heads",
        "qk_matmul_output_mode",
        "scale",
        "softcap",
        "softmax_precision",
        "left_window_size",
        "right_window_size",
    ),
    notes="3-D or 4-D; GQA/MQA; bool or float mask; causal (bottom-right); past key/value; "
    "nonpad_kv_seqlen; softcap; sliding windows",
)
def attention(
    q,
    k,
    v,
    attn_mask=None,
    past_key=None,
    past_value=None,
    nonpad_kv_seqlen=None,
    *,
    is_causal=0,
    kv_num_heads=None,
    q_num_heads=None,
    qk_matmul_output_mode=0,
    scale=None,
    softcap=0.0,
    softmax_precision=None,
    left_window_size=-1,
    right_window_size=-1,
    ctx,
):
    rank3 = q.ndim == 3
    if rank3:
        q, k, v = _heads(q, q_num_heads), _heads(k, kv_num_heads), _heads(v, kv_num_heads)
    if past_key is not None:
        k, v = np.concatenate([past_key, k], axis=2), np.concatenate([past_value, v], axis=2)
    present_k, present_v = k, v
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    factor = np.sqrt(q.dtype.type(1 / np.sqrt(q.shape[-1]) if scale is None else scale))
    qk = np.matmul(q * factor, np.swapaxes(k * factor, -1, -2))
    outputs = {0: qk}
    if softcap:
        qk = softcap * np.tanh(qk / softcap)
    outputs[1] = qk
    q_len, k_len = qk.shape[-2:]
    past = 0 if past_key is None else past_key.shape[2]
    offsets = (
        np.asarray(nonpad_kv_seqlen).reshape(-1) - q_len
        if nonpad_kv_seqlen is not None and past_key is None
        else np.array([past])
    )
    bias = np.where(
        _allowed(q_len, k_len, offsets, is_causal, left_window_size, right_window_size, nonpad_kv_seqlen),
        0,
        -np.inf,
    )
    if attn_mask is not None:
        mask = attn_mask
        if mask.shape[-1] < k_len:  # a shorter mask is padded with -inf (disallowed)
            pad = [(0, 0)] * (mask.ndim - 1) + [(0, k_len - mask.shape[-1])]
            mask = np.pad(mask, pad, constant_values=False if mask.dtype == bool else -np.inf)
        bias = bias + (np.where(mask, 0, -np.inf) if mask.dtype == bool else mask)
    scores = qk + bias.astype(qk.dtype)
    # Mode 2's output holds -inf at disallowed positions, as ONNX's reference and node tests
    # (test_attention_4d_with_past_and_present_qk_matmul_bias_*_mask_causal) have it since
    # onnx/onnx#7274; ONNX Runtime 1.32's CPU kernel still writes the lowest finite float there
    # (microsoft/onnxruntime#25966, open, would follow ONNX). The node tests are the judge.
    outputs[2] = scores
    precision = qk.dtype if softmax_precision is None else ctx.np_dtype(softmax_precision)
    probs = _softmax_rows(scores, precision).astype(qk.dtype)
    outputs[3] = probs
    y = np.matmul(probs, v)
    if rank3:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return y.astype(q.dtype, copy=False), present_k, present_v, outputs[qk_matmul_output_mode]
