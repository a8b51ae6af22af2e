"""Kernels: shape, indexing, constants and Resize.

Kernels return NumPy views where the op only moves data (Reshape, Transpose, Slice, Expand): a view
costs nothing and no kernel writes into its inputs. Inputs that ONNX gives as int64 tensors (shapes,
axes, pads) are turned into Python ints first.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from xverify.engine.ops.conv import pad_spatial
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


def ints(v) -> list[int]:
    """An ONNX int64 tensor input (shape, axes, starts) as a list of Python ints."""
    return [int(i) for i in np.asarray(v).reshape(-1)]


@op("Shape", attributes=("start", "end"))
def shape(x, start=0, end=None):
    return np.array(x.shape[start:end], dtype=np.int64)


@op("Size")
def size(x):
    return np.array(x.size, dtype=np.int64)


@op("Reshape", attributes=("allowzero", "shape"), notes="shape as input (opset 5+) or attribute")
def reshape(x, new_shape=None, allowzero=0, shape=None):
    dims = ints(shape if new_shape is None else new_shape)
    if not allowzero:  # 0 copies the input's dimension
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@op("Flatten", attributes=("axis",))
def flatten(x, axis=1):
    axis += x.ndim if axis < 0 else 0
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@op("Transpose", attributes=("perm",))
def transpose(x, perm=None):
    return np.transpose(x, perm)


# Where an older opset's attribute became an input of the same name (Squeeze/Unsqueeze axes, Split
# split, Slice starts/ends/axes, Pad pads), the one parameter receives either: the interpreter passes
# attributes by keyword and inputs by position.


@op("Squeeze", attributes=("axes",), notes="axes as input (opset 13+) or attribute")
def squeeze(x, axes=None):
    return np.squeeze(x, axis=None if axes is None else tuple(ints(axes)))


@op("Unsqueeze", attributes=("axes",), notes="axes as input (opset 13+) or attribute")
def unsqueeze(x, axes):
    return np.expand_dims(x, tuple(ints(axes)))


@op("Concat", attributes=("axis",), notes="axis defaults to 1 (opsets 1-3)")
def concat(*xs, axis=1):
    return np.concatenate(xs, axis=axis)


@op(
    "Split",
    context=True,
    attributes=("axis", "split", "num_outputs"),
    notes="split as input or attribute, else equal parts (the last smaller, opset 18)",
)
def split(x, split=None, axis=0, num_outputs=None, ctx=None):
    sizes = None if split is None else ints(split)
    if not sizes:
        n = num_outputs or len(ctx.node.output)
        chunk = -(-x.shape[axis] // n)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(n)]
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@op(
    "Slice",
    attributes=("starts", "ends", "axes"),
    notes="inputs (opset 10+) or attributes; negative steps; ONNX clamping",
)
def slice_(x, starts, ends, axes=None, steps=None):
    axes = range(len(ints(starts))) if axes is None else ints(axes)
    steps = [1] * len(axes) if steps is None else ints(steps)
    index = [slice(None)] * x.ndim
    # Python slices clamp exactly as ONNX specifies, for both step signs.
    for a, s, e, st in zip(axes, ints(starts), ints(ends), steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


@op("Gather", attributes=("axis",), notes="negative indices allowed")
def gather(x, indices, axis=0):
    return np.take(x, indices, axis=axis)


def _grid(indices, axis):
    """Index arrays that address ``indices``' own positions, with ``indices`` along ``axis``."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = indices
    return tuple(grid)


@op("GatherElements", attributes=("axis",))
def gather_elements(x, indices, axis=0):
    return x[_grid(indices, axis)]


@op("GatherND", attributes=("batch_dims",))
def gather_nd(x, indices, batch_dims=0):
    batch, k = x.shape[:batch_dims], indices.shape[-1]
    flat_x = x.reshape((-1,) + x.shape[batch_dims:])
    flat_i = indices.reshape((-1,) + indices.shape[batch_dims:])
    b = np.arange(flat_x.shape[0]).reshape((-1,) + (1,) * (flat_i.ndim - 2))
    out = flat_x[(b,) + tuple(flat_i[..., j] for j in range(k))]
    return out.reshape(batch + out.shape[1:])


