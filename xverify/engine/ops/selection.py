"""Kernels: ops that select or rearrange elements by value (Compress, Unique, CenterCropPad)."""

from __future__ import annotations

import numpy as np

from xverify.engine.ops.shape import ints
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


@op("Compress", attributes=("axis",), notes="the flattened input when axis is omitted")
def compress(x, condition, axis=None):
    return np.compress(np.asarray(condition, bool).reshape(-1), x, axis=axis)


@op(
    "Unique",
    attributes=("axis", "sorted"),
    notes="outputs Y, indices, inverse_indices, counts; sorted=0 keeps first-occurrence order",
)
def unique(x, axis=None, sorted=1):
    flat = x.reshape(-1) if axis is None else x
    y, first, inverse, counts = np.unique(
        flat, return_index=True, return_inverse=True, return_counts=True, axis=axis
    )
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


@op(
    "TensorScatter",
    attributes=("axis", "mode"),
    notes="writes update into a copy of past_cache along `axis` at each sample's write index; "
    "mode=linear|circular",
)
def tensor_scatter(past_cache, update, write_indices=None, axis=-2, mode="linear"):
    axis %= past_cache.ndim
    out = past_cache.copy()
    length, capacity = update.shape[axis], past_cache.shape[axis]
    starts = (
        np.zeros(past_cache.shape[0], np.int64)
        if write_indices is None
        else np.asarray(write_indices, np.int64).reshape(-1)
    )
    for b, start in enumerate(starts):
        positions = start + np.arange(length)
        if mode == "circular":
            positions %= capacity
        target = np.moveaxis(out[b], axis - 1, 0)  # a view: writes land in ``out``
        target[positions] = np.moveaxis(update[b], axis - 1, 0)
    return out


@op("BitCast", context=True, attributes=("to",), notes="the same bits as another type of equal width")
def bit_cast(x, to, ctx=None):
    from onnx import helper

    target = np.dtype(helper.tensor_dtype_to_np_dtype(to))
    if x.dtype.itemsize != target.itemsize and ctx.oracle and x.dtype == np.float64:
        # The oracle widened the graph's float; its bits are those of the float of the target's
        # width, which is float32 for 4 bytes (2 bytes: float16 or bfloat16, not known here).
        if target.itemsize != 4:
            raise UnsupportedOpError(
                "BitCast: the float64 oracle cannot recover a 16-bit float's "
                "bits; run the check without --oracle"
            )
        x = x.astype(np.float32)
    return x.copy(order="C").view(target)


@op(
    "MaxUnpool",
    attributes=("kernel_shape", "pads", "strides"),
    notes="X written at MaxPool's flat indices I, zeros elsewhere; a larger output_shape pads the "
    "end of each axis (ONNX's node test)",
)
def max_unpool(x, indices, output_shape=None, kernel_shape=(), pads=None, strides=None):
    n = len(kernel_shape)
    strides = strides or [1] * n
    pads = pads or [0] * (2 * n)
    # The indices address the shape MaxPool read (inferred from X); output_shape only pads it.
    shape = list(x.shape[:2]) + [
        (size - 1) * s + k - pads[i] - pads[i + n]
        for i, (size, s, k) in enumerate(zip(x.shape[2:], strides, kernel_shape))
    ]
    out = np.zeros(int(np.prod(shape)), x.dtype)
    out[np.asarray(indices, np.int64).reshape(-1)] = x.reshape(-1)
    out = out.reshape(shape)
    if output_shape is None:
        return out
    # ONNX's reference and node test (test_maxunpool_export_with_output_shape) read I in the
    # inferred shape and pad each axis at its end up to output_shape; ONNX Runtime reads I in
    # output_shape's own layout since microsoft/onnxruntime#2193 (after onnx/onnx#2398). The node
    # test is the judge.
    wanted = [int(v) for v in np.asarray(output_shape).reshape(-1)]
    if len(wanted) != out.ndim or any(w < s for w, s in zip(wanted, shape)):
        raise UnsupportedOpError(
            f"MaxUnpool: output_shape {wanted} is smaller than the shape {shape} the indices "
            "address (inferred from X, kernel_shape, strides and pads); supported: an output_shape "
            "at least that large on every axis"
        )
    return np.pad(out, [(0, w - s) for w, s in zip(wanted, shape)])
