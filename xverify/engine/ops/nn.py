"""Kernels: dense layers, activations and normalizations.

Formulas are the numerically stable ones (softmax subtracts the max, softplus is ``logaddexp``,
sigmoid never exponentiates a positive number) and every kernel keeps its input dtype.
"""

from __future__ import annotations

import math

import numpy as np

from xverify.engine.ops.elementwise import erf, in_place
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


@op("MatMul", notes="numpy matmul semantics (batched, 1-D promotion)")
def matmul(a, b):
    return np.matmul(a, b)


@op(
    "Gemm",
    attributes=("alpha", "beta", "transA", "transB"),
    notes="opsets 1-6 `broadcast` read as NumPy's (what broadcast=1 means; =0 needs C's full shape)",
)
def gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=1):
    y = np.matmul(a.T if transA else a, b.T if transB else b)
    if alpha != 1.0:
        y *= alpha
    if c is not None and beta != 0.0:
        y += c if beta == 1.0 else beta * c
    return y


@op("Relu", inplace=True)
def relu(x, out=None):
    if x.dtype.kind != "f":
        return np.maximum(x, 0)
    # np.clip has a branch-free SIMD loop; np.maximum is 2x slower on data of mixed signs.
    lo, hi = x.dtype.type(0), x.dtype.type(np.inf)
    return np.clip(x, lo, hi) if out is None else in_place(np.clip, out, x, lo, hi)


@op("Sigmoid")
def sigmoid(x):
    # 1 / (1 + exp(-x)) keeps full relative precision on both tails; exp(-x) overflowing to inf
    # for very negative x gives the right limit 0. Built in place: one buffer, three passes.
    with np.errstate(over="ignore"):
        t = np.exp(-x)
    t += 1
    return np.reciprocal(t, out=t)


@op("Tanh", inplace=True)
def tanh(x, out=None):
    return np.tanh(x) if out is None else in_place(np.tanh, out, x)


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def _log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _hardmax(x, axis):
    hot = np.expand_dims(np.argmax(x, axis=axis), axis)  # the first of equal maxima
    out = np.zeros_like(x)
    np.put_along_axis(out, hot, 1, axis=axis)
    return out


def _flattened(fn):
    """Before opset 13, Softmax, LogSoftmax and Hardmax see x as a 2-D matrix, the dimensions
    before ``axis`` as rows and all from ``axis`` on as one row (default axis 1)."""

    def kernel(x, axis=1):
        axis %= max(x.ndim, 1)
        rows = x.reshape(math.prod(x.shape[:axis]), -1)
        return fn(rows, -1).reshape(x.shape)

    return kernel


for _name, _fn in {"Softmax": _softmax, "LogSoftmax": _log_softmax, "Hardmax": _hardmax}.items():
    op(_name, attributes=("axis",), since=13, notes="along `axis` (default -1)")(
        lambda x, axis=-1, _fn=_fn: _fn(x, axis)
    )
    op(
        _name,
        attributes=("axis",),
        since=1,
        until=12,
        notes="over all dimensions from `axis` on, flattened (default 1)",
    )(_flattened(_fn))


@op(
    "Clip",
    attributes=("min", "max"),
    notes="min/max as inputs (opset 11+) or attributes (opset 6)",
    inplace=True,
)
def clip(x, lo=None, hi=None, min=None, max=None, out=None):
    lo = min if lo is None else lo
    hi = max if hi is None else hi
    if lo is None and hi is None:
        return x
    if x.dtype.kind == "f":
        # Bounds in x's dtype: a float64 bound must not promote (or, with out=, fail the cast).
        lo = None if lo is None else np.asarray(lo).astype(x.dtype)
        hi = None if hi is None else np.asarray(hi).astype(x.dtype)
        return np.clip(x, lo, hi) if out is None else in_place(np.clip, out, x, lo, hi)
    return np.clip(x, lo, hi).astype(x.dtype, copy=False)


@op("LeakyRelu", attributes=("alpha",))
def leaky_relu(x, alpha=0.01):
    return np.where(x >= 0, x, x * alpha)


@op("PRelu", since=7, notes="slope broadcasts to x (numpy, unidirectional)")
def prelu(x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


@op("PRelu", since=1, until=6, notes="a 1-D slope of C values is per channel (axis 1)")
def prelu_legacy(x, slope):
    if slope.ndim == 1 and slope.size > 1 and x.ndim > 2 and slope.size == x.shape[1]:
        slope = _channel(slope, x.ndim)
    return prelu(x, slope)


@op("ThresholdedRelu", attributes=("alpha",))
def thresholded_relu(x, alpha=1.0):
    return np.where(x > alpha, x, 0).astype(x.dtype, copy=False)


@op("Elu", attributes=("alpha",))
def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@op("Selu", attributes=("alpha", "gamma"))
def selu(x, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@op("Celu", attributes=("alpha",))
def celu(x, alpha=1.0):
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha))


@op("HardSigmoid", attributes=("alpha", "beta"))
def hard_sigmoid(x, alpha=0.2, beta=0.5):
    return np.clip(alpha * x + beta, 0, 1)


@op("HardSwish")
def hard_swish(x):
    return x * np.clip(x / 6 + 0.5, 0, 1)


@op("Softplus")
def softplus(x):
    return np.logaddexp(x, 0).astype(x.dtype, copy=False)


@op("Softsign")
def softsign(x):
    return x / (1 + np.abs(x))


@op("Swish", attributes=("alpha",), notes="x * sigmoid(alpha * x)")
def swish(x, alpha=1.0):
    return (x * sigmoid(x * x.dtype.type(alpha))).astype(x.dtype, copy=False)


