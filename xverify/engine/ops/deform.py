"""Kernels: DeformConv (deformable convolution, 2-D): each kernel tap reads the input at its place
plus a learned offset, bilinearly interpolated (zero outside the image), times an optional mask,
then the taps are contracted with the weights as in Conv's im2col."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


def _sample(x, y, xx):
    """x (N, C, H, W) at the points (y, xx), each (N, oH, oW): (N, C, oH, oW); corners outside
    the image read 0, points a full pixel outside read 0."""
    n, _, h, w = x.shape
    y0, x0 = np.floor(y).astype(np.int64), np.floor(xx).astype(np.int64)
    ly, lx = y - y0, xx - x0
    batch = np.arange(n)[:, None, None]
    out = 0.0
    for dy, dx, weight in (
        (0, 0, (1 - ly) * (1 - lx)),
        (0, 1, (1 - ly) * lx),
        (1, 0, ly * (1 - lx)),
        (1, 1, ly * lx),
    ):
        yi, xi = y0 + dy, x0 + dx
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        value = x[batch, :, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]  # (N, oH, oW, C)
        out = out + np.moveaxis(value, -1, 1) * np.where(inside, weight, 0)[:, None]
    return out


@op(
    "DeformConv",
    attributes=("dilations", "group", "kernel_shape", "offset_group", "pads", "strides"),
    notes="2-D; offsets (dy, dx) per tap and offset group; optional mask",
)
def deform_conv(
    x,
    w,
    offset,
    b=None,
    mask=None,
    dilations=None,
    group=1,
    kernel_shape=None,
    offset_group=1,
    pads=None,
    strides=None,
):
    if x.ndim != 4:
        raise UnsupportedOpError(
            f"DeformConv: a {x.ndim - 2}-D input is not supported; supported: 2-D (N, C, H, W)"
        )
    n, c = x.shape[:2]
    kh, kw = kernel_shape or w.shape[2:]
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    top, left = (pads or (0, 0, 0, 0))[:2]
    oh, ow = offset.shape[2:]
    taps = kh * kw
    base_y = (np.arange(oh) * sh - top)[None, :, None].astype(np.float64)
    base_x = (np.arange(ow) * sw - left)[None, None, :].astype(np.float64)
    per_group = c // offset_group
    cols = np.zeros((n, c, taps, oh, ow))
    wide = x.astype(np.float64)
    for g in range(offset_group):
        for t in range(taps):
            i, j = divmod(t, kw)
            dy, dx = offset[:, 2 * (g * taps + t)], offset[:, 2 * (g * taps + t) + 1]
            value = _sample(
                wide[:, g * per_group : (g + 1) * per_group], base_y + i * dh + dy, base_x + j * dw + dx
            )
            if mask is not None:
                value = value * mask[:, g * taps + t][:, None]
            cols[:, g * per_group : (g + 1) * per_group, t] = value
    m, cg = w.shape[0], c // group
    cols = cols.reshape(n, group, cg * taps, oh * ow)
    weights = w.reshape(group, m // group, cg * taps).astype(np.float64)
    y = np.einsum("gmk,ngkp->ngmp", weights, cols).reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)
