"""The typed fields of a ``CheckReport``: frozen values whose ``to_dict()`` is their JSON
(schema ``xverify.check/1``, keys in the order tools have read since the schema began).

Example::

    report = xverify.check("model.keras")
    report.model.opset, report.inputs.samples
    if report.first_divergence is not None:
        print(report.first_divergence.layer, report.first_divergence.a, report.first_divergence.b)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xverify.inputs import InputSpec


@dataclass(frozen=True)
class ModelInfo:
    """What was checked: the model file (None for a model object), its format, the ONNX file
    (None when converted here), the ONNX opset and the model file's SHA-256."""

    path: str | None
    format: str  # "keras" | "h5" | "savedmodel" | "onnx" | "keras-object"
    onnx_path: str | None
    opset: int | None
    sha256: str | None
    golden: Mapping[str, Any] | None = None  # checked against a golden bundle: its record

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "onnx_path": self.onnx_path,
            "opset": self.opset,
            "sha256": self.sha256,
        }
        if self.golden is not None:
            out["golden"] = dict(self.golden)
        return out


@dataclass(frozen=True)
class InputsInfo:
    """The inputs every runtime ran: where they came from ("synthetic", "dict" or a file; None
    until a golden bundle's check names its file), the seed of synthetic ones, how many samples,
    and each input tensor."""

    source: str | None
    seed: int | None
    samples: int
    tensors: tuple[InputSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seed": self.seed,
            "samples": self.samples,
            "tensors": [t.to_dict() for t in self.tensors],
        }


@dataclass(frozen=True)
class FirstDivergence:
    """The earliest failing layer whose inputs agree for the same runtime pair (``a`` against the
    reference ``b``): where a fault enters rather than where it shows."""

    layer: str
    layer_class: str
    a: str
    b: str
    max_abs_diff: float
    onnx_tensor: str | None
    onnx_nodes: tuple[str, ...]
    diverged: str  # which runtimes agree with which, in a sentence
    pairs: Mapping[str, bool]  # "a|b" -> passed, for every pair compared at this layer
    oracle_distances: Mapping[str, float] | None = None  # ONNX runtimes' distance from the oracle

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "class": self.layer_class,
            "a": self.a,
            "b": self.b,
            "max_abs_diff": self.max_abs_diff,
            "onnx_tensor": self.onnx_tensor,
            "onnx_nodes": list(self.onnx_nodes),
            "diverged": self.diverged,
            "pairs": dict(self.pairs),
        }
        if self.oracle_distances is not None:
            out["oracle_distances"] = dict(self.oracle_distances)
        return out


@dataclass(frozen=True)
class Suspect:
    """A failing layer and how sharply the error grows across it (log10 of output over input
    error): the layers most likely to hold the fault come first."""

    layer: str
    layer_class: str
    growth: float

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "class": self.layer_class, "growth": self.growth}


@dataclass(frozen=True)
class OracleDistance:
    """One runtime's distance from the float64 oracle on one output; true when within tolerance."""

    runtime: str
    output: str
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    passed: bool

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "output": self.output,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "passed": self.passed,
        }