@op("Mish", notes="opset 18")
def mish(x):
    return x * np.tanh(np.logaddexp(x, 0))


@op("Gelu", attributes=("approximate",), notes="opset 20; approximate=none|tanh")
def gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if approximate != "none":
        raise UnsupportedOpError(
            f"Gelu: attribute approximate={approximate!r} is not supported; supported: 'none', 'tanh'"
        )
    return (0.5 * x * (1 + erf(x * math.sqrt(0.5)))).astype(x.dtype, copy=False)


@op(
    "Dropout",
    attributes=("seed",),
    since=10,
    notes="inference only: identity; training_mode=true unsupported",
)
def dropout(x, ratio=None, training_mode=None, seed=None):
    if training_mode is not None and bool(training_mode):
        raise UnsupportedOpError(
            "Dropout: input training_mode=True is not supported; "
            "the NumPy engine runs inference only (training_mode=False)"
        )
    return x, np.broadcast_to(np.True_, x.shape)


def _inference_only(op_type: str, is_test) -> None:
    """Before opset 7, Dropout and BatchNormalization ran in training mode unless is_test=1."""
    if not is_test:
        raise UnsupportedOpError(
            f"{op_type}: attribute is_test=0 (training, the default before "
            "opset 7) is not supported; the NumPy engine runs inference only "
            "(is_test=1)"
        )


@op("Dropout", attributes=("ratio",), since=7, until=9, notes="inference: identity; mask of x's type")
def dropout_7(x, ratio=0.5):
    return x, np.ones(x.shape, x.dtype)


@op("Dropout", attributes=("is_test", "ratio"), since=1, until=6, notes="is_test=1 (inference) only")
def dropout_1(x, ratio=0.5, is_test=0):
    _inference_only("Dropout", is_test)
    return dropout_7(x)


def _channel(v, ndim):
    """A per-channel vector shaped to broadcast over (N, C, D1, ...)."""
    return v.reshape((-1,) + (1,) * (ndim - 2))


@op(
    "BatchNormalization",
    attributes=("epsilon", "momentum", "training_mode"),
    since=9,
    notes="inference mode only (training_mode=0)",
)
def batch_normalization(x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, training_mode=0):
    if training_mode:
        raise UnsupportedOpError(
            "BatchNormalization: attribute training_mode=1 is not supported; "
            "the NumPy engine runs inference only (training_mode=0)"
        )
    a = scale / np.sqrt(var + epsilon)
    y = x * _channel(a, x.ndim)
    y += _channel(bias - mean * a, x.ndim)
    return y.astype(x.dtype, copy=False)  # opset 15 allows float32 statistics for float16 x


@op(
    "BatchNormalization",
    attributes=("epsilon", "momentum", "spatial"),
    since=7,
    until=8,
    notes="spatial=0: statistics per (C, D...)",
)
def batch_normalization_7(x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, spatial=1):
    if spatial:
        return batch_normalization(x, scale, bias, mean, var, epsilon)
    a = scale / np.sqrt(var + epsilon)  # each of shape x.shape[1:]: one value per element
    return (x * a + (bias - mean * a)).astype(x.dtype, copy=False)


@op(
    "BatchNormalization",
    attributes=("epsilon", "momentum", "is_test", "spatial"),
    since=1,
    until=6,
    notes="is_test=1 (inference) only; spatial=0: statistics per (C, D...)",
)
def batch_normalization_1(x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, is_test=0, spatial=1):
    _inference_only("BatchNormalization", is_test)
    return batch_normalization_7(x, scale, bias, mean, var, epsilon, spatial=spatial)


@op("InstanceNormalization", attributes=("epsilon",))
def instance_normalization(x, scale, bias, epsilon=1e-5):
    axes = tuple(range(2, x.ndim))
    centered = x - np.mean(x, axis=axes, keepdims=True)
    inv = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + epsilon)
    return centered * inv * _channel(scale, x.ndim) + _channel(bias, x.ndim)


@op(
    "LayerNormalization",
    attributes=("axis", "epsilon", "stash_type"),
    notes="statistics computed in at least float32 (stash_type=1)",
)
def layer_normalization(x, scale, bias=None, axis=-1, epsilon=1e-5, stash_type=1):
    axes = tuple(range(axis % x.ndim, x.ndim))
    xs = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    mean = np.mean(xs, axis=axes, keepdims=True)
    centered = xs - mean
    inv_std = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + epsilon)
    y = centered * inv_std * scale
    if bias is not None:
        y += bias
    return y.astype(x.dtype, copy=False), mean, inv_std


@op("LpNormalization", attributes=("axis", "p"), notes="p=1|2")
def lp_normalization(x, axis=-1, p=2):
    if p not in (1, 2):
        raise UnsupportedOpError(f"LpNormalization: attribute p={p} is not supported; supported: 1, 2")
    norm = (
        np.sum(np.abs(x), axis=axis, keepdims=True)
        if p == 1
        else np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    )
    # A zero vector stays zero (0/0 = 0, as ONNX's tests and ONNX Runtime have it), not NaN.
    return np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)).astype(x.dtype, copy=False)


@op("Einsum", attributes=("equation",))
def einsum(*xs, equation):
    if xs[0].dtype.kind not in "biufc":  # bfloat16 (ml_dtypes): NumPy's einsum cannot add them
        wide = [x.astype(np.float32) for x in xs]
        return np.einsum(equation, *wide, optimize=True).astype(xs[0].dtype)
    return np.einsum(equation, *xs, optimize=True)


@op("SwiGLU", attributes=("alpha",), notes="Swish_alpha(A) * B")
def swiglu(a, b, alpha=1.0):
    return (swish(a, alpha) * b).astype(a.dtype, copy=False)
