"""The values an explanation is made of: a Step per spelled-out unit, a LayerSummary per layer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from xverify.explain import render

if TYPE_CHECKING:
    from xverify.explain.graph import Graph


@dataclass(frozen=True)
class Step:
    """One unit of a spelled-out layer: ``a = activation(x·w + b)``, or ``a = activation(z)``."""

    layer: str
    unit: int
    inputs: tuple
    weights: tuple  # empty for an elementwise activation layer
    bias: float | None
    z: float
    activation: str
    a: float
    changed: bool  # the activation gave a value other than z (a ReLU clamped it, ...)
    clamped: bool = False  # ...and the value it gave is a bound (0 for a ReLU, 6 for relu6)
    formula: str = ""  # a value rescaled on its own (Normalization, ...): its arithmetic in words


@dataclass(frozen=True)
class UnitRow:
    """One named quantity of an output element's arithmetic: its values and how they are got."""

    label: str
    values: tuple
    formula: str


@dataclass(frozen=True)
class UnitDetail:
    """One output element of a layer Keras computes (``--unit``), step by step, and Keras' value."""

    layer: str
    index: tuple
    rows: tuple  # UnitRow, the last one the element's value
    value: float
    keras_value: float


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its formula in words, shapes and output (one sample, float64)."""

    name: str
    kind: str
    formula: str
    input_shape: tuple
    output_shape: tuple
    output: np.ndarray
    by_hand: bool  # True: recomputed by NumPy here; False: the output Keras computed
    shown: int = 0  # units spelled out in steps
    changed: int = 0  # units whose value the activation changed
    clamped: int = 0  # ...to a bound (0 for a ReLU)
    activation: str = ""
    tf_max_abs_diff: float | None = None  # hand result vs the layer's own Keras output
    repeat_of: str | None = None  # a shared layer's later call: the label of its first call

    @property
    def min(self) -> float:
        return float(np.min(self.output))

    @property
    def max(self) -> float:
        return float(np.max(self.output))

    @property
    def mean(self) -> float:
        return float(np.mean(self.output))


@dataclass(frozen=True)
class Explanation:
    """The hand calculation of one input, checked against TensorFlow.

    Example::

        ex = xverify.explain("models/seed_regression.keras", 10)
        print(ex.text())            # hidden[3]: 10 × -0.1160 + 0.0000 = -1.1604 → relu → 0.0000 ...
        ex.output, ex.tensorflow_output, ex.max_abs_diff
        ex.to_csv("steps.csv")      # one row per unit: layer, unit, inputs, weights, bias, z, a
        ex.to_xlsx("sheet.xlsx")    # live formulas: change x or a weight, everything recomputes
        ex.diagnose(20.475).sentence  # "... when the ReLU of the first layer ('hidden') is skipped"
    """

    model_name: str
    input: np.ndarray
    steps: tuple
    layers: tuple
    output: np.ndarray
    tensorflow_output: np.ndarray
    output_without_activations: np.ndarray
    max_abs_diff: float
    # What diagnose() and the workbook need to rerun the walk: the model, its flattened graph,
    # Keras' value of every tensor and the passes by hand (None for a subclassed model).
    model: object = field(default=None, repr=False, compare=False)
    graph: Graph | None = field(default=None, repr=False, compare=False)
    taps: dict | None = field(default=None, repr=False, compare=False)
    hand: object = field(default=None, repr=False, compare=False)
    skipped: object = field(default=None, repr=False, compare=False)  # the pass without activations
    units: tuple = ()  # UnitDetail of the element asked for with --unit, per layer Keras computes

    def text(self) -> str:
        """Return the plain-text walk-through (no markup)."""
        return render.text(self)

    def rows(self) -> list[dict]:
        """Return the step table: one dict per spelled-out unit."""
        return render.rows(self)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``rows()`` to a CSV file with a header row."""
        render.write_csv(self, path)

    def diagnose(self, mine):
        """Which common mistake turns this output into ``mine``, a number computed by hand.

        Returns:
            A ``Diagnosis``: ``.sentence`` answers in one sentence, ``.text()`` shows the
            candidates tried and how close each came.
        """
        from xverify.explain.diagnose import diagnose

        return diagnose(self, mine)

    def to_xlsx(self, path: str | os.PathLike) -> None:
        """Write a workbook of live formulas: x, the weights, every z and activation (openpyxl)."""
        render.write_xlsx(self, path)
