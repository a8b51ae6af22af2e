"""A layer's computation in words, for the layers Keras computes rather than NumPy here."""

from __future__ import annotations

from xverify.explain.layers import activation_of, config, label


class _FormatDict(dict):
    """Config values for ``str.format_map``: a key the layer lacks reads as "?"."""

    def __missing__(self, key):
        return "?"


_FORMULAS = {
    "BatchNormalization": "y = gamma · (x − moving_mean) / √(moving_variance + {epsilon}) + beta",
    "LayerNormalization": "y = gamma · (x − mean(x)) / √(variance(x) + {epsilon}) + beta",
    "Flatten": "y = x flattened into one vector",
    "Rescaling": "y = x · {scale} + {offset}",
    "Normalization": "y = (x − mean) / √variance, with the mean and variance it was adapted to",
    "Reshape": "y = x reshaped to {target_shape}",
    "Embedding": "y = row x of the embedding table [{input_dim}x{output_dim}]",
    "Add": "y = the sum of the inputs",
    "Multiply": "y = the product of the inputs",
    "Concatenate": "y = the inputs joined along axis {axis}",
    "Average": "y = the mean of the inputs",
    "LSTM": "y = LSTM({units}) run over the time steps (return_sequences={return_sequences})",
    "GRU": "y = GRU({units}) run over the time steps (return_sequences={return_sequences})",
    "SimpleRNN": "y = SimpleRNN({units}) over the time steps (return_sequences={return_sequences})",
}


def formula(layer) -> str:
    """The layer's computation in words, e.g. ``Flatten: y = x flattened into one vector``.

    Args:
        layer: a Keras layer that is not spelled out by hand.

    Returns:
        One line: the layer's kind, then what it computes from its config and weights.
    """
    kind, settings = type(layer).__name__, _FormatDict(config(layer))
    weights = getattr(layer, "weights", [])  # a keras.ops operation in the graph has none
    shapes = ", ".join(_dims(w.shape) for w in weights)
    act = activation_of(layer)
    act_name = label(act) if act else getattr(getattr(layer, "activation", None), "__name__", "")
    then = f", then {act_name}" if act_name and act_name != "linear" else ""
    if "Conv" in kind and weights:
        bias = " + bias" if settings.get("use_bias") else ""
        return (
            f"{kind}: y = conv(x, kernel[{_dims(weights[0].shape)}], strides "
            f"{settings['strides']}, padding {settings['padding']}){bias}{then}"
        )
    if "Pooling" in kind:
        op = "max" if "Max" in kind else "mean"
        if kind.startswith("Global"):
            return f"{kind}: y = {op} over all positions, per channel"
        return f"{kind}: y = {op} over {settings['pool_size']} windows, strides {settings['strides']}"
    template = _FORMULAS.get(kind)
    if template:
        return f"{kind}: " + template.format_map(settings) + then
    if kind == "Dense":
        return f"Dense: y = x·W[{shapes}] + b{then} (computed by Keras)"
    if not hasattr(layer, "get_weights"):
        return f"{kind}: the keras.ops operation '{getattr(layer, 'name', kind)}'"
    return f"{kind}: computed by Keras" + (f" from weights [{shapes}]" if shapes else "") + then


def _dims(shape) -> str:
    return "x".join(map(str, shape))
