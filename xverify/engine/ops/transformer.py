"""Kernels: the transformer building blocks ONNX added as ops (RotaryEmbedding)."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


@op("RotaryEmbedding", attributes=("interleaved", "num_heads", "rotary_embedding_dim"),
    notes="3-D (num_heads given) or 4-D input; halves or interleaved pairs; partial rotation")
def rotary_embedding(x, cos_cache, sin_cache, position_ids=None, interleaved=0, num_heads=0,
                     rotary_embedding_dim=0):
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