_SCATTER = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(x, index, updates, reduction):
    out = x.copy()
    if reduction == "none":
        out[index] = updates
    elif reduction in _SCATTER:
        _SCATTER[reduction].at(out, index, updates)
    else:
        raise UnsupportedOpError(
            f"Scatter: attribute reduction={reduction!r} is not supported; "
            "supported: none, add, mul, max, min"
        )
    return out


@op("ScatterND", attributes=("reduction",), notes="reduction=none|add|mul|max|min")
def scatter_nd(x, indices, updates, reduction="none"):
    return _scatter(x, tuple(np.moveaxis(indices, -1, 0)), updates, reduction)


@op("ScatterElements", attributes=("axis", "reduction"), notes="reduction=none|add|mul|max|min")
def scatter_elements(x, indices, updates, axis=0, reduction="none"):
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    return _scatter(x, _grid(indices, axis), updates, reduction)


@op("Scatter", attributes=("axis",), since=9, until=10, notes="ScatterElements' older name (same semantics)")
def scatter(x, indices, updates, axis=0):
    return scatter_elements(x, indices, updates, axis)


@op("Expand", notes="a broadcast view")
def expand(x, new_shape):
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(ints(new_shape))))


@op("Tile", notes="repeats per axis; opset 1's (tiles, axis) inputs too")
def tile(x, repeats, axis=None):
    if axis is not None:  # opset 1: ``repeats`` copies along the one axis ``axis``
        counts = [1] * x.ndim
        counts[ints(axis)[0]] = ints(repeats)[0]
        return np.tile(x, counts)
    return np.tile(x, ints(repeats))


_PAD_MODES = ("constant", "reflect", "edge", "wrap")  # the same names as np.pad's modes


@op(
    "Pad",
    attributes=("mode", "pads", "value"),
    notes="mode=constant|reflect|edge|wrap; pads/constant_value/axes as inputs or pads/value attrs; "
    "negative pads crop",
)
def pad(x, pads=None, constant_value=None, axes=None, mode="constant", value=0.0, paddings=None):
    if mode not in _PAD_MODES:
        raise UnsupportedOpError(
            f"Pad: attribute mode={mode!r} is not supported; supported: {', '.join(_PAD_MODES)}"
        )
    pads = ints(paddings if pads is None else pads)  # ``paddings``: opset 1's name
    axes = [a % x.ndim for a in ints(axes)] if axes is not None else range(x.ndim)
    width = [[0, 0] for _ in range(x.ndim)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[i + len(axes)]]
    # np.pad cannot crop: apply the negative pads as a slice first
    x = x[tuple(slice(-min(b, 0), x.shape[d] + min(e, 0)) for d, (b, e) in enumerate(width))]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode != "constant":
        return np.pad(x, width, mode=mode)
    value = value if constant_value is None else constant_value.item()
    if x.ndim > 2 and not any(width[0] + width[1]):  # a CNN's spatial padding: one memory pass
        return pad_spatial(x, [b for b, _ in width[2:]], [e for _, e in width[2:]], value)
    return np.pad(x, width, constant_values=value)


@op("Range", notes="ONNX count: max(ceil((limit - start) / delta), 0)")
def range_(start, limit, delta):
    n = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
    return (start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype, copy=False)


def _policy(ctx, value: np.ndarray) -> np.ndarray:
    """``value`` in the run's dtype policy (float64 in the oracle)."""
    return value.astype(ctx.np_dtype(helper.np_dtype_to_tensor_dtype(value.dtype)), copy=False)


@op("ConstantOfShape", context=True, attributes=("value",))
def constant_of_shape(new_shape, value=None, ctx=None):
    value = np.zeros(1, np.float32) if value is None else value
    return np.full(ints(new_shape), _policy(ctx, value).reshape(())[()])


@op(
    "Constant",
    context=True,
    attributes=("value", "value_float", "value_floats", "value_int", "value_ints"),
    notes="sparse_value and value_string(s) not supported",
)
def constant(ctx=None, **attrs):
    ((name, value),) = attrs.items()
    if name in ("value_float", "value_floats"):
        value = np.array(value, dtype=np.float32)
    elif name in ("value_int", "value_ints"):
        value = np.array(value, dtype=np.int64)
    elif name != "value":
        raise UnsupportedOpError(
            f"Constant: attribute {name} is not supported; supported: value, value_float(s), value_int(s)"
        )
    return _policy(ctx, np.asarray(value))


