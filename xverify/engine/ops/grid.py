"""Kernels: GridSample (spatial transformers, optical flow warps), N-d and separable.

Each spatial axis gets, per output position, tap indices and weights (1 nearest, 2 linear,
4 cubic), computed from the grid's normalized coordinate in float64; the output sums the input at
every combination of taps. Padding follows ONNX (and PyTorch): for nearest and linear the source
coordinate is clamped (border) or reflected (reflection) before the taps are taken; for cubic each
tap is; with zeros, taps outside the input read 0.
"""

from __future__ import annotations

import itertools

import numpy as np

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

_MODES = {"bilinear": "linear", "bicubic": "cubic", "linear": "linear", "cubic": "cubic",
          "nearest": "nearest"}


def _reflect(pos, size, align_corners):
    low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    span = high - low
    if span <= 0:
        return np.zeros_like(pos)
    dist = np.abs(pos - low)
    flips, extra = np.floor(dist / span), np.fmod(dist, span)
    return np.clip(np.where(flips % 2 == 0, low + extra, high - extra), 0, size - 1)


def _pad(pos, size, padding_mode, align_corners):
    if padding_mode == "border":
        return np.clip(pos, 0, size - 1)
    if padding_mode == "reflection":
        return _reflect(pos, size, align_corners)
    return pos


def _cubic(s, a=-0.75):
    d = np.stack([s + 1, s, 1 - s, 2 - s], axis=-1)
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                    ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)


def _axis_taps(pos, size, mode, padding_mode, align_corners):
    """(indices, weights), each (..., taps), along one axis of size ``size``."""
    if mode != "cubic":
        pos = _pad(pos, size, padding_mode, align_corners)
    if mode == "nearest":
        idx, w = np.rint(pos)[..., None], np.ones(pos.shape + (1,))
    elif mode == "linear":
        i0 = np.floor(pos)
        idx = np.stack([i0, i0 + 1], axis=-1)
        w = np.stack([1 - (pos - i0), pos - i0], axis=-1)
    else:
        i0 = np.floor(pos)
        idx, w = i0[..., None] + np.arange(-1, 3), _cubic(pos - i0)
        if padding_mode != "zeros":
            idx = _pad(idx, size, padding_mode, align_corners)
            idx = np.rint(idx) if padding_mode == "reflection" else idx
    inside = (idx >= 0) & (idx <= size - 1)
    return np.clip(idx, 0, size - 1).astype(np.int64), np.where(inside, w, 0.0)


@op("GridSample", attributes=("align_corners", "mode", "padding_mode"),
    notes="N-d; mode nearest|linear|cubic (bilinear|bicubic before opset 20); "
          "padding_mode zeros|border|reflection")
def grid_sample(x, grid, align_corners=0, mode="linear", padding_mode="zeros"):
    if mode not in _MODES or padding_mode not in ("zeros", "border", "reflection"):
        raise UnsupportedOpError(f"GridSample: mode={mode!r}, padding_mode={padding_mode!r} are not "
                                 "supported; supported: nearest|linear|cubic, zeros|border|reflection")
    mode, spatial = _MODES[mode], x.shape[2:]
    rank, grid = len(spatial), grid.astype(np.float64)
    taps = []
    for d, size in enumerate(spatial):  # the grid's last coordinate is the first spatial axis
        g = grid[..., rank - 1 - d]
        pos = (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2
        taps.append(_axis_taps(pos, size, mode, padding_mode, align_corners))
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    out = np.zeros(grid.shape[:-1] + (x.shape[1],))
    for combo in itertools.product(*(range(idx.shape[-1]) for idx, _ in taps)):
        weight = np.prod([w[..., k] for (_, w), k in zip(taps, combo)], axis=0)
        index = tuple(idx[..., k] for (idx, _), k in zip(taps, combo))
        out += weight[..., None] * x[(batch, slice(None)) + index]  # (N, *out, C)
    return np.moveaxis(out, -1, 1).astype(x.dtype, copy=False)
