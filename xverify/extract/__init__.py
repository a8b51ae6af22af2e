"""ONNX initializers read back as each Keras layer's weights, matched by value.

Initializer names follow TensorFlow scopes, not Keras layer names, and tf2onnx rewrites weights on the
way (Conv kernels HWIO -> OIHW, LSTM gates reordered and packed, BatchNormalization folded into the
preceding Conv or turned into a scale and an offset, zero biases removed). So every Keras weight is
turned into the ONNX tensors it can become (a "joint": one expected ONNX tensor covering one or more
Keras weights) and the initializers are searched for that tensor, first among those the layer's own
nodes consume (the ``xvl<i>`` scope token, see ``convert.py``), then among all.

    report = match_weights(keras_model, onnx_model)
    for layer in report.layers:
        for w in layer.weights:
            print(layer.layer, w.name, w.transform, w.max_abs_diff, w.passed)

Modules: ``results`` (the values returned), ``forms`` (the layouts of one weight), ``graph`` (which
layer owns a node), ``joints`` (the search), ``batchnorm`` and ``recurrent`` (weights tf2onnx merges),
``normalization`` (the variance TensorFlow folds), ``match`` (``match_weights``) and ``onnx_side``
(``onnx_weights``, an ONNX file alone). Keras, ONNX and TensorFlow are imported only when weights are
read, never on import.
"""

from __future__ import annotations

from xverify.extract.match import match_weights
from xverify.extract.onnx_side import onnx_weights
from xverify.extract.results import LayerWeights, WeightMatch, WeightReport

__all__ = ["LayerWeights", "WeightMatch", "WeightReport", "extract_weights", "match_weights", "onnx_weights"]


def extract_weights(model_or_onnx) -> tuple[LayerWeights, ...]:
    """Every layer's weights as read back from ONNX.

    Args:
        model_or_onnx: a Keras model, an ``onnx.ModelProto``, or a path to either.

    Returns:
        For a Keras model: the layers of ``match_weights(model, convert(model))``, each weight compared
        with ``get_weights()``. For ONNX alone: ``onnx_weights(model)`` (nothing to compare with).
    """
    import os

    import onnx

    from xverify.errors import UsageError

    model = model_or_onnx
    if isinstance(model, (str, os.PathLike)):
        from xverify.load import open_model

        model, _ = open_model(model)
    if isinstance(model, onnx.ModelProto):
        return onnx_weights(model)
    if not hasattr(model, "get_weights"):
        raise UsageError(
            f"extract_weights: expected a Keras model, an ONNX model or a path to one, "
            f"found {type(model).__name__} (a SavedModel has no Keras layers; load the "
            ".keras file instead)."
        )
    from xverify.convert import convert

    return match_weights(model, convert(model)).layers
