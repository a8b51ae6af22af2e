"""Kernels: GridSample (spatial transformers, optical flow warps), N-d and separable; AffineGrid;
Col2Im.

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

_MODES = {
    "bilinear": "linear",
    "bicubic": "cubic",
    "linear": "linear",
    "cubic": "cubic",
    "nearest": "nearest",
}


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
    return np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)


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


@op(
    "GridSample",
    attributes=("align_corners", "mode", "padding_mode"),
    notes="N-d; mode nearest|linear|cubic (bilinear|bicubic before opset 20); "
    "padding_mode zeros|border|reflection",
)
def grid_sample(x, grid, align_corners=0, mode="linear", padding_mode="zeros"):
    if mode not in _MODES or padding_mode not in ("zeros", "border", "reflection"):
        raise UnsupportedOpError(
            f"GridSample: mode={mode!r}, padding_mode={padding_mode!r} are not "
            "supported; supported: nearest|linear|cubic, zeros|border|reflection"
        )
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


def _linspace(n, align_corners):
    """n positions spanning [-1, 1]: corner pixel centers (align_corners) or their outer edges."""
    if align_corners:
        return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return (2 * np.arange(n) + 1) / n - 1


@op("AffineGrid", attributes=("align_corners",), notes="2-D (theta N,2,3) and 3-D (N,3,4)")
def affine_grid(theta, size, align_corners=0):
    spatial = [int(v) for v in np.asarray(size).reshape(-1)[2:]]
    axes = [_linspace(n, align_corners) for n in spatial]  # (D,) H, W
    mesh = np.meshgrid(*axes, indexing="ij")
    # Homogeneous positions (x, y[, z], 1): x runs along the last axis.
    base = np.stack(list(mesh[::-1]) + [np.ones_like(mesh[0])], axis=-1)
    grid = np.einsum("...k,nik->n...i", base, theta.astype(np.float64))
    return grid.astype(theta.dtype)


@op(
    "Col2Im",
    attributes=("dilations", "pads", "strides"),
    notes="N-d; sums the overlapping blocks (PyTorch's fold)",
)
def col2im(x, image_shape, block_shape, dilations=None, pads=None, strides=None):
    image = [int(v) for v in np.asarray(image_shape).reshape(-1)]
    block = [int(v) for v in np.asarray(block_shape).reshape(-1)]
    r = len(image)
    dilations, strides = dilations or [1] * r, strides or [1] * r
    pads = pads or [0] * (2 * r)
    padded = [n + pads[i] + pads[i + r] for i, n in enumerate(image)]
    counts = [(p - d * (k - 1) - 1) // s + 1 for p, k, d, s in zip(padded, block, dilations, strides)]
    n, c = x.shape[0], x.shape[1] // int(np.prod(block))
    cols = x.reshape([n, c] + block + counts)
    out = np.zeros([n, c] + padded, dtype=x.dtype)
    for offsets in itertools.product(*(range(k) for k in block)):
        window = tuple(
            slice(o * d, o * d + (m - 1) * s + 1, s)
            for o, d, m, s in zip(offsets, dilations, counts, strides)
        )
        out[(slice(None), slice(None)) + window] += cols[(slice(None), slice(None)) + offsets]
    crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(r))
    return out[(slice(None), slice(None)) + crop]
