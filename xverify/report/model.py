"""CheckReport: the value ``xverify.check`` returns; true when every comparison passed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xverify.compare import TensorDiff
from xverify.errors import MismatchError
from xverify.extract.results import WeightMatch
from xverify.report.records import FirstDivergence, InputsInfo, ModelInfo, OracleDistance, Suspect
from xverify.runtimes.contract import PairDiffs

SCHEMA = "xverify.check/1"


@dataclass(frozen=True)
class LayerDiff:
    """One Keras layer's output compared across runtime pairs."""

    name: str
    layer_class: str
    onnx_tensor: str | None
    onnx_nodes: tuple[str, ...]
    diffs: PairDiffs  # runtimes.PairDiffs: Pair -> TensorDiff (also looked up, and in JSON keyed, "a|b")
    passed: bool
    growth: float = 0.0  # how sharply the error grows across this layer (suspect ranking)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.layer_class,
            "onnx_tensor": self.onnx_tensor,
            "onnx_nodes": list(self.onnx_nodes),
            "diffs": {str(k): d.max_abs_diff for k, d in self.diffs.items()},
            "max_rel_diffs": {str(k): d.max_rel_diff for k, d in self.diffs.items()},
            "growth": self.growth,
            "passed": self.passed,
        }


def first_divergence_lines(fd: FirstDivergence, quote: Callable[[str], str] = repr) -> list[str]:
    """The first divergent layer in plain sentences (Markdown and test failures); ``quote`` wraps
    names."""
    lines = [
        f"Layer {quote(fd.layer)} ({fd.layer_class}): {fd.a} vs {fd.b}, max abs diff {fd.max_abs_diff:.3g}."
    ]
    if fd.diverged:
        lines.append(f"{fd.diverged}.")
    nodes = fd.onnx_nodes
    if nodes:
        more = f" (+{len(nodes) - 6} more)" if len(nodes) > 6 else ""
        lines.append(f"ONNX node(s) of that layer: {', '.join(quote(n) for n in nodes[:6])}{more}.")
    return lines


@dataclass(frozen=True)
class CheckReport:
    """The result of one ``xverify.check``; ``bool(report)`` is ``report.passed``.

    Example::

        report = xverify.check("model.keras")
        if not report:
            print(report.failures())
        report.raise_if_failed()
    """

    model: ModelInfo
    inputs: InputsInfo
    tolerance: dict[str, Any]  # {"atol", "rtol"}, and "per_output" when outputs have their own
    comparisons: tuple[TensorDiff, ...]
    weights: tuple[WeightMatch, ...] = ()
    unattributed: tuple[str, ...] = ()
    layers: tuple[LayerDiff, ...] = ()
    first_divergence: FirstDivergence | None = None
    suspects: tuple[Suspect, ...] = ()
    oracle: tuple[OracleDistance, ...] = ()
    versions: dict[str, str | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    ort_optimizations: dict[str, Any] | None = None  # ort_bisect.OrtBlame.to_dict() when opt != unopt

    @property
    def passed(self) -> bool:
        """Every output comparison, weight and layer within tolerance."""
        return (
            all(self.comparisons)
            and all(w.passed for w in self.weights)
            and all(layer.passed for layer in self.layers)
        )

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        """One line per failed comparison or weight, for messages."""
        lines = [
            f"{d.a} vs {d.b} on {d.output!r}: max abs diff {d.max_abs_diff:.3g} "
            f"(atol {d.atol:g}, rtol {d.rtol:g})"
            for d in self.comparisons
            if not d
        ]
        lines += [
            f"weight {w.layer}/{w.name}: {w.transform}, max abs diff {w.max_abs_diff:.3g}"
            for w in self.weights
            if not w.passed
        ]
        fd = self.first_divergence
        if fd is not None:
            lines.append(
                f"first divergence at layer {fd.layer!r} ({fd.a} vs {fd.b}, max abs diff {fd.max_abs_diff:.3g})"
            )
        return lines

    def raise_if_failed(self) -> CheckReport:
        """Raise ``xverify.MismatchError`` (carrying this report) if the check failed."""
        if not self.passed:
            raise MismatchError("xverify check failed: " + "; ".join(self.failures()), report=self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON report, schema ``xverify.check/1`` (see DESIGN.md)."""
        return {
            "schema": SCHEMA,
            "passed": self.passed,
            "model": self.model.to_dict(),
            "inputs": self.inputs.to_dict(),
            "tolerance": self.tolerance,
            "comparisons": [d.to_dict() for d in self.comparisons],
            "weights": [w.to_dict() for w in self.weights],
            "unattributed_initializers": list(self.unattributed),
            "layers": [layer.to_dict() for layer in self.layers],
            "first_divergence": None if self.first_divergence is None else self.first_divergence.to_dict(),
            "suspects": [s.to_dict() for s in self.suspects],
            "oracle": [o.to_dict() for o in self.oracle],
            "versions": self.versions,
            "timings": self.timings,
            "notes": list(self.notes),
            "ort_optimizations": self.ort_optimizations,
        }
