"""Kernels: quantization (what int8 models hold): QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv.

Integer products are computed as float64 matrix products (BLAS), exact while a sum stays below 2^53
(int8 x int8 over any realistic K), then rounded to int32. Requantization rounds half to even and
saturates to the output type, as ONNX specifies.

Quantizing divides in float32 in both dtype policies: ONNX fixes that division's precision (the
``precision`` attribute, by default the scale's type, float32 in the graph), and a rounding step
fed by the oracle's wider quotient would flip the ties the graph's float32 resolves.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from xverify.engine.ops.conv import conv
from xverify.engine.registry import op


def _range(dtype: np.dtype):
    import ml_dtypes

    info = ml_dtypes.iinfo(dtype) if dtype.kind not in "iu" else np.iinfo(dtype)
    return float(info.min), float(info.max)


def _along(v, x_shape, axis, block_size=0):
    """A scale or zero point shaped to broadcast against x: per tensor, per ``axis`` or per block."""
    v = np.asarray(v)
    if v.size == 1:
        return v.reshape(())
    axis %= len(x_shape)
    if block_size:
        return np.repeat(v, block_size, axis=axis).take(range(x_shape[axis]), axis=axis)
    return v.reshape((-1,) + (1,) * (len(x_shape) - axis - 1))


def _f32(v):
    """v in float32 when it is a float64 (the oracle's widening; see the module docstring)."""
    return v.astype(np.float32) if v.dtype == np.float64 else v


def _quantized_type(zero_point, output_dtype, ctx_dtype=None) -> np.dtype:
    if zero_point is not None:
        return zero_point.dtype
    if output_dtype:
        return np.dtype(helper.tensor_dtype_to_np_dtype(output_dtype))
    return np.dtype(np.uint8)


def saturate_round(y, dtype: np.dtype):
    """y rounded half to even and clamped to ``dtype``'s range (floats: cast, saturating)."""
    if dtype.kind == "f" or dtype.name.startswith("float"):
        from xverify.engine.ops.elementwise import _convert

        return _convert(y, dtype, 1)
    lo, hi = _range(dtype)
    return np.clip(np.rint(y), lo, hi).astype(dtype)


@op(
    "QuantizeLinear",
    attributes=("axis", "block_size", "output_dtype", "saturate"),
    notes="per tensor, per axis or per block; int8/uint8/int16/uint16/int4/uint4/float8 outputs",
)
def quantize_linear(
    x, y_scale, y_zero_point=None, axis=1, block_size=0, output_dtype=0, saturate=1, precision=0
):
    dtype = _quantized_type(y_zero_point, output_dtype)
    y = _f32(x) / _f32(_along(y_scale, x.shape, axis, block_size))
    if dtype.name.startswith("float"):  # float8: no zero point to add (it must be 0)
        from xverify.engine.ops.elementwise import _convert

        return _convert(y, dtype, saturate)
    if y_zero_point is not None:
        y = np.rint(y) + _along(y_zero_point, x.shape, axis, block_size).astype(np.float64)
    return saturate_round(y, dtype)


@op(
    "DequantizeLinear",
    attributes=("axis", "block_size", "output_dtype"),
    notes="per tensor, per axis or per block",
)
def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=0):
    scale = _along(x_scale, x.shape, axis, block_size)
    wide = x.astype(np.float64 if x.dtype.kind in "iu" or x.dtype.itemsize < 4 else x.dtype)
    if x_zero_point is not None:
        wide = wide - _along(x_zero_point, x.shape, axis, block_size).astype(np.float64)
    out = scale.dtype if not output_dtype else helper.tensor_dtype_to_np_dtype(output_dtype)
    return (wide * scale).astype(out)


@op("DynamicQuantizeLinear", notes="uint8, scale from the range of x and 0")
def dynamic_quantize_linear(x):
    x = _f32(x)
    lo = np.minimum(np.min(x, initial=0), 0).astype(x.dtype)
    hi = np.maximum(np.max(x, initial=0), 0).astype(x.dtype)
    scale = np.asarray((hi - lo) / x.dtype.type(255), dtype=x.dtype)
    uint8 = np.dtype(np.uint8)
    if scale == 0:  # x is all zeros
        return np.zeros(x.shape, uint8), scale, np.zeros((), uint8)
    zero_point = saturate_round(np.asarray(-lo / scale), uint8)
    return saturate_round(np.rint(x / scale) + float(zero_point), uint8), scale, zero_point


def _minus(x, zero_point, rows=False):
    """x - zero_point in float64; ``rows``: a 1-D zero point of A is one per row (ONNX)."""
    x = x.astype(np.float64)
    if zero_point is None:
        return x
    zp = np.asarray(zero_point, np.float64)
    if rows and zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape(-1, 1)
    return x - zp


@op("MatMulInteger", notes="int32 result; zero points per tensor, per row of A, per column of B")
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    y = np.matmul(_minus(a, a_zero_point, rows=True), _minus(b, b_zero_point))
    return np.rint(y).astype(np.int32)


@op("QLinearMatMul", notes="scales and zero points per tensor, per row of A, per column of B")
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    acc = np.matmul(_minus(a, a_zero_point, rows=True), _minus(b, b_zero_point))
    a_scale = np.asarray(a_scale, np.float64)
    if a_scale.ndim == 1 and a_scale.size > 1:
        a_scale = a_scale.reshape(-1, 1)
    factor = (a_scale * np.asarray(b_scale, np.float64)) / np.asarray(y_scale, np.float64)
    y = np.rint(acc * factor) + np.asarray(y_zero_point, np.float64)
    return saturate_round(y, np.asarray(y_zero_point).dtype)


_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _conv_integer(x, x_zero_point, w, w_zero_point, attrs):
    wz = None if w_zero_point is None else _along(w_zero_point, w.shape, 0)
    return conv(_minus(x, x_zero_point), _minus(w, wz), **attrs)


@op("ConvInteger", attributes=_CONV_ATTRS, notes="as Conv; int32 result")
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, **attrs):
    return np.rint(_conv_integer(x, x_zero_point, w, w_zero_point, attrs)).astype(np.int32)


@op("QLinearConv", attributes=_CONV_ATTRS, notes="as Conv; w_scale per tensor or output channel")
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, b=None, **attrs):
    acc = _conv_integer(x, x_zero_point, w, w_zero_point, attrs)
    spatial = (1,) * (acc.ndim - 2)
    if b is not None:
        acc = acc + b.astype(np.float64).reshape((-1,) + spatial)
    w_scale = np.asarray(w_scale, np.float64)
    w_scale = w_scale.reshape((-1,) + spatial) if w_scale.size > 1 else w_scale.reshape(())
    factor = np.asarray(x_scale, np.float64) * w_scale / np.asarray(y_scale, np.float64)
    y = np.rint(acc * factor) + np.asarray(y_zero_point, np.float64)
    return saturate_round(y, np.asarray(y_zero_point).dtype)
