"""The values ``match_weights`` and ``onnx_weights`` return; ``bool()`` of each is "passed"."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class WeightMatch:
    """One Keras weight and the ONNX initializer it was found in (``bool()`` is ``passed``).

    Example::

        for w in layer_weights.weights:
            print(w.name, w.onnx_initializer, w.transform, w.max_abs_diff, bool(w))
    """

    layer: str
    layer_class: str
    name: str
    index: int
    shape: tuple
    onnx_initializer: str | None
    transform: str
    max_abs_diff: float
    passed: bool
    keras_value: np.ndarray | None = field(default=None, repr=False, compare=False)
    onnx_value: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        """The JSON report's ``weights`` entry."""
        return {
            "layer": self.layer,
            "name": self.name,
            "shape": list(self.shape),
            "onnx_initializer": self.onnx_initializer,
            "transform": self.transform,
            "max_abs_diff": self.max_abs_diff,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class LayerWeights:
    """The weights of one Keras layer, in ``get_weights()`` order."""

    layer: str
    layer_class: str
    weights: tuple[WeightMatch, ...]

    @property
    def passed(self) -> bool:
        return all(w.passed for w in self.weights)

    def __bool__(self) -> bool:
        return self.passed


@dataclass(frozen=True)
class WeightReport:
    """Every layer's weights, plus float initializers that no Keras weight accounts for.

    Example::

        report = match_weights(keras_model, onnx_model)
        failed = [w for layer in report.layers for w in layer.weights if not w]
    """

    layers: tuple[LayerWeights, ...]
    unattributed: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> list[dict]:
        return [w.to_dict() for layer in self.layers for w in layer.weights]
