"""Compare two tensors: the metrics and the tolerance verdict, computed in float64.

An element passes when ``|a - b| <= atol + rtol * |b|`` (``b`` is the reference side). Non-finite
values are compared position by position: NaN on both sides at the same place agrees (inputs holding
NaN propagate it), NaN on one side only is a mismatch, and two infinities of the same sign agree. Every comparison also reports the smallest atol (at the given
rtol) and the smallest rtol (at the given atol) that would have passed, so a gate can be set on
evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

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
    shape: tuple[int, ...]
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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in out.items()}


def _json_float(value: object) -> object:
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def within_tolerance(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Elementwise verdict in float64 (NaN against NaN and equal infinities agree)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(a64) & np.isfinite(b64)  # an infinite b would make rtol*|b| infinite
        ok = finite & (np.abs(a64 - b64) <= atol + rtol * np.abs(b64))
    verdict: np.ndarray = ok | _same_non_finite(a64, b64)
    return verdict


def _same_non_finite(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where both sides hold the same non-finite value: NaN and NaN, or equal infinities."""
    same: np.ndarray = (np.isnan(x) & np.isnan(y)) | (np.isinf(x) & (x == y))
    return same


_BLOCK = 1 << 18  # elements compared at a time: the float64 temporaries stay in cache


def compare(
    a: np.ndarray,
    b: np.ndarray,
    *,
    atol: float,
    rtol: float,
    a_name: str = "a",
    b_name: str = "b",
    output: str = "",
) -> TensorDiff:
    """Compare ``a`` against the reference ``b``.

    Args:
        a, b: arrays of the same shape (any numeric dtype; compared in float64).
        atol, rtol: the tolerance of ``|a - b| <= atol + rtol * |b|``.

    Returns:
        A TensorDiff; a shape mismatch fails with infinite differences and a note.
    """
    a, b = np.asarray(a), np.asarray(b)
    atol, rtol = float(atol), float(rtol)
    if a.shape != b.shape:
        inf = float("inf")
        return TensorDiff(
            shape=tuple(b.shape),
            max_abs_diff=inf,
            max_rel_diff=inf,
            mean_abs_diff=inf,
            mismatch_fraction=1.0,
            min_atol=inf,
            min_rtol=inf,
            passed=False,
            note=f"shape {tuple(a.shape)} != {tuple(b.shape)}",
            a=a_name,
            b=b_name,
            output=output,
            atol=atol,
            rtol=rtol,
        )
    if a.size == 0:
        return TensorDiff(
            shape=a.shape,
            max_abs_diff=0.0,
            max_rel_diff=0.0,
            mean_abs_diff=0.0,
            mismatch_fraction=0.0,
            min_atol=0.0,
            min_rtol=0.0,
            passed=True,
            a=a_name,
            b=b_name,
            output=output,
            atol=atol,
            rtol=rtol,
        )
    stats = _Stats()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for block_a, block_b in _blocks(a, b):
            _compare_block(
                block_a.astype(np.float64).reshape(-1),
                block_b.astype(np.float64).reshape(-1),
                atol,
                rtol,
                stats,
            )
    min_atol = stats.min_atol
    return TensorDiff(
        shape=a.shape,
        max_abs_diff=stats.max_abs,
        max_rel_diff=stats.max_rel,
        mean_abs_diff=stats.sum_abs / a.size,
        mismatch_fraction=stats.fails / a.size,
        min_atol=max(min_atol, 0.0) if np.isfinite(min_atol) else float("inf"),
        min_rtol=stats.min_rtol,
        passed=stats.fails == 0,
        note=_nan_note(stats),
        a=a_name,
        b=b_name,
        output=output,
        atol=atol,
        rtol=rtol,
    )


def _nan_note(stats: _Stats) -> str:
    parts: list[str] = []
    if stats.nans:
        parts.append(f"{stats.nans} NaN element(s) on one side only")
    if stats.nan_pairs:
        parts.append(f"{stats.nan_pairs} NaN element(s) on both sides at the same place (agree)")
    return "; ".join(parts)


def _blocks(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Matching slices of about ``_BLOCK`` elements, cut along the leading axes: a strided view (an
    NCHW tensor moved to channels-last) is then copied once, straight into float64, never whole."""
    if a.ndim == 0 or a.size <= _BLOCK:
        yield a, b
        return
    rows = max(1, _BLOCK * a.shape[0] // a.size)
    for start in range(0, a.shape[0], rows):
        part_a, part_b = a[start : start + rows], b[start : start + rows]
        if rows == 1 and part_a.size > _BLOCK and a.ndim > 1:
            yield from _blocks(part_a[0], part_b[0])
        else:
            yield part_a, part_b


class _Stats:
    """Running reductions over the blocks of one comparison."""

    def __init__(self) -> None:
        self.max_abs = self.max_rel = self.sum_abs = self.min_rtol = 0.0
        self.min_atol = -np.inf
        self.fails = self.nans = self.nan_pairs = 0

    def add(
        self,
        diff: np.ndarray,
        rel_max: float,
        min_atol: float,
        min_rtol: float,
        fails: int | np.integer[Any],
        nans: int | np.integer[Any],
        nan_pairs: int | np.integer[Any] = 0,
    ) -> None:
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.sum_abs += float(diff.sum())
        self.max_rel = max(self.max_rel, rel_max)
        self.min_atol = max(self.min_atol, min_atol) if not np.isnan(min_atol) else np.nan
        self.min_rtol = max(self.min_rtol, min_rtol)
        self.fails += int(fails)
        self.nans += int(nans)
        self.nan_pairs += int(nan_pairs)


def _compare_block(x: np.ndarray, y: np.ndarray, atol: float, rtol: float, stats: _Stats) -> None:
    diff = np.abs(x - y)
    absy = np.abs(y)
    # Sums of float32-sized values cannot overflow float64: a finite sum means no NaN and no inf.
    if np.isfinite(diff.sum()) and np.isfinite(absy.sum()):
        allowed = absy * rtol
        min_atol = float((diff - allowed).max())
        allowed += atol
        fails = np.count_nonzero(diff > allowed)
        min_rtol = 0.0
        if diff.max() > atol:
            over = diff > atol
            min_rtol = float(((diff[over] - atol) / absy[over]).max())
        stats.add(diff, float((diff / (absy + _EPS)).max()), min_atol, min_rtol, fails, 0)
        return
    agree = _same_non_finite(x, y)
    nan_pair = np.isnan(x) & np.isnan(y)
    lone_nan = (np.isnan(x) | np.isnan(y)) & ~nan_pair
    diff[agree] = 0.0
    diff[~agree & ~np.isfinite(x) | ~agree & ~np.isfinite(y)] = np.inf
    absy = np.where(np.isfinite(y), absy, 0.0)  # an agreeing pair allows nothing more
    ok = within_tolerance(x, y, atol, rtol)
    need = np.where(diff > atol, (diff - atol) / absy, 0.0)
    rel = np.nan_to_num(diff / (absy + _EPS), nan=np.inf)  # inf/inf: an infinite difference
    stats.add(
        diff,
        float(rel.max()),
        float(np.max(diff - rtol * absy)),
        float(np.nan_to_num(need, nan=np.inf, posinf=np.inf).max()),
        np.count_nonzero(~ok),
        lone_nan.sum(),
        nan_pair.sum(),
    )
