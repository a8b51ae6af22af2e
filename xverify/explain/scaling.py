"""Layers that rescale each value on its own: Rescaling, Normalization, BatchNormalization.

At inference each is ``y = (x − m) / d · g + b`` with per-channel (last axis) numbers, so it is
spelled out value by value like an activation, written as a live formula in the workbook, and
"left out" is a mistake ``diagnose`` can try.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xverify.explain.layers import config, weight_name


@dataclass(frozen=True)
class Scaling:
    """``y = (x − center) / divisor · gain + shift``, each an array over the last axis."""

    center: np.ndarray
    divisor: np.ndarray
    gain: np.ndarray
    shift: np.ndarray
    words: str  # the formula in the layer's own terms
    names: tuple  # what center, divisor, gain and shift are called for this layer

    def apply(self, x):
        return (x - self.center) / self.divisor * self.gain + self.shift


def scaling_of(layer, channels: int) -> Scaling | None:
    """The layer as a ``Scaling`` over ``channels`` values of the last axis, or None."""
    kind, settings = type(layer).__name__, config(layer)
    if kind == "Rescaling":
        parts: tuple[np.ndarray | float, ...] = (
            0.0,
            1.0,
            settings.get("scale", 1.0),
            settings.get("offset", 0.0),
        )
        words, names = "y = x · scale + offset", ("0", "1", "scale", "offset")
    elif kind == "Normalization" and not settings.get("invert") and layer.mean is not None:
        import keras

        variance = np.asarray(layer.variance, np.float64)
        parts = (layer.mean, np.maximum(np.sqrt(variance), keras.config.epsilon()), 1.0, 0.0)
        words, names = "y = (x − mean) / √variance", ("mean", "√variance", "1", "0")
    elif kind == "BatchNormalization" and settings.get("axis", -1) in (-1, [-1]):
        weights = {weight_name(w): np.asarray(w, np.float64) for w in layer.weights}
        eps = settings.get("epsilon", 1e-3)
        parts = (
            weights["moving_mean"],
            np.sqrt(weights["moving_variance"] + eps),
            weights.get("gamma", 1.0),
            weights.get("beta", 0.0),
        )
        words = f"y = (x − moving_mean) / √(moving_variance + {eps}) · gamma + beta"
        names = ("moving_mean", f"√(moving_variance + {eps})", "gamma", "beta")
    else:
        return None
    arrays = [_per_channel(p, channels) for p in parts]
    if any(a is None for a in arrays):
        return None  # parameters that vary along another axis: Keras computes the layer
    center, divisor, gain, shift = arrays
    return Scaling(center, divisor, gain, shift, words, names)


def _per_channel(value, channels: int):
    flat = np.ravel(np.asarray(value, np.float64))
    if flat.size == 1:
        return np.full(channels, flat[0])
    return flat if flat.size == channels else None
