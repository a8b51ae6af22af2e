"""Casting to FLOAT8E8M0, the exponent-only type of the OCP Microscaling (MX) formats.

A FLOAT8E8M0 code c is the value 2^(c - 127) (c = 0..254) or NaN (c = 255); it has no sign, no zero
and no infinity. Cast's ``round_mode`` picks the power of two a value goes to and ``saturate`` what
happens to the values outside [2^-127, 2^127].

Where ONNX's reference (``onnx.numpy_helper.to_float8e8m0``, onnx 1.23) and the spec's table
differ, this follows the spec: with ``saturate`` an infinity becomes the largest value (the
reference gives NaN) and a value below 2^-127 the smallest (the reference rounds float32
subnormals up to 2^-126); without it, zero and values out of range become NaN (the reference
gives the code of 2^-127 for zero). The spec leaves negative inputs unspecified: their magnitude
is cast, as the reference does.
"""

from __future__ import annotations

import numpy as np

_BIAS, _MAX_CODE, _NAN_CODE = 127, 254, 255
ROUND_MODES = ("up", "down", "nearest")


def to_float8e8m0(x: np.ndarray, saturate: int, round_mode: str) -> np.ndarray:
    """``x`` (any real float type) as ``ml_dtypes.float8_e8m0fnu``.

    Args:
        saturate: clamp to the type's range (else NaN outside it).
        round_mode: "up" (away from zero), "down" (towards zero) or "nearest" (ties up): the
            power of two above or below a value that is not one.
    """
    import ml_dtypes

    if round_mode not in ROUND_MODES:
        raise ValueError(f"Cast: round_mode={round_mode!r}; expected one of {ROUND_MODES}")
    a = np.abs(np.asarray(x).astype(np.float64))  # every float32/float16 value exactly
    finite = np.isfinite(a) & (a > 0)
    mantissa, exponent = np.frexp(np.where(finite, a, 1.0))  # a = mantissa * 2^exponent, [0.5, 1)
    power = exponent.astype(np.int64) - 1  # floor(log2(a))
    if round_mode == "up":
        power += mantissa > 0.5
    elif round_mode == "nearest":
        power += mantissa >= 0.75  # a >= 1.5 * 2^power: the midpoint goes up
    code = power + _BIAS
    if saturate:
        code = np.clip(code, 0, _MAX_CODE)
        code = np.where(np.isinf(a), _MAX_CODE, np.where(a == 0, 0, code))
    else:
        code = np.where((code < 0) | (code > _MAX_CODE) | (a == 0), _NAN_CODE, code)
    code = np.where(np.isnan(a) | (np.isinf(a) & (not saturate)), _NAN_CODE, code)
    return code.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)
