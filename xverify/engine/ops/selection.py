"""Kernels: ops that select or rearrange elements by value (Compress, Unique, CenterCropPad)."""

from __future__ import annotations

import numpy as np

from xverify.engine.ops.shape import ints
from xverify.engine.registry import op


@op("Compress", attributes=("axis",), notes="the flattened input when axis is omitted")
def compress(x, condition, axis=None):
    return np.compress(np.asarray(condition, bool).reshape(-1), x, axis=axis)


@op("Unique", attributes=("axis", "sorted"),
    notes="outputs Y, indices, inverse_indices, counts; sorted=0 keeps first-occurrence order")
def unique(x, axis=None, sorted=1):  # noqa: A002 (ONNX attribute name)
    flat = x.reshape(-1) if axis is None else x
    y, first, inverse, counts = np.unique(flat, return_index=True, return_inverse=True,
                                          return_counts=True, axis=axis)
    if not sorted:  # reorder the unique values by where each first occurs
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse.reshape(-1)]
    as_int = [np.asarray(v, np.int64).reshape(-1) for v in (first, inverse, counts)]
    return (y, *as_int)


@op("CenterCropPad", attributes=("axes",), notes="crops or zero-pads each axis around its center")
def center_crop_pad(x, shape, axes=None):
    target = ints(shape)
    axes = range(x.ndim) if axes is None else [a % x.ndim for a in axes]
    out = x
    for a, size in zip(axes, target):
        n = out.shape[a]
        if size < n:  # crop: the extra element, if odd, comes off the end
            start = (n - size) // 2
            out = np.take(out, range(start, start + size), axis=a)
        elif size > n:
            width = [(0, 0)] * out.ndim
            width[a] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, width)
    return out
