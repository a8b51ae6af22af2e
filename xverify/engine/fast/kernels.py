"""The fused chain's kernel: the Mul folded into the Conv's weights, the clamp run on each block.

``(conv(x, w) + b) * s == conv(x, w * s) + b * s``: one product fewer per output (what tf2onnx
does with the batch norms of other convs); equal in exact arithmetic, within float rounding in
floats. The clamp runs on each block of the Conv's output while it is still in cache
(``convolve(post=...)``) instead of in an extra pass over the whole tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xverify.engine.fast.chains import Epilogue
from xverify.engine.ops.conv import convolve
from xverify.engine.registry import OPS


@dataclass(frozen=True)
class FoldedConv:
    """A Conv with its chain's Mul folded into ``weight`` and ``bias``, ``post`` clamping each
    block of its output in place (None without a clamp), and its attributes."""

    weight: np.ndarray
    bias: np.ndarray | None
    post: object
    attrs: dict


def folded(x, w, b, epilogue: Epilogue, attrs: dict) -> FoldedConv | None:
    """The Conv of ``w``, ``b`` with ``epilogue`` folded in, for input ``x``; None for mixed or
    integer dtypes (the nodes' kernels then run one after the other)."""
    factor, bounds = epilogue.factor, epilogue.bounds
    if x.dtype != w.dtype or x.dtype.kind != "f" or (factor is not None and factor.dtype != x.dtype):
        return None
    if factor is not None:
        scale = np.broadcast_to(
            factor.reshape((-1,) + (1,) * (w.ndim - 1)), (w.shape[0],) + (1,) * (w.ndim - 1)
        )
        w, b = w * scale, None if b is None else b * scale.reshape(-1)
    return FoldedConv(w, b, None if bounds is None else _clamp(bounds, x.dtype), attrs)


def _clamp(bounds: tuple, dtype):
    # Bounds in x's dtype, as the Clip and Relu kernels cast them.
    lo, hi = (None if v is None else np.asarray(v).astype(dtype) for v in bounds)

    def post(block, c0, c1):
        np.clip(block, lo, hi, out=block)

    return post


def run_folded(x, conv: FoldedConv):
    return convolve(x, conv.weight, conv.bias, conv.post, **conv.attrs)


def run_nodes(x, w, b, epilogue: Epilogue, attrs: dict):
    """The chain's nodes one after the other, with their own kernels."""
    y = OPS["Conv"].kernel(x, w, b, **attrs)
    y = y if epilogue.factor is None else OPS["Mul"].kernel(y, epilogue.factor)
    if epilogue.bounds is None:
        return y
    activation = epilogue.activation
    if activation is None:  # bounds come with the kernel that applies them (chains.py)
        raise AssertionError("an epilogue with bounds but no activation")
    if activation is OPS["Relu"].kernel:
        return activation(y)
    return activation(y, *epilogue.bounds)


def chain_kernel(epilogue: Epilogue):
    """The kernel of a fused chain: the folded Conv, or its nodes one by one where it cannot fold."""

    def kernel(x, w, b=None, **attrs):
        conv = folded(x, w, b, epilogue, attrs)
        return run_nodes(x, w, b, epilogue, attrs) if conv is None else run_folded(x, conv)

    return kernel
