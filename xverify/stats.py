"""Statistics of one output pair that merge exactly across chunks and workers.

``Stats`` sees an output (``a``, the checked side) and its reference (``b``) chunk by chunk; two
``Stats`` built over any split of the samples merge into the figures of the whole set:

* counts, maxima, the pass fraction, top-k agreement and the difference histograms are exactly
  equal (a histogram bin is a function of one element, so merging is adding counts);
* the float64 sums behind the mean, SQNR and cosine similarity equal the whole-set sums to
  rounding (1e-12 relative in the tests); they run over the positions where both sides are
  finite (a non-finite mismatch shows in the maxima, the histograms and the pass fraction).

Differences follow compare.py's rule: NaN against NaN and equal infinities agree (difference 0),
any other non-finite pair differs infinitely. Chunks are processed in blocks of 65,536 elements so
the float64 temporaries stay small whatever the chunk.

The quantiles (p50, p99, p99.9 of |a - b| and of |a - b| / |b|) come from a fixed log-binned
histogram: ``BINS_PER_DECADE`` = 100 bins per power of ten from 1e-30 to 1e10, plus a bin for
values below 1e-30 (exact zeros included, reported as 0) and one for values from 1e10 up
(infinities included, reported as the exact maximum). A quantile is the geometric centre of the
bin holding the nearest-rank element, capped by the exact maximum, so it is within a factor
10**(1/200) (1.16%) of the true nearest-rank quantile.

Example::

    s = Stats(atol=1e-4, rtol=1e-3)
    for a, b in chunks:
        s.update(a, b)
    s.to_dict()["p99_abs"], s.to_dict()["top1"]
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

import numpy as np

from xverify.errors import UsageError

BINS_PER_DECADE = 100
LOW_DECADE, HIGH_DECADE = -30, 10  # histogram range: 1e-30 .. 1e10
_BINS = (HIGH_DECADE - LOW_DECADE) * BINS_PER_DECADE + 2  # + below-range and above-range bins
_EPS = 1e-12  # guards the relative difference where the reference is zero (as compare.py)
_BLOCK = 1 << 16  # elements per block: the float64 temporaries stay in cache
QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999}
TOP_K = 5


def _bin_index(values: np.ndarray) -> np.ndarray:
    """The histogram bin of each non-negative value (a function of the value alone)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.floor((np.log10(values) - LOW_DECADE) * BINS_PER_DECADE)
    scaled = np.nan_to_num(scaled, nan=_BINS, posinf=_BINS, neginf=-1.0)
    return (np.clip(scaled, -1, _BINS - 2) + 1).astype(np.int64)


def _bin_centre(index: int) -> float:
    if index == 0:
        return 0.0
    if index == _BINS - 1:
        return math.inf  # capped by the exact maximum
    return 10.0 ** (LOW_DECADE + (index - 1 + 0.5) / BINS_PER_DECADE)


def _quantile(counts: np.ndarray, q: float, maximum: float) -> float | None:
    total = int(counts.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))  # nearest rank: the rank-th smallest element
    index = int(np.searchsorted(np.cumsum(counts), rank))
    return min(_bin_centre(index), maximum)


