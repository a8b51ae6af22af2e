"""Joints, and the search for each among the ONNX initializers.

A joint is one expected ONNX tensor covering one or more Keras weights: a kernel in OIHW, an LSTM's
packed W for both directions, a Conv kernel with a BatchNormalization folded in. ``Context.find``
looks for it first among the initializers the layer's own nodes consume, then among all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xverify.convert import flat_layers, is_float
from xverify.extract.forms import close, fit, max_diff
from xverify.extract.graph import owned_initializers


@dataclass(frozen=True)
class Joint:
    targets: tuple  # ((layer_index, weight_index), ...)
    expected: np.ndarray  # float64, ONNX layout
    split: Callable  # ONNX array in expected's shape -> [Keras-layout array or None per target]
    labels: tuple  # per target; "{init}" is replaced by the initializer's name
    derived: bool = False  # recomputed from several weights (BN): float32 rounding in TensorFlow


def weight_names(layer) -> list[str]:
    names = [v.name for v in layer.weights]
    if hasattr(layer, "forward_layer"):  # Bidirectional: forward weights, then backward
        half = len(names) // 2
        names = [f"{'forward' if i < half else 'backward'}/{n}" for i, n in enumerate(names)]
    return names


class Context:
    """What every search needs: the initializers, who consumes them, the Keras weights, tolerance."""

    def __init__(self, keras_model, onnx_model, atol, rtol):
        from onnx import numpy_helper

        self.layers = flat_layers(keras_model)
        self.values = [[np.asarray(w, np.float64) for w in layer.get_weights()] for layer in self.layers]
        self.inits = {
            i.name: numpy_helper.to_array(i).astype(np.float64)
            for i in onnx_model.graph.initializer
            if is_float(i)
        }
        self.own = owned_initializers(onnx_model)
        self.atol, self.rtol = atol, rtol
        self.claimed: set[str] = set()
        self.loose = False

    def tolerance(self, joint: Joint) -> tuple[float, float]:
        # A folded or scale/offset tensor was computed by TensorFlow in float32 from several weights.
        return (max(self.atol, 1e-5), max(self.rtol, 1e-4)) if joint.derived else (self.atol, self.rtol)

    def find(self, joint: Joint, layer_index: int):
        """``(initializer name, fitted array, passed)`` for the best initializer, or None."""
        own = self.own.get(layer_index, set())
        pools = [own] if not np.any(joint.expected) else [own, self.inits.keys()]
        atol, rtol = self.tolerance(joint)
        for pool in pools:
            hits = [(n, a) for n, a in self._fitting(pool, joint) if close(a, joint.expected, atol, rtol)]
            if hits:
                return (*min(hits, key=lambda h: max_diff(h[1], joint.expected)), True)
        if self.loose and np.any(joint.expected):
            # Values differ: name the closest initializer of the right shape that no other weight
            # already accounts for, so a user sees which tensor was altered and by how much.
            # All initializers only when the graph names none as the layer's own.
            for pool in (own,) if own else (self.inits.keys(),):
                hits = list(self._fitting(set(pool) - self.claimed, joint))
                if hits:
                    return (*min(hits, key=lambda h: max_diff(h[1], joint.expected)), False)
        return None

    def _fitting(self, pool, joint):
        for name in sorted(pool):
            fitted = fit(self.inits[name], joint.expected.shape) if name in self.inits else None
            if fitted is not None:
                yield name, fitted
