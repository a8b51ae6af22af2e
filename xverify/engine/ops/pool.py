"""Kernels: MaxPool, AveragePool, LpPool and their Global forms (1D/2D/3D).

A pool is a reduction over the kernel taps: for each tap, the strided slice of the padded input that
sits under that tap for every output pixel is folded into an accumulator (``maximum`` or ``+``).
That is ``prod(kernel_shape)`` vectorized steps and no per-pixel Python.

Output sizes and the ``ceil_mode`` rule (a window may not start in the end padding) follow ONNX
Runtime. Extra end padding that ``ceil_mode`` needs never counts as a pad for AveragePool.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from xverify.engine.ops.conv import pad_spatial, resolve_pads, tap_slice
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

_POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


def _geometry(op_type, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """Strides, dilations, begin/end pads, ceil_mode's extra end pads and the output shape."""
    n = x.ndim - 2
    if kernel_shape is None or len(kernel_shape) != n:
        raise UnsupportedOpError(
            f"{op_type}: kernel_shape={kernel_shape} must give one size per "
            f"spatial axis of the rank-{x.ndim} input"
        )
    strides = list(strides or [1] * n)
    dilations = list(dilations or [1] * n)
    begin, end = resolve_pads(op_type, auto_pad, x.shape[2:], kernel_shape, strides, dilations, pads)
    out, extra = [], []
    for size, b, e, k, s, d in zip(x.shape[2:], begin, end, kernel_shape, strides, dilations):
        span = (k - 1) * d + 1
        room = size + b + e - span
        o = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (o - 1) * s >= size + b:  # that window would start in the end padding
            o -= 1
        out.append(o)
        extra.append(max(0, (o - 1) * s + span - (size + b + e)))
    return strides, dilations, begin, end, extra, out


def _taps(kernel_shape):
    return itertools.product(*(range(k) for k in kernel_shape))


def _fold(xp, kernel_shape, strides, dilations, out, ufunc):
    """Fold every tap's slice of ``xp`` into one accumulator with ``ufunc`` (in place)."""
    acc = None
    for tap in _taps(kernel_shape):
        src = xp[tap_slice(tap, strides, dilations, out)]
        if acc is None:
            acc = src.copy()
        else:
            ufunc(acc, src, out=acc)
    return acc


def _fold_separable(xp, kernel_shape, strides, dilations, out, ufunc):
    """``_fold`` one spatial axis at a time, for an associative, exact ``ufunc`` (maximum).

    A k x k window then costs about 2(k - 1) passes instead of k^2, and the first axis' slices
    read whole contiguous rows instead of gathering with the stride.
    """
    acc = xp
    for axis, (k, s, d, o) in enumerate(zip(kernel_shape, strides, dilations, out), start=2):
        lead = (slice(None),) * axis
        parts = [acc[lead + (slice(t * d, t * d + (o - 1) * s + 1, s),)] for t in range(k)]
        if k == 1:
            acc = parts[0]
            continue
        folded = ufunc(parts[0], parts[1])
        for part in parts[2:]:
            ufunc(folded, part, out=folded)
        acc = folded
    return acc if acc is not xp else acc.copy()


def _lowest(dtype):
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