@op("DepthToSpace", attributes=("blocksize", "mode"), notes="mode=DCR|CRD")
def depth_to_space(x, blocksize, mode="DCR"):
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        y = x.reshape(n, b, b, c // b**2, h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        y = x.reshape(n, c // b**2, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise UnsupportedOpError(
            f"DepthToSpace: attribute mode={mode!r} is not supported; supported: DCR, CRD"
        )
    return y.reshape(n, c // b**2, h * b, w * b)


@op("SpaceToDepth", attributes=("blocksize", "mode"), notes="mode=DCR|CRD")
def space_to_depth(x, blocksize, mode="DCR"):
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, c, h // b, b, w // b, b)
    if mode == "DCR":
        y = y.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        y = y.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise UnsupportedOpError(
            f"SpaceToDepth: attribute mode={mode!r} is not supported; supported: DCR, CRD"
        )
    return y.reshape(n, c * b * b, h // b, w // b)


@op("OneHot", attributes=("axis",), notes="negative indices count from depth")
def one_hot(indices, depth, values, axis=-1):
    d = int(np.asarray(depth).reshape(-1)[0])
    idx = np.where(indices < 0, indices + d, indices).astype(np.int64, copy=False)
    axis %= indices.ndim + 1
    classes = np.arange(d).reshape((d,) + (1,) * (indices.ndim - axis))
    hot = np.expand_dims(idx, axis) == classes
    return np.where(hot, values[1], values[0])


@op("NonZero")
def non_zero(x):
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@op("TopK", attributes=("axis", "largest", "sorted"), notes="ties keep the lower index first; always sorted")
def top_k(x, k, axis=-1, largest=1, sorted=1):
    # Descending order as an ascending key: ~x reverses unsigned and bool values, -x would wrap.
    key = (~x if x.dtype.kind in "ub" else -x) if largest else x
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(int(np.asarray(k).reshape(-1)[0])), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64, copy=False)


def _cumulative(fn, identity):
    def kernel(x, axis, exclusive=0, reverse=0):
        a = int(np.asarray(axis).reshape(-1)[0])
        y = np.flip(x, a) if reverse else x
        out = fn(y, axis=a, dtype=x.dtype)
        if exclusive:  # shifted by one, the op's identity first
            first = np.full_like(np.take(out, [0], axis=a), identity)
            out = np.concatenate([first, np.delete(out, -1, axis=a)], axis=a)
        return np.flip(out, a) if reverse else out

    return kernel


op("CumSum", attributes=("exclusive", "reverse"))(_cumulative(np.cumsum, 0))
op("CumProd", attributes=("exclusive", "reverse"))(_cumulative(np.cumprod, 1))


@op("Trilu", attributes=("upper",))
def trilu(x, k=None, upper=1):
    k = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return np.triu(x, k) if upper else np.tril(x, k)


@op("EyeLike", context=True, attributes=("dtype", "k"))
def eye_like(x, dtype=None, k=0, ctx=None):
    out = x.dtype if dtype is None else ctx.np_dtype(dtype)
    return np.eye(x.shape[0], x.shape[1], k, dtype=out)


@op("ReverseSequence", attributes=("batch_axis", "time_axis"))
def reverse_sequence(x, sequence_lens, batch_axis=1, time_axis=0):
    # Keras go_backwards and Bidirectional lower to this (tf2onnx ReverseV2 on the time axis).
    n_time = x.shape[time_axis]
    lens = np.minimum(np.asarray(sequence_lens, dtype=np.int64).reshape(-1), n_time)[:, None]
    t = np.arange(n_time)[None, :]
    source = np.where(t < lens, lens - 1 - t, t)  # [batch, time]: reversed within each length
    if batch_axis > time_axis:
        source = source.T
    shape = [1] * x.ndim
    shape[batch_axis], shape[time_axis] = x.shape[batch_axis], n_time
    return np.take_along_axis(x, source.reshape(shape), axis=time_axis)
