"""Kernels: elementwise ops (arithmetic, math functions, comparisons, logic, casts).

Every kernel keeps its input dtype: NumPy 2 treats Python scalars as "weak", so ``x * 0.5`` stays
float32 for a float32 ``x``. Unary and binary ops come from two small factories.
"""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto

from xverify.engine.ops._e8m0 import to_float8e8m0
from xverify.engine.ops._parallel import run_chunks, workers
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

_SPLIT = 1 << 20  # elements from which an in-place op runs on the kernel pool, in batch slices


def in_place(ufunc, out, *args):
    """``ufunc(*args, out=out)`` where ``out`` is also ``args[0]``; large arrays are split along
    axis 0 over the kernel pool (these memory-bound passes run ~1.7x faster on two cores)."""
    n = out.shape[0] if out.ndim else 1
    if out.size < _SPLIT or n < 2 or workers() < 2:
        return ufunc(*args, out=out)

    def part(a, start, stop):  # the slice of an argument that lines up with out[start:stop]
        if isinstance(a, np.ndarray) and a.ndim == out.ndim and a.shape[0] == n:
            return a[start:stop]
        return a  # a scalar or an array that broadcasts along axis 0

    run_chunks(
        lambda start, stop: ufunc(*(part(a, start, stop) for a in args), out=out[start:stop]),
        n,
        -(-n // workers()),
    )
    return out


def _unary(name: str, fn, notes: str = ""):
    def kernel(x):
        return np.asarray(fn(x)).astype(x.dtype, copy=False)

    kernel.__name__ = name.lower()
    op(name, notes=notes)(kernel)


def _binary(name: str, fn, keep_dtype: bool = True, legacy: bool = True):
    """A binary op; ``legacy``: it existed before opset 7, with the ``broadcast`` attribute."""

    def kernel(a, b):
        out = fn(a, b)
        return out.astype(a.dtype, copy=False) if keep_dtype else out

    kernel.__name__ = name.lower()
    op(name, notes="numpy broadcasting", since=7 if legacy else 1)(kernel)
    if legacy:
        _legacy(name, kernel)


def _arithmetic(name: str, fn, ufunc):
    """An arithmetic op that, on floats, can write into its first input (see ``registry``)."""

    def kernel(a, b, out=None):
        if (
            out is not None
            and a.dtype.kind == "f"
            and b.dtype == a.dtype
            and b.ndim <= a.ndim
            and np.broadcast_shapes(a.shape, b.shape) == a.shape
        ):
            return in_place(ufunc, out, a, b)
        return fn(a, b).astype(a.dtype, copy=False)

    kernel.__name__ = name.lower()
    op(name, notes="numpy broadcasting", inplace=True, since=7)(kernel)
    _legacy(name, kernel)


def legacy_broadcast(b, a_ndim: int, broadcast: int, axis) -> np.ndarray:
    """Before opset 7, ``broadcast=1`` matched B's dimensions to A's from ``axis`` on (the suffix
    when ``axis`` is absent), where NumPy aligns trailing dimensions: B gets trailing 1s."""
    if not broadcast or axis is None:
        return b
    axis %= a_ndim
    return b.reshape(b.shape + (1,) * (a_ndim - axis - b.ndim))


def _legacy(name: str, kernel):
    """The opset 1-6 form of a binary op: the ``broadcast``/``axis`` attributes."""

    def legacy(a, b, broadcast=0, axis=None):
        return kernel(a, legacy_broadcast(b, a.ndim, broadcast, axis))

    legacy.__name__ = f"{name.lower()}_legacy"
    op(name, attributes=("broadcast", "axis"), since=1, until=6, notes="broadcast=1 aligns B from `axis`")(
        legacy
    )


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorized, to ~1e-15 relative error (computed in float64).

    NumPy has no erf. Rational approximations from Cephes (S. Moshier, ndtr.c): ``x P(x^2)/Q(x^2)``
    for |x| < 1, ``1 - exp(-x^2) P(|x|)/Q(|x|)`` above; erf(|x|) rounds to 1 in float64 beyond 6.
    """
    z = np.abs(np.asarray(x, dtype=np.float64))
    small = z < 1.0
    s = np.where(small, z, 0.0) ** 2
    inner = z * np.polyval(_ERF_T, s) / np.polyval(_ERF_U, s)
    w = np.clip(z, 1.0, 6.0)
    outer = 1.0 - np.exp(-w * w) * np.polyval(_ERFC_P, w) / np.polyval(_ERFC_Q, w)
    return np.copysign(np.where(small, inner, np.where(np.isnan(z), np.nan, outer)), x)


_ERF_T = [
    9.60497373987051638749e0,
    9.00260197203842689217e1,
    2.23200534594684319226e3,
    7.00332514112805075473e3,
    5.55923013010394962768e4,
]
_ERF_U = [
    1.0,
    3.35617141647503099647e1,
    5.21357949780152679795e2,
    4.59432382970980127987e3,
    2.26290000613890934246e4,
    4.92673942608635921086e4,
]
_ERFC_P = [
    2.46196981473530512524e-10,
    5.64189564831068821977e-1,
    7.46321056442269912687e0,
    4.86371970985681366614e1,
    1.96520832956077098242e2,
    5.26445194995477358631e2,
    9.34528527171957607540e2,
    1.02755188689515710272e3,
    5.57535335369399327526e2,
]
_ERFC_Q = [
    1.0,
    1.32281951154744992508e1,
    8.67072140885989742329e1,
    3.54937778887819891062e2,
    9.75708501743205489753e2,
    1.82390916687909736289e3,
    2.24633760818710981792e3,
    1.65666309194161350182e3,
    5.57535340817727675546e2,
]


def _reciprocal(x):
    return 1 / x if x.dtype.kind == "f" else np.reciprocal(x)


for _name, _fn in {
    "Neg": np.negative,
    "Abs": np.abs,
    "Sqrt": np.sqrt,
    "Reciprocal": _reciprocal,
    "Exp": np.exp,
    "Log": np.log,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": np.rint,
    "Sign": np.sign,
    "Erf": erf,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
}.items():
    _unary(_name, _fn, notes="round half to even" if _name == "Round" else "")


def _int_div(a, b):
    """C-style integer division (truncates toward zero), as ONNX Runtime does; NumPy floors."""
    if a.dtype.kind not in "iu":
        return a / b
    q = np.floor_divide(a, b)
    return q + ((q < 0) & (q * b != a))


def _pow(a, b):
    return np.power(a, b.astype(a.dtype, copy=False) if a.dtype.kind == "f" else b)


for _name, _fn, _ufunc in [
    ("Add", np.add, np.add),
    ("Sub", np.subtract, np.subtract),
    ("Mul", np.multiply, np.multiply),
    ("Div", _int_div, np.true_divide),
]:
    _arithmetic(_name, _fn, _ufunc)
_binary("Pow", _pow)

for _name, _fn in {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}.items():
    _binary(_name, _fn, keep_dtype=False, legacy=not _name.endswith("OrEqual"))


def _variadic(name: str, fn):
    def kernel(*xs):
        return functools.reduce(fn, xs).astype(xs[0].dtype, copy=False)

    kernel.__name__ = name.lower()
    op(name, notes="any number of inputs, numpy broadcasting")(kernel)


for _name, _fn in {"Min": np.minimum, "Max": np.maximum, "Sum": np.add}.items():
    _variadic(_name, _fn)


@op("Mean", notes="any number of inputs, numpy broadcasting")
def mean(*xs):
    return (functools.reduce(np.add, xs) / len(xs)).astype(xs[0].dtype, copy=False)


@op("Mod", attributes=("fmod",))
def mod(a, b, fmod=0):
    # fmod=0: the sign of the divisor (Python/NumPy mod); fmod=1: the sign of the dividend (C fmod).
    return (np.fmod(a, b) if fmod else np.mod(a, b)).astype(a.dtype, copy=False)


@op("Not")
def not_(x):
    return np.logical_not(x)


@op("Where", notes="numpy broadcasting")
def where(condition, x, y):
    return np.where(condition, x, y).astype(x.dtype, copy=False)


@op("IsNaN")
def isnan(x):
    return np.isnan(x)


@op("IsInf", attributes=("detect_negative", "detect_positive"))
def isinf(x, detect_negative=1, detect_positive=1):
    if detect_negative and detect_positive:
        return np.isinf(x)
    if detect_negative:
        return np.isneginf(x)
    if detect_positive:
        return np.isposinf(x)
    return np.zeros(x.shape, dtype=bool)


def _convert(x, dtype: np.dtype, saturate: int, round_mode: str = "up"):
    """``x`` as ``dtype``; for the float8 types, ``saturate`` clamps values beyond the largest
    finite one, infinities included, to it (ONNX's table; NaN stays NaN). FLOAT8E8M0 (powers of
    two) also rounds as ``round_mode`` says."""
    if dtype.name == "float8_e8m0fnu" and x.dtype != dtype:
        return to_float8e8m0(x, saturate, round_mode)
    if not saturate or not dtype.name.startswith("float8"):
        return x.astype(dtype, copy=False)
    import ml_dtypes

    big = float(ml_dtypes.finfo(dtype).max)
    return np.clip(x.astype(np.float32), -big, big).astype(dtype)


def _refuse_cast(to_name: str, x) -> None:
    if to_name == "STRING" or x.dtype.kind in "OSU":
        raise UnsupportedOpError(
            f"Cast: to={to_name} (or input dtype {x.dtype}) involves strings; "
            "the NumPy engine casts between numeric and bool types only"
        )


@op(
    "Cast",
    context=True,
    attributes=("to", "saturate", "round_mode"),
    notes="numeric and bool types (float8 saturating; FLOAT8E8M0 rounded by round_mode), not STRING; "
    'opset 1\'s to="FLOAT" too',
)
def cast(x, to, saturate=1, round_mode="up", ctx=None):
    if isinstance(to, str):  # opset 1 names the type
        to = TensorProto.DataType.Value(to)
    _refuse_cast(TensorProto.DataType.Name(to), x)
    return _convert(x, ctx.np_dtype(to), saturate, round_mode)


@op("CastLike", attributes=("saturate", "round_mode"), notes="numeric and bool types, as Cast")
def cast_like(x, target, saturate=1, round_mode="up"):
    _refuse_cast("", x)
    return _convert(x, target.dtype, saturate, round_mode)


@op("Identity")
def identity(x):
    return x
