"""Kernels: integer bit operations (BitShift, BitwiseAnd/Or/Xor/Not)."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


@op("BitShift", attributes=("direction",), notes="unsigned integers; direction=LEFT|RIGHT")
def bit_shift(x, y, direction):
    if direction not in ("LEFT", "RIGHT"):
        raise UnsupportedOpError(
            f"BitShift: attribute direction={direction!r} is not supported; supported: LEFT, RIGHT"
        )
    shift = np.left_shift if direction == "LEFT" else np.right_shift
    return shift(x, y.astype(x.dtype, copy=False)).astype(x.dtype, copy=False)


for _name, _fn in {
    "BitwiseAnd": np.bitwise_and,
    "BitwiseOr": np.bitwise_or,
    "BitwiseXor": np.bitwise_xor,
}.items():
    op(_name, notes="numpy broadcasting")(lambda a, b, _fn=_fn: _fn(a, b).astype(a.dtype, copy=False))


@op("BitwiseNot")
def bitwise_not(x):
    return np.invert(x)
