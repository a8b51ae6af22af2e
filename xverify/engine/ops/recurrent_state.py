"""Kernels: the stateful sequence ops ONNX added in opset 27 for linear-attention and state-space
models (Gated DeltaNet, Mamba): LinearAttention and CausalConvWithState.

Both carry a state from one call to the next (``past_state`` in, ``present_state`` out), so a
decoder can run a prompt at once (prefill) and then one token at a time with the same numbers.
Half-precision inputs are computed in float32 and rounded once at the end, as ONNX's reference
does; float32 stays float32 and the float64 oracle stays float64.
"""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op

_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")
_ACTIVATIONS = ("none", "silu", "swish")


def _working(dtype: np.dtype) -> type:
    """The dtype the recurrence runs in: float64 for the oracle, else float32 (also for float16
    and bfloat16, whose sums over a head would lose too much)."""
    return np.float64 if dtype == np.float64 else np.float32


def _per_head(t: np.ndarray, heads: int, work) -> np.ndarray:
    """(batch, seq, heads * size) -> (batch, heads, seq, size) in ``work``."""
    b, s, _ = t.shape
    return t.reshape(b, s, heads, -1).transpose(0, 2, 1, 3).astype(work, copy=False)


def _check_rule(update_rule: str, decay, beta) -> tuple[bool, bool]:
    """Whether the rule gates (needs decay) and corrects by delta (needs beta); a bad combination
    is an invalid model, so it raises ValueError (as ONNX's checker would), not a refusal."""
    if update_rule not in _UPDATE_RULES:
        raise ValueError(f"LinearAttention: update_rule={update_rule!r}; expected one of {_UPDATE_RULES}")
    gated, delta = update_rule in ("gated", "gated_delta"), update_rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise ValueError(
            f"LinearAttention: update_rule={update_rule!r} needs decay {'given' if gated else 'omitted'} "
            f"and beta {'given' if delta else 'omitted'}"
        )
    return gated, delta


@op(
    "LinearAttention",
    since=27,
    attributes=("chunk_size", "kv_num_heads", "q_num_heads", "scale", "update_rule"),
    notes="update_rule linear|gated|delta|gated_delta; GQA/MQA; per-head or per-key-dim decay; "
    "chunk_size is a tuning hint (ignored): the recurrence runs token by token",
)
def linear_attention(
    query,
    key,
    value,
    past_state=None,
    decay=None,
    beta=None,
    *,
    kv_num_heads,
    q_num_heads,
    chunk_size=64,
    scale=0.0,
    update_rule="gated_delta",
):
    """S_t = exp(g_t) S_{t-1} + k_t (x) beta_t (v_t - (exp(g_t) S_{t-1})^T k_t); o_t = scale q_t^T S_t,
    with the gate and the delta correction present as ``update_rule`` says.

    Returns:
        output (batch, seq, q_num_heads * d_v) in the query's dtype, and present_state
        (batch, kv_num_heads, d_k, d_v) in the past state's dtype (the query's when omitted).
    """
    gated, delta = _check_rule(update_rule, decay, beta)
    work = _working(query.dtype)
    b, t, _ = query.shape
    group = q_num_heads // kv_num_heads
    # Query heads h*group .. h*group+group-1 read KV head h: (batch, kv heads, group, seq, d_k).
    q = _per_head(query, q_num_heads, work).reshape(b, kv_num_heads, group, t, -1)
    k, v = _per_head(key, kv_num_heads, work), _per_head(value, kv_num_heads, work)
    d_k, d_v = k.shape[-1], v.shape[-1]
    if gated:  # per head (last dim kv_num_heads) or per key dim: (batch, kv heads, seq, 1 or d_k, 1)
        gate = np.exp(_per_head(decay, kv_num_heads, work))[..., None]
    if delta:  # last dim kv_num_heads, or 1 shared by all heads: (batch, kv heads or 1, seq, 1)
        rate = _per_head(beta, beta.shape[-1], work)
    if past_state is None:
        state, state_dtype = np.zeros((b, kv_num_heads, d_k, d_v), work), query.dtype
    else:
        state, state_dtype = past_state.astype(work), past_state.dtype
    factor = work(scale) if scale else work(1 / np.sqrt(d_k))
    out = np.empty((b, kv_num_heads, group, t, d_v), work)
    for i in range(t):
        if gated:
            state = state * gate[:, :, i]
        k_i, v_i = k[:, :, i], v[:, :, i]
        if delta:
            retrieved = np.einsum("bhdm,bhd->bhm", state, k_i)
            v_i = rate[:, :, i] * (v_i - retrieved)
        state = state + k_i[..., :, None] * v_i[..., None, :]
        out[:, :, :, i] = factor * np.einsum("bhgd,bhdm->bhgm", q[:, :, :, i], state)
    # (batch, kv heads, group, seq, d_v) -> (batch, seq, q heads * d_v)
    output = out.reshape(b, q_num_heads, t, d_v).transpose(0, 2, 1, 3).reshape(b, t, -1)
    return output.astype(query.dtype), state.astype(state_dtype)


@op(
    "CausalConvWithState",
    since=27,
    attributes=("activation",),
    notes="depthwise causal 1-D conv, weight (channels, 1, k); activation none|silu|swish",
)
def causal_conv_with_state(x, weight, bias=None, past_state=None, *, activation="none"):
    """Each channel convolved with its own kernel over its last k-1 past positions and the input:
    out[b, c, t] = bias[c] + sum_j weight[c, 0, j] * padded[b, c, t + j], where ``padded`` is the
    past state (zeros when omitted) followed by the input.

    Returns:
        output (batch, channels, length), then SiLU when asked; present_state: the last k-1
        positions of ``padded`` (batch, channels, k - 1).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"CausalConvWithState: activation={activation!r}; expected one of {_ACTIVATIONS}")
    b, c, _ = x.shape
    k = weight.shape[-1]
    past = np.zeros((b, c, k - 1), x.dtype) if past_state is None else past_state.astype(x.dtype)
    padded = np.concatenate([past, x], axis=2)
    work = _working(x.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(padded.astype(work, copy=False), k, axis=2)
    y = np.einsum("bclk,ck->bcl", windows, weight[:, 0, :].astype(work, copy=False))
    if bias is not None:
        y += bias.astype(work, copy=False)[:, None]
    # The convolution's result is a tensor of the op's type before the activation reads it.
    y = y.astype(x.dtype)
    if activation != "none":
        z = y.astype(work)
        with np.errstate(over="ignore"):  # exp(-z) -> inf for very negative z: the limit 0
            y = (z / (1 + np.exp(-z))).astype(x.dtype)
    return y, padded[:, :, padded.shape[2] - (k - 1) :]
