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

SCALING_KINDS = {"Rescaling", "Normalization", "BatchNormalization"}

MAX_UNITS = 64  # wider layers (or Dense layers fed by more inputs) show only their first units
SHOWN = 5
_ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"}
# Layers that carry their activation's arguments in their own config rather than in .activation
_FIXED = {
    "ReLU": ("relu", ("negative_slope", "max_value", "threshold")),
    "LeakyReLU": ("leaky_relu", ("negative_slope",)),
    "ELU": ("elu", ("alpha",)),
    "Softmax": ("softmax", ("axis",)),
}


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


def weight_name(weight) -> str:
    """A weight's own name ("gamma", "moving_mean"), without the layer's path."""
    return str(getattr(weight, "path", weight.name)).split("/")[-1].split(":")[0]


def summarize(call, formula: str, output, by_hand: bool, **more) -> LayerSummary:
    """The LayerSummary of one layer call with its label, kind and shapes filled in."""
    return LayerSummary(
        call.label,
        call.kind,
        formula,
        shape(call.node.input_tensors),
        shape(call.node.outputs),
        output,
        by_hand,
        repeat_of=call.repeat_of,
        **more,
    )


def activation_of(layer):
    """``(name, params)`` of the activation a layer applies, or None when NumPy here lacks it."""
    kind, settings = type(layer).__name__, config(layer)
    if not hasattr(layer, "get_weights"):
        return None  # a keras.ops operation (the NotEqual that makes a mask): Keras computes it
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


def spell_out(call, ins, tweak=None, float16=False):
    """Recompute a Dense, elementwise activation or Dropout layer call by hand in float64.

    Args:
        call: the layer call (``graph.Call``).
        ins: its input values, one array per input tensor.
        tweak: the mistakes to make here (``forward.Tweak``), None for none.
        float16: round the weights and every result to float16 (a mistake ``diagnose`` tries).

    Returns:
        ``(LayerSummary, steps)``, or ``(None, [])`` for a layer Keras has to compute.
    """
    layer, kind = call.layer, call.kind
    if kind == "Dropout":
        rate = config(layer).get("rate", "?")
        return summarize(
            call,
            f"Dropout(rate {rate}) is the identity at inference: output = "
            "input (it drops units only while training)",
            ins[0],
            True,
        ), []
    if kind in SCALING_KINDS and len(ins) == 1:
        return _scale(call, ins[0], float16)
    act = activation_of(layer) if len(ins) == 1 else None
    if act is None or kind not in _ELEMENTWISE | {"Dense"}:
        return None, []
    skip = bool(tweak and tweak.skip_activation)
    kernel = bias = None
    z = ins[0]
    if kind == "Dense":
        affine = _affine(layer, ins[0], tweak, float16)
        if affine is None:
            return None, []
        kernel, bias, z = affine
    a = round16(z if skip else ACTIVATIONS[act[0]](z, **act[1]), float16)
    changed = np.abs(a - z) > 1e-12 * np.maximum(1.0, np.abs(z))
    clamped = changed & np.isin(a, clamp_bounds(*act))
    limit = MAX_UNITS if kernel is None or kernel.shape[0] <= MAX_UNITS else 0
    shown = z.size if z.size <= limit else min(z.size, SHOWN)
    name = "linear (skipped)" if skip else label(act)
    steps = [
        Step(
            call.label,
            i,
            tuple(ins[0][0]) if kernel is not None else (float(z.flat[i]),),
            tuple(kernel[:, i]) if kernel is not None else (),
            None if bias is None else float(bias[i]),
            float(z.flat[i]),
            name,
            float(a.flat[i]),
            bool(changed.flat[i]),
            bool(clamped.flat[i]),
        )
        for i in range(shown)
    ]
    if tweak and tweak.reversed_units:
        a = a[..., ::-1]
    words = f"a = {name}(x·W + b)" if kernel is not None else f"a = {name}(x), value by value"
    summary = summarize(
        call,
        words,
        a,
        True,
        shown=shown,
        changed=int(changed.sum()),
        clamped=int(clamped.sum()),
        activation=name,
    )
    return summary, steps


def _scale(call, x, float16):
    """Rescaling, Normalization or BatchNormalization value by value, or (None, []) for Keras."""
    from xverify.explain.scaling import scaling_of

    scaling = scaling_of(call.layer, x.shape[-1])
    if scaling is None:
        return None, []
    y = round16(scaling.apply(x), float16)
    shown = y.size if y.size <= MAX_UNITS else SHOWN
    channel = np.arange(y.size) % x.shape[-1]
    steps = [
        Step(
            call.label,
            i,
            (float(x.flat[i]),),
            (),
            None,
            float(x.flat[i]),
            "",
            float(y.flat[i]),
            False,
            formula=_scale_terms(scaling, int(channel[i]), float(x.flat[i])),
        )
        for i in range(shown)
    ]
    return summarize(call, scaling.words, y, True, shown=shown), steps


def _scale_terms(s, c: int, x: float) -> str:
    """``(x − m) / d · g + b`` with the numbers of channel ``c``, leaving out the no-op parts."""
    text = _num4(x)
    if s.center[c] != 0:
        text = f"({text} − {_num4(s.center[c])})"
    if s.divisor[c] != 1:
        text = f"{text} / {_num4(s.divisor[c])}"
    if s.gain[c] != 1:
        text = f"{text} · {_num4(s.gain[c])}"
    return f"{text} + {_num4(s.shift[c])}" if s.shift[c] != 0 else text


def _num4(v) -> str:
    return f"{float(v):.6g}"


def dense_weights(layer):
    """``(kernel, bias)`` of a plain Dense layer in float64 (zeros without a bias), or None."""
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    if len(weights) not in (1, 2) or weights[0].ndim != 2:
        return None  # a quantized or LoRA kernel: Keras explains it
    kernel = weights[0]
    return kernel, weights[1] if len(weights) == 2 else np.zeros(kernel.shape[1])


def _affine(layer, x, tweak, float16):
    """``(kernel, bias, x·kernel + bias)`` of a Dense call, or None when Keras should do it."""
    weights = dense_weights(layer)
    if x.ndim != 2 or weights is None:
        return None  # Dense over a sequence: Keras explains it
    kernel, bias = (round16(w, float16) for w in weights)
    if tweak and tweak.transposed:  # the numbers read column by column: W.T for a square W
        kernel = kernel.T.reshape(kernel.shape)
    if tweak and tweak.no_bias:
        bias = np.zeros_like(bias)
    return kernel, bias, round16(x @ kernel + bias, float16)


def round16(values, float16: bool):
    """``values`` rounded to float16 (kept in float64) when ``float16``, else unchanged."""
    return np.asarray(values, np.float16).astype(np.float64) if float16 else values