@op(
    "MaxPool",
    context=True,
    attributes=_POOL_ATTRS + ("storage_order",),
    notes="1D/2D/3D; Indices output supported (storage_order 0 and 1)",
)
def max_pool(
    x,
    *,
    kernel_shape=None,
    strides=None,
    dilations=None,
    pads=None,
    auto_pad="NOTSET",
    ceil_mode=0,
    storage_order=0,
    ctx,
):
    """Max over each window; padding never wins (it is the dtype's lowest value)."""
    strides, dilations, begin, end, extra, out = _geometry(
        "MaxPool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xp = pad_spatial(x, begin, [e + x0 for e, x0 in zip(end, extra)], _lowest(x.dtype))
    want_indices = len(ctx.node.output) > 1 and ctx.node.output[1]
    if not want_indices:
        return np.ascontiguousarray(_fold_separable(xp, kernel_shape, strides, dilations, out, np.maximum))
    return _max_pool_indices(x, xp, kernel_shape, strides, dilations, begin, out, storage_order)


def _max_pool_indices(x, xp, kernel_shape, strides, dilations, begin, out, storage_order):
    """MaxPool with the flat (N, C, spatial...) index of each maximum; the first maximum wins."""
    if storage_order not in (0, 1):
        raise UnsupportedOpError(f"MaxPool: storage_order={storage_order}; supported: 0, 1")
    spatial = x.shape[2:]
    # Flat-index weight of each spatial axis: row-major, or column-major for storage_order=1.
    order = range(len(spatial)) if storage_order == 0 else reversed(range(len(spatial)))
    weight, step = [0] * len(spatial), 1
    for axis in reversed(list(order)):
        weight[axis], step = step, step * spatial[axis]
    grids = np.meshgrid(*(np.arange(o) * s - b for o, s, b in zip(out, strides, begin)), indexing="ij")
    acc = idx = None
    for tap in _taps(kernel_shape):
        src = xp[tap_slice(tap, strides, dilations, out)]
        flat = sum((g + t * d) * w for g, t, d, w in zip(grids, tap, dilations, weight))
        if acc is None:
            acc, idx = src.copy(), np.broadcast_to(flat, src.shape).astype(np.int64)
        else:
            better = src > acc
            np.copyto(acc, src, where=better)
            np.copyto(idx, np.broadcast_to(flat, src.shape), where=better)
    plane = math.prod(spatial)
    idx += (np.arange(x.shape[0] * x.shape[1]) * plane).reshape(x.shape[:2] + (1,) * len(spatial))
    return acc, idx


@op(
    "AveragePool",
    attributes=_POOL_ATTRS + ("count_include_pad",),
    notes="1D/2D/3D; count_include_pad counts explicit/auto pads, never ceil_mode's extra end",
)
def average_pool(
    x,
    *,
    kernel_shape=None,
    strides=None,
    dilations=None,
    pads=None,
    auto_pad="NOTSET",
    ceil_mode=0,
    count_include_pad=0,
):
    """Window sum divided by the number of input (or, with count_include_pad, padded) pixels."""
    strides, dilations, begin, end, extra, out = _geometry(
        "AveragePool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xp = pad_spatial(x, begin, [e + x0 for e, x0 in zip(end, extra)], 0)
    total = _fold(xp, kernel_shape, strides, dilations, out, np.add)
    # The divisor is separable: per axis, count the counted positions under each window.
    divisor = np.ones((), dtype=np.float64)
    for size, b, e, x0, k, s, d, o in zip(
        x.shape[2:], begin, end, extra, kernel_shape, strides, dilations, out
    ):
        counted = np.zeros(b + size + e + x0)
        counted[slice(0, b + size + e) if count_include_pad else slice(b, b + size)] = 1
        per_window = sum(counted[t * d : t * d + (o - 1) * s + 1 : s] for t in range(k))
        divisor = np.multiply.outer(divisor, per_window)
    return (total / divisor.astype(x.dtype)).astype(x.dtype, copy=False)


@op("LpPool", attributes=_POOL_ATTRS + ("p",), notes="1D/2D/3D; zero padding; p >= 1")
def lp_pool(
    x, *, kernel_shape=None, strides=None, dilations=None, pads=None, auto_pad="NOTSET", ceil_mode=0, p=2
):
    """(sum over the window of |x|^p)^(1/p); padding contributes zeros."""
    strides, dilations, begin, end, extra, out = _geometry(
        "LpPool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xp = pad_spatial(np.abs(x) ** x.dtype.type(p), begin, [e + x0 for e, x0 in zip(end, extra)], 0)
    total = _fold(xp, kernel_shape, strides, dilations, out, np.add)
    return (total ** x.dtype.type(1.0 / p)).astype(x.dtype, copy=False)


def _spatial_axes(x):
    return tuple(range(2, x.ndim))


@op("GlobalAveragePool", notes="any rank >= 3")
def global_average_pool(x):
    return x.mean(axis=_spatial_axes(x), keepdims=True, dtype=x.dtype)


@op("GlobalMaxPool", notes="any rank >= 3")
def global_max_pool(x):
    return x.max(axis=_spatial_axes(x), keepdims=True)


@op("GlobalLpPool", attributes=("p",), notes="any rank >= 3")
def global_lp_pool(x, *, p=2):
    total = (np.abs(x) ** x.dtype.type(p)).sum(axis=_spatial_axes(x), keepdims=True, dtype=x.dtype)
    return (total ** x.dtype.type(1.0 / p)).astype(x.dtype, copy=False)
