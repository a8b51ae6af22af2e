"""``xverify suggest-tolerance``: per-output atol/rtol derived from the distances a check observed.

The figures come from one ``xverify.check`` (with the float64 oracle): each ONNX runtime's distance
from the oracle (its rounding, unmixed with conversion faults) and every output comparison the check
judges, TensorFlow against the ONNX runtimes included. For each output, atol is a safety factor
times the largest max abs diff, rtol the factor times the largest max rel diff, each rounded up to
one significant digit; either alone lets every observed comparison pass (|a - b| <= atol + rtol*|b|).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xverify.runtimes import spec_of

if TYPE_CHECKING:
    from xverify.report.model import CheckReport

FACTOR = 10.0  # headroom over the observed worst case for inputs not seen here
FLOOR = 1e-7  # about float32's resolution at 1: a tolerance for outputs that agreed exactly


@dataclass(frozen=True)
class Figure:
    """One observed distance: which pair, and its max abs and max rel diff."""

    pair: str
    max_abs_diff: float
    max_rel_diff: float


@dataclass(frozen=True)
class OutputTolerance:
    """The suggestion for one output and the figures it came from.

    Example::

        s = xverify.suggest_tolerance("model.keras")
        for o in s.outputs:
            print(o.output, o.atol, o.rtol, o.reason)
    """

    output: str
    atol: float
    rtol: float
    atol_from: Figure
    rtol_from: Figure
    factor: float

    @property
    def reason(self) -> str:
        def said(value, figure, kind):
            seen = getattr(figure, f"max_{kind}_diff")
            if self.factor * seen <= FLOOR:
                return (
                    f"{self.factor:g} x the largest max {kind} diff, {seen:.3g}, is below the floor {FLOOR:g}"
                )
            return (
                f"{self.factor:g} x the largest max {kind} diff, {seen:.3g} ({figure.pair}), "
                f"rounded up to {value:g}"
            )

        return (
            f"atol {self.atol:g}: {said(self.atol, self.atol_from, 'abs')}; "
            f"rtol {self.rtol:g}: {said(self.rtol, self.rtol_from, 'rel')}"
        )

    def to_dict(self) -> dict:
        return {
            "output": self.output,
            "atol": self.atol,
            "rtol": self.rtol,
            "factor": self.factor,
            "atol_from": vars(self.atol_from),
            "rtol_from": vars(self.rtol_from),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Suggestion:
    """Every output's suggested tolerance, and the check whose figures it used (``report``)."""

    outputs: tuple[OutputTolerance, ...]
    report: CheckReport

    def flags(self) -> list[str]:
        return [f"--tolerance {o.output}={o.atol:g}/{o.rtol:g}" for o in self.outputs]

    def toml(self) -> str:
        pairs = ", ".join(f'"{o.output}" = "{o.atol:g}/{o.rtol:g}"' for o in self.outputs)
        return f"[tool.xverify]\ntolerance = {{ {pairs} }}\n"

    def to_dict(self) -> dict:
        return {
            "schema": "xverify.suggest-tolerance/1",
            "outputs": [o.to_dict() for o in self.outputs],
            "tolerance": {o.output: f"{o.atol:g}/{o.rtol:g}" for o in self.outputs},
            "check_passed": self.report.passed,
            "samples": self.report.inputs.samples,
            "toml": self.toml(),
            "flags": self.flags(),
        }


def suggest_tolerance(model, onnx=None, *, factor: float = FACTOR, **check_options) -> Suggestion:
    """Run ``xverify.check`` (outputs and float64 oracle, no layers) and derive per-output tolerances.

    Args:
        model, onnx, check_options: as for ``xverify.check`` (inputs, samples, seed, runtimes, ...).
        factor: the safety factor over the largest observed difference (> 1).

    Returns:
        A Suggestion: ``.outputs`` (each with ``.reason``), ``.toml()``, ``.flags()``, ``.to_dict()``.
    """
    import xverify
    from xverify.errors import UsageError

    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1):
        raise UsageError(f"--factor {factor}: expected a finite number >= 1 (default {FACTOR:g}).")
    check_options.update(layers=False, oracle=True)
    report = xverify.check(model, onnx=onnx, **check_options)
    if not report.oracle:
        raise UsageError(
            "suggest-tolerance needs the float64 oracle: include the numpy runtime in --runtimes."
        )
    figures = _figures(report)
    return Suggestion(tuple(_suggest(name, seen, factor) for name, seen in figures.items()), report)


def _figures(report) -> dict[str, list[Figure]]:
    """Per output: each ONNX runtime's distance from the oracle and every judged comparison."""
    found: dict[str, list[Figure]] = {}
    for row in report.oracle:
        spec = spec_of(row.runtime)
        if spec is not None and spec.runs_onnx:
            figure = Figure(f"{row.runtime} vs float64 oracle", row.max_abs_diff, row.max_rel_diff)
            found.setdefault(row.output, []).append(figure)
    for d in report.comparisons:
        found.setdefault(d.output, []).append(Figure(f"{d.a} vs {d.b}", d.max_abs_diff, d.max_rel_diff))
    return found


def _suggest(output: str, seen: list[Figure], factor: float) -> OutputTolerance:
    from xverify.errors import MismatchError

    worst_abs = max(seen, key=lambda f: f.max_abs_diff)
    worst_rel = max(seen, key=lambda f: f.max_rel_diff)
    if not math.isfinite(worst_abs.max_abs_diff):
        raise MismatchError(
            f"output {output!r}: {worst_abs.pair} differ without bound (shape or NaN): no tolerance "
            "can pass it; run `xverify check` to see why."
        )
    return OutputTolerance(
        output,
        _round_up(factor * worst_abs.max_abs_diff),
        _round_up(factor * worst_rel.max_rel_diff),
        worst_abs,
        worst_rel,
        factor,
    )


def _round_up(value: float) -> float:
    """Up to one significant digit (3.2e-6 -> 4e-6), never below FLOOR."""
    if value <= FLOOR:
        return FLOOR
    exponent = math.floor(math.log10(value))
    digit = math.ceil(value / 10**exponent)
    while float(f"{digit}e{exponent}") < value:  # the decimal's nearest double fell below
        digit += 1
    return float(f"{digit}e{exponent}")