class Stats:
    """Mergeable figures of one output against its reference (``b``); see the module docstring.

    Args:
        atol, rtol: the tolerance rule |a - b| <= atol + rtol * |b| a sample must meet everywhere
            to count as passing.
    """

    def __init__(self, atol: float = 1e-4, rtol: float = 1e-3):
        self.atol, self.rtol = float(atol), float(rtol)
        self.sample_shape: tuple | None = None
        self.samples = self.elements = self.finite = self.passed_samples = 0
        self.top1 = self.topk = 0
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.sum_aa = self.sum_bb = self.sum_ab = self.sum_dd = 0.0
        self.abs_hist = np.zeros(_BINS, np.int64)
        self.rel_hist = np.zeros(_BINS, np.int64)

    @property
    def classifier(self) -> bool:
        """Whether the output looks like class scores: (N, C) with C >= 2."""
        return self.sample_shape is not None and len(self.sample_shape) == 1 and self.sample_shape[0] >= 2

    def update(self, a: np.ndarray, b: np.ndarray) -> Stats:
        """Add a chunk: ``a`` and ``b`` of equal shape, samples along the first axis."""
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.ndim == 0:
            raise ValueError(f"Stats.update: shapes {a.shape} and {b.shape} must be equal, with a batch axis")
        self._take_shape(a.shape[1:])
        rows = a.shape[0]
        width = math.prod(a.shape[1:])
        flat_a, flat_b = a.reshape(rows, width), b.reshape(rows, width)
        step = max(1, _BLOCK // max(1, flat_a.shape[1]))
        for start in range(0, rows, step):  # float64 temporaries the size of a cache-sized block
            self._add_block(flat_a[start : start + step], flat_b[start : start + step])
        if self.classifier and rows:
            self._top_k(a, b)
        return self

    def _add_block(self, a: np.ndarray, b: np.ndarray) -> None:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a64 - b64)
            finite = np.isfinite(diff)
            if not finite.all():  # compare.py's rule: NaN with NaN and equal infinities agree
                agree = (np.isnan(a64) & np.isnan(b64)) | (np.isinf(a64) & (a64 == b64))
                diff[agree] = 0.0
                diff[~agree & ~finite] = np.inf
                finite = np.isfinite(a64) & np.isfinite(b64)
                a64, b64 = np.where(finite, a64, 0.0), np.where(finite, b64, 0.0)  # out of the sums
            absb = np.abs(b64)
            rel = diff / (absb + _EPS)
        self.samples += a64.shape[0]
        self.elements += diff.size
        self.finite += int(finite.sum())
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        self.max_rel = max(self.max_rel, float(rel.max(initial=0.0)))
        # pairwise sums, not BLAS dot products: as exact, and no BLAS threads woken per block
        self.sum_abs += float(np.where(finite, diff, 0.0).sum())
        self.sum_aa += float(np.square(a64).sum())
        self.sum_bb += float(np.square(b64).sum())
        self.sum_ab += float((a64 * b64).sum())
        self.sum_dd += float(np.square(a64 - b64).sum())
        self.abs_hist += np.bincount(_bin_index(diff.ravel()), minlength=_BINS)
        self.rel_hist += np.bincount(_bin_index(rel.ravel()), minlength=_BINS)
        self.passed_samples += int((diff <= self.atol + self.rtol * absb).all(axis=1).sum())

    def _take_shape(self, shape: tuple) -> None:
        if self.sample_shape is None:
            self.sample_shape = tuple(shape)
        elif self.sample_shape != tuple(shape):
            raise ValueError(f"Stats: a sample of shape {tuple(shape)} after samples of {self.sample_shape}")

    def _top_k(self, a: np.ndarray, b: np.ndarray) -> None:
        k = min(TOP_K, a.shape[1])
        self.top1 += int((np.argmax(a, axis=1) == np.argmax(b, axis=1)).sum())
        if k == a.shape[1]:
            self.topk += a.shape[0]  # every class is among the k best on both sides
            return
        top_a = np.sort(np.argpartition(-a, k - 1, axis=1)[:, :k], axis=1)  # the k best, as a set
        top_b = np.sort(np.argpartition(-b, k - 1, axis=1)[:, :k], axis=1)
        self.topk += int((top_a == top_b).all(axis=1).sum())

    def merge(self, other: Stats) -> Stats:
        """Add ``other``'s samples (the later ones) to these; returns self."""
        if (other.atol, other.rtol) != (self.atol, self.rtol):
            raise ValueError("Stats.merge: the two sides were built with different tolerances")
        if other.sample_shape is None:
            return self
        self._take_shape(other.sample_shape)
        for name in ("samples", "elements", "finite", "passed_samples", "top1", "topk"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("sum_abs", "sum_aa", "sum_bb", "sum_ab", "sum_dd"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_abs, self.max_rel = max(self.max_abs, other.max_abs), max(self.max_rel, other.max_rel)
        self.abs_hist += other.abs_hist
        self.rel_hist += other.rel_hist
        return self

    def to_dict(self) -> dict:
        """The figures by name (None where undefined: no samples, or not class scores)."""
        out: dict = {"samples": self.samples, "elements": self.elements}
        if not self.samples:
            return out | {name: None for name in METRICS}
        out |= {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_abs": self.sum_abs / self.finite if self.finite else None,
            "sqnr": _sqnr(self.sum_bb, self.sum_dd),
            "cosine": _cosine(self.sum_ab, self.sum_aa, self.sum_bb),
            "pass_rate": self.passed_samples / self.samples,
        }
        for label, q in QUANTILES.items():
            out[f"{label}_abs"] = _quantile(self.abs_hist, q, self.max_abs)
            out[f"{label}_rel"] = _quantile(self.rel_hist, q, self.max_rel)
        out["top1"] = self.top1 / self.samples if self.classifier else None
        out["top5"] = self.topk / self.samples if self.classifier else None
        return out


def _sqnr(signal: float, noise: float) -> float:
    """10 log10(sum b² / sum (a - b)²) in dB; infinite when the sides are equal."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _cosine(ab: float, aa: float, bb: float) -> float | None:
    if aa == 0.0 and bb == 0.0:
        return 1.0  # two zero outputs point the same way
    if aa == 0.0 or bb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, ab / math.sqrt(aa * bb)))  # rounding may step just past ±1


METRICS = (
    "max_abs",
    "max_rel",
    "mean_abs",
    "sqnr",
    "cosine",
    "pass_rate",
    *(f"{label}_{kind}" for label in QUANTILES for kind in ("abs", "rel")),
    "top1",
    "top5",
)
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_TERM = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    """One term of a gate: ``metric op threshold`` (``top1 >= 0.999``)."""

    metric: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_gate(expression: str) -> tuple[Condition, ...]:
    """Parse ``--gate "top1>=0.999,sqnr>=40"``: comma-separated ``metric op number`` terms.

    Raises:
        UsageError: an empty expression, a malformed term or an unknown metric.
    """
    terms = [t for t in expression.split(",") if t.strip()]
    if not terms:
        raise UsageError(f"--gate {expression!r}: expected terms such as 'top1>=0.999,sqnr>=40'.")
    conditions = []
    for term in terms:
        match = _TERM.match(term)
        if not match:
            raise UsageError(
                f"--gate: cannot read {term.strip()!r}; expected METRIC OP NUMBER with OP one of "
                f">=, <=, >, < (e.g. 'top1>=0.999,sqnr>=40')."
            )
        metric, op, number = match.groups()
        if metric not in METRICS:
            raise UsageError(
                f"--gate: unknown metric {metric!r} in {term.strip()!r}; known: {', '.join(METRICS)}."
            )
        conditions.append(Condition(metric, op, float(number)))
    return tuple(conditions)


def gate_failures(conditions: tuple[Condition, ...], figures: dict) -> list[str]:
    """The conditions ``figures`` (a ``Stats.to_dict()``) break, each with the value found.

    A metric the output does not have (top1 on an output that is not class scores) is skipped:
    the gate applies where it means something.
    """
    failed = []
    for condition in conditions:
        value = figures.get(condition.metric)
        if value is not None and not condition.holds(value):
            failed.append(f"{condition} (found {value:.6g})")
    return failed
