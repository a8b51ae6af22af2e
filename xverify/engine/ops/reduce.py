"""Kernels: reductions and ArgMax/ArgMin.

All Reduce* ops share one factory: ``axes`` arrive as an attribute (opset < 18, and ReduceSum < 13)
or as the optional second input (later opsets); empty axes reduce everything unless
``noop_with_empty_axes`` asks for the identity.
"""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


def _log_sum_exp(x, axis, keepdims):
    m = _extreme(np.max, "low")(x, axis, True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf rows give -inf, not nan
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


def _sum(x, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


def _extreme(fn, empty):
    """np.max/np.min, with ONNX's value for a reduction over nothing (the op's identity):
    -inf/+inf for floats, the type's lowest/highest value for ints and bools."""

    def reduce(x, axis, keepdims):
        if x.size:
            return fn(x, axis=axis, keepdims=keepdims)
        shape = (
            [1 if i in axis else d for i, d in enumerate(x.shape)]
            if keepdims
            else [d for i, d in enumerate(x.shape) if i not in axis]
        )
        if x.dtype.kind == "f":
            value = -np.inf if empty == "low" else np.inf
        else:
            info = np.iinfo(x.dtype) if x.dtype.kind in "iu" else None
            value = (info.min if empty == "low" else info.max) if info else empty == "high"
        return np.full(shape, value, x.dtype)

    return reduce


_REDUCERS = {
    "ReduceSum": _sum,
    "ReduceMean": lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
    "ReduceMax": _extreme(np.max, "low"),
    "ReduceMin": _extreme(np.min, "high"),
    "ReduceProd": lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims, dtype=x.dtype),
    "ReduceL1": lambda x, axis, keepdims: _sum(np.abs(x), axis, keepdims),
    "ReduceL2": lambda x, axis, keepdims: np.sqrt(_sum(x * x, axis, keepdims)),
    "ReduceSumSquare": lambda x, axis, keepdims: _sum(x * x, axis, keepdims),
    "ReduceLogSum": lambda x, axis, keepdims: np.log(_sum(x, axis, keepdims)),
    "ReduceLogSumExp": _log_sum_exp,
}


def _reduce(name: str, fn):
    def kernel(x, axes_input=None, axes=None, keepdims=1, noop_with_empty_axes=0):
        if axes_input is not None:
            axes = axes_input.tolist()
        if not axes:
            if noop_with_empty_axes:
                return x
            axes = range(x.ndim)
        axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
        return np.asarray(fn(x, axes, bool(keepdims))).astype(x.dtype, copy=False)

    kernel.__name__ = name.lower()
    op(name, attributes=("axes", "keepdims", "noop_with_empty_axes"), notes="axes as attribute or input")(
        kernel
    )


for _name, _fn in _REDUCERS.items():
    _reduce(_name, _fn)


def _arg(name: str, fn):
    def kernel(x, axis=0, keepdims=1, select_last_index=0):
        if select_last_index:  # search the reversed axis, then map the index back
            i = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=bool(keepdims))
        else:
            i = fn(x, axis=axis, keepdims=bool(keepdims))
        return i.astype(np.int64, copy=False)

    kernel.__name__ = name.lower()
    op(name, attributes=("axis", "keepdims", "select_last_index"))(kernel)


_arg("ArgMax", np.argmax)
_arg("ArgMin", np.argmin)
