"""Kernels: the normalizations older CNNs and newer vision models use (LRN, MeanVarianceNormalization,
GroupNormalization) and Shrink. Statistics are computed as mean((x - mean)^2), which equals ONNX's
E[x^2] - E[x]^2 in exact arithmetic and does not cancel in floating point.
"""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


@op("LRN", attributes=("alpha", "beta", "bias", "size"), notes="across channels (axis 1), any rank >= 3")
def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    """y = x / (bias + alpha / size * sum of x^2 over the channels c - (size-1)//2 .. c + size//2)."""
    channels = x.shape[1]
    square = x.astype(np.promote_types(x.dtype, np.float32)) ** 2
    # A running sum over the channel axis, padded so each window is a difference of two sums.
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    cumulative = np.cumsum(square, axis=1)
    zero = np.zeros_like(cumulative[:, :1])
    cumulative = np.concatenate([zero, cumulative], axis=1)
    c = np.arange(channels)
    top = np.minimum(c + hi + 1, channels)
    bottom = np.maximum(c - lo, 0)
    window = np.take(cumulative, top, axis=1) - np.take(cumulative, bottom, axis=1)
    return (x / (bias + alpha / size * window) ** beta).astype(x.dtype, copy=False)


@op(
    "MeanVarianceNormalization",
    attributes=("axes",),
    notes="(x - mean) / (std + 1e-9) over `axes` (default 0, 2, 3)",
)
def mean_variance_normalization(x, axes=(0, 2, 3)):
    axes = tuple(a % x.ndim for a in axes)
    centered = x - np.mean(x, axis=axes, keepdims=True)
    std = np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True))
    return (centered / (std + 1e-9)).astype(x.dtype, copy=False)


def _group_normalized(x, num_groups, epsilon):
    """x (N, C, ...) normalized over each group of C / num_groups channels and all other axes."""
    n, _c = x.shape[:2]
    wide = x.astype(np.promote_types(x.dtype, np.float32)).reshape(n, num_groups, -1)
    centered = wide - np.mean(wide, axis=2, keepdims=True)
    var = np.mean(centered * centered, axis=2, keepdims=True)
    return (centered / np.sqrt(var + epsilon)).reshape(x.shape)


def _per_channel(v, ndim):
    return np.asarray(v).reshape((-1,) + (1,) * (ndim - 2))


@op(
    "GroupNormalization",
    attributes=("epsilon", "num_groups", "stash_type"),
    since=21,
    notes="scale and bias per channel",
)
def group_normalization(x, scale, bias, epsilon=1e-5, num_groups=1, stash_type=1):
    y = _group_normalized(x, num_groups, epsilon)
    y = y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype, copy=False)


@op(
    "GroupNormalization",
    attributes=("epsilon", "num_groups"),
    since=18,
    until=20,
    notes="scale and bias per group (opset 18's form)",
)
def group_normalization_18(x, scale, bias, epsilon=1e-5, num_groups=1):
    per_channel = x.shape[1] // num_groups
    return group_normalization(
        x, np.repeat(scale, per_channel), np.repeat(bias, per_channel), epsilon, num_groups
    )


@op("Shrink", attributes=("bias", "lambd"))
def shrink(x, bias=0.0, lambd=0.5):
    y = np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))
    return y.astype(x.dtype, copy=False)


@op(
    "RMSNormalization",
    attributes=("axis", "epsilon", "stash_type"),
    notes="statistics in at least float32 (stash_type=1)",
)
def rms_normalization(x, scale, axis=-1, epsilon=1e-5, stash_type=1):
    axes = tuple(range(axis % x.ndim, x.ndim))
    wide = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    rms = np.sqrt(np.mean(wide * wide, axis=axes, keepdims=True) + epsilon)
    return (wide / rms * scale).astype(x.dtype, copy=False)
