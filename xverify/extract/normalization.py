"""keras.layers.Normalization: ``(x - mean) / max(sqrt(variance), eps)``, as TensorFlow stores it.

TensorFlow's constant folding (grappler, before tf2onnx sees the graph) turns the division by that
constant into a multiplication by its reciprocal (``ConstantFolding/.../truediv_recip``), so the
variance reaches ONNX as ``1 / max(sqrt(variance), eps)``. With ``invert=True`` Keras multiplies by
``max(sqrt(variance), eps)`` instead. The mean is stored as it is (the generic identity form).
"""

from __future__ import annotations

import numpy as np

from xverify.extract.joints import Context, Joint, weight_names

# Weights a layer's ``call`` never reads, so the ONNX graph rightly holds nothing of them. Keras keeps
# Normalization's ``count`` only so that older saved models load.
UNUSED_AT_INFERENCE = {"Normalization": ("count",)}


def normalization_groups(ctx: Context, li: int) -> list:
    """The variance as the reciprocal TensorFlow folds, or as the divisor itself (``invert``)."""
    import keras

    names = weight_names(ctx.layers[li])
    if "variance" not in names:  # built from mean= and variance= arguments: constants, no weights
        return []
    vi = names.index("variance")
    divisor = np.maximum(np.sqrt(ctx.values[li][vi]), keras.config.epsilon())
    return [
        [
            [
                Joint(
                    ((li, vi),),
                    1 / divisor,
                    lambda a: [_inverse_square(a)],
                    ("1/max(sqrt(variance), eps) (division folded by TensorFlow)",),
                    True,
                )
            ],
            [Joint(((li, vi),), divisor, lambda a: [np.square(a)], ("max(sqrt(variance), eps)",), True)],
        ]
    ]


def _inverse_square(a: np.ndarray) -> np.ndarray:
    # The closest-but-different search may offer any initializer of the right shape, zeros included.
    with np.errstate(divide="ignore"):
        return 1 / np.square(a)
