"""One Keras layer at a time: which activation it applies, and its arithmetic spelled out by hand.

Dense layers and elementwise activation layers are recomputed unit by unit in float64 NumPy and
Dropout is the identity; every other layer is left to Keras (``spell_out`` returns None for it).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from xverify.explain.activations import ACTIVATIONS, clamp_bounds
from xverify.explain.results import LayerSummary, Step

MAX_UNITS = 64  # wider layers (or Dense layers fed by more inputs) show only their first units
SHOWN = 5
_ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"}
# Layers that carry their activation's arguments in their own config rather than in .activation
_FIXED = {"ReLU": ("relu", ("negative_slope", "max_value", "threshold")),
          "LeakyReLU": ("leaky_relu", ("negative_slope",)), "ELU": ("elu", ("alpha",)),
          "Softmax": ("softmax", ("axis",))}


def as_list(value) -> list:
    """``value`` as a list: a layer's input or output is one tensor or a list of them."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def first(value):
    """The first of a list or tuple (a model's outputs), or ``value`` itself."""
    return value[0] if isinstance(value, (list, tuple)) else value


def shape(tensor) -> tuple:
    """The shape of a tensor, or of the first of a list of tensors."""
    return tuple(first(tensor).shape)


def config(layer) -> dict:
    """``layer.get_config()``, or ``{}`` when the layer cannot serialize itself."""
    try:
        return layer.get_config()
    except Exception:  # an activation Keras cannot serialize (functools.partial) breaks get_config
        return {}


def summarize(layer, formula: str, output, by_hand: bool, **more) -> LayerSummary:
    """The LayerSummary of ``layer`` with its name, kind and shapes filled in."""
    return LayerSummary(layer.name, type(layer).__name__, formula, shape(layer.input),
                        shape(layer.output), output, by_hand, **more)


def activation_of(layer):
    """``(name, params)`` of the activation a layer applies, or None when NumPy here lacks it."""
    kind, settings = type(layer).__name__, config(layer)
    if kind in _FIXED:
        name, keys = _FIXED[kind]
        return name, {k: settings[k] for k in keys if k in settings}
    function, params = getattr(layer, "activation", None), {}
    if isinstance(function, functools.partial):  # e.g. partial(gelu, approximate=True)
        function, params = function.func, dict(function.keywords)
    entry = settings.get("activation")
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
        params.update(entry["config"])  # a serialized activation object carries its arguments
    name = getattr(function, "__name__", type(function).__name__).lower()
    if name not in ACTIVATIONS:
        return None
    accepted = inspect.signature(ACTIVATIONS[name]).parameters
    if any(k not in accepted for k in params if k not in ("name", "trainable", "dtype")):
        return None  # an argument the NumPy version would ignore: do not pretend
    return name, {k: v for k, v in params.items() if k in accepted and k != "z"}


def label(act) -> str:
    """An activation as the walk-through names it: ``relu``, ``relu(max_value=6)``, ..."""
    name, params = act
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if v and not (k == "axis" and v == -1))
    return f"{name}({shown})" if shown else name


def spell_out(layer, ins, skip):
    """Recompute a Dense, elementwise activation or Dropout layer by hand in float64.

    Args:
        layer: the Keras layer.
        ins: its input values, one array per input tensor.
        skip: leave the activation out (``a = z``), the classic mistake.

    Returns:
        ``(LayerSummary, steps)``, or ``(None, [])`` for a layer Keras has to compute.
    """
    kind = type(layer).__name__
    if kind == "Dropout":
        rate = config(layer).get("rate", "?")
        return summarize(layer, f"Dropout(rate {rate}) is the identity at inference: output = "
                         "input (it drops units only while training)", ins[0], True), []
    act = activation_of(layer) if len(ins) == 1 else None
    if act is None or kind not in _ELEMENTWISE | {"Dense"}:
        return None, []
    kernel = bias = None
    z = ins[0]
    if kind == "Dense":
        affine = _affine(layer, ins[0])
        if affine is None:
            return None, []
        kernel, bias, z = affine
    a = z if skip else ACTIVATIONS[act[0]](z, **act[1])
    changed = np.abs(a - z) > 1e-12 * np.maximum(1.0, np.abs(z))
    clamped = changed & np.isin(a, clamp_bounds(*act))
    limit = MAX_UNITS if kernel is None or kernel.shape[0] <= MAX_UNITS else 0
    shown = z.size if z.size <= limit else min(z.size, SHOWN)
    name = "linear (skipped)" if skip else label(act)
    steps = [Step(layer.name, i, tuple(ins[0][0]) if kernel is not None else (float(z.flat[i]),),
                  tuple(kernel[:, i]) if kernel is not None else (),
                  None if bias is None else float(bias[i]), float(z.flat[i]), name,
                  float(a.flat[i]), bool(changed.flat[i]), bool(clamped.flat[i]))
             for i in range(shown)]
    words = f"a = {name}(x·W + b)" if kernel is not None else f"a = {name}(x), value by value"
    summary = summarize(layer, words, a, True, shown=shown, changed=int(changed.sum()),
                        clamped=int(clamped.sum()), activation=name)
    return summary, steps


def _affine(layer, x):
    """``(kernel, bias, x·kernel + bias)`` of a Dense layer, or None when Keras should do it."""
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    if x.ndim != 2 or len(weights) not in (1, 2):
        return None  # Dense over a sequence, or a quantized/LoRA kernel: Keras explains it
    kernel = weights[0]
    bias = weights[1] if len(weights) == 2 else np.zeros(kernel.shape[1])
    return kernel, bias, x @ kernel + bias
