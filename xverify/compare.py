"""Compare two tensors: the metrics and the tolerance verdict, computed in float64.

An element passes when ``|a - b| <= atol + rtol * |b|`` (``b`` is the reference side). NaN never passes;
two infinities of the same sign do. Every comparison also reports the smallest atol (at the given
rtol) and the smallest rtol (at the given atol) that would have passed, so a gate can be set on
evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
_EPS = 1e-12  # guards the relative error where the reference is zero


@dataclass(frozen=True)
class TensorDiff:
    """How far tensor ``a`` is from tensor ``b``; true when every element is within tolerance.

    Example::

        diff = compare(x, y, atol=1e-5, rtol=1e-4, a="numpy", b="onnxruntime", output="y")
        if not diff:
            print(diff.max_abs_diff, diff.min_atol)
    """

    a: str
    b: str
    output: str
    shape: tuple
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    mismatch_fraction: float
    atol: float
    rtol: float
    min_atol: float
    min_rtol: float
    passed: bool
    note: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in out.items()}


def _json_float(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def within_tolerance(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Elementwise verdict in float64 (NaN fails; equal infinities pass)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(a64) & np.isfinite(b64)  # an infinite b would make rtol*|b| infinite
        ok = finite & (np.abs(a64 - b64) <= atol + rtol * np.abs(b64))
    return ok | (np.isinf(a64) & (a64 == b64))


def compare(a: np.ndarray, b: np.ndarray, *, atol: float, rtol: float, a_name: str = "a",
            b_name: str = "b", output: str = "") -> TensorDiff:
    """Compare ``a`` against the reference ``b``.

    Args:
        a, b: arrays of the same shape (any numeric dtype; compared in float64).
        atol, rtol: the tolerance of ``|a - b| <= atol + rtol * |b|``.

    Returns:
        A TensorDiff; a shape mismatch fails with infinite differences and a note.
    """
    a, b = np.asarray(a), np.asarray(b)
    name = dict(a=a_name, b=b_name, output=output, atol=float(atol), rtol=float(rtol))
    if a.shape != b.shape:
        inf = float("inf")
        return TensorDiff(shape=tuple(b.shape), max_abs_diff=inf, max_rel_diff=inf, mean_abs_diff=inf,
                          mismatch_fraction=1.0, min_atol=inf, min_rtol=inf, passed=False,
                          note=f"shape {tuple(a.shape)} != {tuple(b.shape)}", **name)
    if a.size == 0:
        return TensorDiff(shape=a.shape, max_abs_diff=0.0, max_rel_diff=0.0, mean_abs_diff=0.0,
                          mismatch_fraction=0.0, min_atol=0.0, min_rtol=0.0, passed=True, **name)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ok = within_tolerance(a64, b64, atol, rtol)
    nan = np.isnan(a64) | np.isnan(b64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(a64 - b64)
        diff[np.isinf(a64) & (a64 == b64)] = 0.0
        diff[nan | (np.isinf(a64) | np.isinf(b64)) & (a64 != b64)] = np.inf
        rel = diff / (np.abs(b64) + _EPS)
        min_atol = float(np.max(diff - rtol * np.abs(b64)))
        need = np.where(diff > atol, (diff - atol) / np.abs(b64), 0.0)
    note = f"{int(nan.sum())} NaN element(s)" if nan.any() else ""
    return TensorDiff(shape=a.shape, max_abs_diff=float(diff.max()), max_rel_diff=float(rel.max()),
                      mean_abs_diff=float(diff.mean()), mismatch_fraction=float(1 - ok.mean()),
                      min_atol=max(min_atol, 0.0) if np.isfinite(min_atol) else float("inf"),
                      min_rtol=float(np.nan_to_num(need, nan=np.inf).max()),
                      passed=bool(ok.all()), note=note, **name)
