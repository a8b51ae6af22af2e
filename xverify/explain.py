"""The step-by-step arithmetic of one input: the hand calculation a learner does from get_weights().

Dense layers and elementwise activation layers are recomputed unit by unit in float64 NumPy; every
other layer (Conv2D, pooling, BatchNormalization, LSTM, ...) is summarized by its formula in words
and its output as computed by Keras itself, so an explanation never fails on a layer it cannot spell
out. The same pass is repeated with the hidden activations skipped, the classic mistake.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from xverify.errors import InputDataError, MissingDependencyError

MAX_UNITS = 64  # wider layers (or Dense layers fed by more inputs) show only their first units
SHOWN = 5
_ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"}
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))  # never overflows, unlike 1 / (1 + exp(-z))


def _relu(z, negative_slope=0.0, max_value=None, threshold=0.0):
    y = np.where(z > threshold, z, negative_slope * (z - threshold)) + 0.0  # + 0.0: no "-0.0"
    return y if max_value is None else np.minimum(y, max_value)


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))  # subtract the max first: stable
    return e / e.sum(axis=axis, keepdims=True)


def _gelu(z, approximate=False):
    if approximate:  # Keras' tanh form, used when Dense/Activation asks for approximate=True
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    return 0.5 * z * (1 + _erf(z / math.sqrt(2)))


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


ACTIVATIONS = {
    "linear": lambda z: z, "relu": _relu, "relu6": lambda z: np.clip(z, 0, 6),
    "leaky_relu": lambda z, negative_slope=0.2: np.where(z >= 0, z, negative_slope * z),
    "elu": _elu, "selu": lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA), "gelu": _gelu,
    "silu": lambda z: z * _sigmoid(z), "swish": lambda z: z * _sigmoid(z), "sigmoid": _sigmoid,
    "hard_sigmoid": lambda z: np.clip(z + 3, 0, 6) / 6, "tanh": np.tanh, "softmax": _softmax,
    "softplus": lambda z: np.logaddexp(0.0, z), "softsign": lambda z: z / (1 + np.abs(z)),
    "exponential": np.exp, "hard_silu": lambda z: z * np.clip(z + 3, 0, 6) / 6,
    "mish": lambda z: z * np.tanh(np.logaddexp(0.0, z)),
}


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
    """

    model_name: str
    input: np.ndarray
    steps: tuple
    layers: tuple
    output: np.ndarray
    tensorflow_output: np.ndarray
    output_without_activations: np.ndarray
    max_abs_diff: float

    def text(self) -> str:
        """Return the plain-text walk-through (no markup)."""
        return "\n".join(_render(self))

    def rows(self) -> list[dict]:
        """Return the step table: one dict per spelled-out unit."""
        return [{"layer": s.layer, "unit": s.unit, "inputs": _brief(s.inputs),
                 "weights": _brief(s.weights), "bias": "" if s.bias is None else s.bias,
                 "z": s.z, "activation": s.activation, "a": s.a, "changed": s.changed}
                for s in self.steps]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write ``rows()`` to a CSV file with a header row."""
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def to_xlsx(self, path: str | os.PathLike) -> None:
        """Write ``rows()`` to an Excel sheet (needs openpyxl)."""
        try:
            import openpyxl
        except ImportError as exc:
            raise MissingDependencyError("Writing .xlsx needs openpyxl, which is not installed; "
                                         "run `pip install openpyxl` or use --csv.") from exc
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "steps"
        sheet.append(_COLUMNS)
        for row in self.rows():
            sheet.append([row[c] for c in _COLUMNS])
        book.save(path)


_COLUMNS = ["layer", "unit", "inputs", "weights", "bias", "z", "activation", "a", "changed"]


def explain(model, x) -> Explanation:
    """Recompute one input's forward pass by hand from the layers' weights and check it against TF.

    Args:
        model: a Keras model, or the path of a .keras/.h5 file (loaded in safe mode).
        x: the values of one sample: a scalar, a list, a numpy array or a comma-separated string,
            as many values as the model's single input holds per sample.

    Returns:
        An ``Explanation``; ``.text()`` is the walk-through, ``.rows()`` the table of units.
    """
    path = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from xverify.load import load_keras

        path = os.fsdecode(model)
        model = load_keras(path)
    sample = _sample(model, x, path)
    tensor = model.inputs[0]
    feed = sample.astype(tensor.dtype)
    tf_out = np.asarray(_first(model(_structured(model, feed), training=False)), np.float64)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    try:
        taps = _taps(model, layers, feed)
        summaries, steps, output = _walk(model, layers, sample, taps, skip=False)
    except (ValueError, KeyError):  # a layer used twice has no single input and output to tap
        whole = LayerSummary(model.name, type(model).__name__, "the whole model, computed by Keras "
                             "(it reuses a layer, so its layers cannot be followed one by one)",
                             _shape(tensor), _shape(model.outputs[0]), tf_out, False)
        unknown = np.full_like(tf_out, np.nan)
        return Explanation(model.name, sample, (), (whole,), tf_out, tf_out, unknown, 0.0)
    try:
        without = _walk(model, layers, sample, None, skip=True)[2]
    except Exception:  # a layer Keras cannot call on its own (masks, custom kwargs): say so, go on
        without = np.full_like(output, np.nan)
    diff = float(np.max(np.abs(output - tf_out))) if output.size else 0.0
    return Explanation(model.name, sample, tuple(steps), tuple(summaries), output, tf_out, without,
                       diff)


def _structured(model, feed):
    """``feed`` as the model declared its inputs: a list of one when built from ``[Input]``."""
    try:
        return [feed] if isinstance(model.input, list) else feed
    except AttributeError:  # a Sequential built with .build() has inputs but no called .input
        return feed


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _sample(model, x, path) -> np.ndarray:
    """One sample's values shaped (1, *input_shape[1:]), or an InputDataError saying why not."""
    where = path or f"model '{model.name}'"
    try:
        inputs = model.inputs
    except (AttributeError, ValueError) as exc:
        raise InputDataError(f"{where}: the model is not built, so its input shape is unknown; "
                             "call model.build(input_shape) or save a built model.") from exc
    if len(inputs) != 1:
        raise InputDataError(f"{where}: has {len(inputs)} inputs "
                             f"({', '.join(t.name for t in inputs)}); explain handles single-input "
                             "models only. Use `xverify check` for this model.")
    if isinstance(x, str):
        x = [part for part in re.split(r"[,\s]+", x.strip()) if part]
    try:
        values = np.asarray(x, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"{where}: the input values must be numbers, found {x!r}. Pass "
                             "comma-separated numbers with --input, e.g. --input 10.") from exc
    shape = tuple(inputs[0].shape)
    per = shape[1:]
    known = math.prod(d for d in per if d is not None)
    free = sum(d is None for d in per)
    fits = values.size == known if free == 0 else (free == 1 and values.size and
                                                   values.size % known == 0)
    if not fits:
        shown = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
        raise InputDataError(f"{where}: expected {known} input value(s) per sample for input "
                             f"'{inputs[0].name}' of shape {shown}, found {values.size}. Pass "
                             f"{known} comma-separated values with --input.")
    return values.reshape((1, *[-1 if d is None else d for d in per]))


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _taps(model, layers, feed) -> dict:
    """Every layer's own Keras output for ``feed``, keyed by the id of its symbolic tensor."""
    import keras

    tensors = [t for layer in layers for t in _as_list(layer.output)]
    tap_model = keras.Model(model.inputs[0], tensors)
    values = _as_list(tap_model(feed, training=False))
    return {id(t): np.asarray(v, np.float64) for t, v in zip(tensors, values)}


def _walk(model, layers, sample, taps, skip):
    """One forward pass: spelled-out layers by hand, others from ``taps`` (or Keras when None).

    With ``skip`` every activation spelled out here is skipped except the last layer's.
    """
    values = {id(model.inputs[0]): sample}
    summaries, steps = [], []
    last = {id(t) for t in model.outputs}
    for layer in layers:
        ins = [values[id(t)] for t in _as_list(layer.input)]
        outs = _as_list(layer.output)
        is_last = any(id(t) in last for t in outs)
        summary, layer_steps = _explain_layer(layer, ins, skip and not is_last)
        if summary is None:  # not spelled out: Keras' own result
            results = [taps[id(t)] for t in outs] if taps else _keras_call(layer, ins)
            summary = LayerSummary(layer.name, type(layer).__name__, _formula(layer),
                                   _shape(layer.input), _shape(layer.output), results[0], False)
            values.update({id(t): r for t, r in zip(outs, results)})
        else:
            values[id(outs[0])] = summary.output
            if taps:
                tf_diff = float(np.max(np.abs(summary.output - taps[id(outs[0])]), initial=0.0))
                summary = dataclasses.replace(summary, tf_max_abs_diff=tf_diff)
        summaries.append(summary)
        steps.extend(layer_steps)
    return summaries, steps, values[id(model.outputs[0])]


def _keras_call(layer, ins) -> list:
    fed = [np.asarray(v, t.dtype) for v, t in zip(ins, _as_list(layer.input))]
    result = layer(fed if isinstance(layer.input, (list, tuple)) else fed[0])
    return [np.asarray(r, np.float64) for r in _as_list(result)]


def _shape(tensor) -> tuple:
    return tuple(_as_list(tensor)[0].shape)


def _config(layer) -> dict:
    try:
        return layer.get_config()
    except Exception:  # an activation Keras cannot serialize (functools.partial) breaks get_config
        return {}


def _activation_of(layer):
    """``(name, params)`` of the activation a layer applies, or None when NumPy here lacks it."""
    kind, config = type(layer).__name__, _config(layer)
    fixed = {"ReLU": ("relu", ("negative_slope", "max_value", "threshold")),
             "LeakyReLU": ("leaky_relu", ("negative_slope",)), "ELU": ("elu", ("alpha",)),
             "Softmax": ("softmax", ("axis",))}
    if kind in fixed:
        name, keys = fixed[kind]
        return name, {k: config[k] for k in keys if k in config}
    function, params = getattr(layer, "activation", None), {}
    if isinstance(function, functools.partial):  # e.g. partial(gelu, approximate=True)
        function, params = function.func, dict(function.keywords)
    entry = config.get("activation")
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
        params.update(entry["config"])  # a serialized activation object carries its arguments
    name = getattr(function, "__name__", type(function).__name__).lower()
    if name not in ACTIVATIONS:
        return None
    accepted = inspect.signature(ACTIVATIONS[name]).parameters
    if any(k not in accepted for k in params if k not in ("name", "trainable", "dtype")):
        return None  # an argument the NumPy version would ignore: do not pretend
    return name, {k: v for k, v in params.items() if k in accepted and k != "z"}


def _label(act) -> str:
    name, params = act
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if v and not (k == "axis" and v == -1))
    return f"{name}({shown})" if shown else name


def _explain_layer(layer, ins, skip):
    """``(LayerSummary, steps)`` for a layer spelled out by hand, or ``(None, [])``."""
    kind = type(layer).__name__
    if kind == "Dropout":
        rate = _config(layer).get("rate", "?")
        return LayerSummary(layer.name, kind, f"Dropout(rate {rate}) is the identity at inference: "
                            "output = input (it drops units only while training)",
                            _shape(layer.input), _shape(layer.output), ins[0], True), []
    act = _activation_of(layer) if len(ins) == 1 else None
    if act is None or kind not in _ELEMENTWISE | {"Dense"}:
        return None, []
    if kind == "Dense":
        weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
        if ins[0].ndim != 2 or len(weights) not in (1, 2):
            return None, []  # Dense over a sequence, or a quantized/LoRA kernel: Keras explains it
        kernel = weights[0]
        bias = weights[1] if len(weights) == 2 else np.zeros(kernel.shape[1])
        z = ins[0] @ kernel + bias
    else:
        kernel = bias = None
        z = ins[0]
    a = z if skip else ACTIVATIONS[act[0]](z, **act[1])
    changed = np.abs(a - z) > 1e-12 * np.maximum(1.0, np.abs(z))
    bounds = {"relu": (0.0, act[1].get("max_value") or np.inf), "relu6": (0.0, 6.0),
              "hard_sigmoid": (0.0, 1.0)}.get(act[0], ())
    clamped = changed & np.isin(a, bounds)
    limit = MAX_UNITS if kernel is None or kernel.shape[0] <= MAX_UNITS else 0
    shown = z.size if z.size <= limit else min(z.size, SHOWN)
    label = "linear (skipped)" if skip else _label(act)
    steps = [Step(layer.name, i, tuple(ins[0][0]) if kernel is not None else (float(z.flat[i]),),
                  tuple(kernel[:, i]) if kernel is not None else (),
                  None if bias is None else float(bias[i]), float(z.flat[i]), label,
                  float(a.flat[i]), bool(changed.flat[i]), bool(clamped.flat[i]))
             for i in range(shown)]
    words = f"a = {label}(x·W + b)" if kernel is not None else f"a = {label}(x), value by value"
    summary = LayerSummary(layer.name, kind, words, _shape(layer.input), _shape(layer.output), a,
                           True, shown, int(changed.sum()), int(clamped.sum()), label)
    return summary, steps


def _formula(layer) -> str:
    """The layer's computation in words, for layers Keras computes here."""
    kind, config = type(layer).__name__, _FormatDict(_config(layer))
    shapes = ", ".join("x".join(map(str, w.shape)) for w in layer.weights)
    act = _activation_of(layer)
    act_name = _label(act) if act else getattr(getattr(layer, "activation", None), "__name__", "")
    then = f", then {act_name}" if act_name and act_name != "linear" else ""
    if "Conv" in kind and layer.weights:
        bias = " + bias" if config.get("use_bias") else ""
        kernel = "x".join(map(str, layer.weights[0].shape))
        return (f"{kind}: y = conv(x, kernel[{kernel}], strides {config['strides']}, padding "
                f"{config['padding']}){bias}{then}")
    if "Pooling" in kind:
        op = "max" if "Max" in kind else "mean"
        if kind.startswith("Global"):
            return f"{kind}: y = {op} over all positions, per channel"
        return f"{kind}: y = {op} over {config['pool_size']} windows, strides {config['strides']}"
    template = _FORMULAS.get(kind)
    if template:
        return f"{kind}: " + template.format_map(config) + then
    if kind == "Dense":
        return f"Dense: y = x·W[{shapes}] + b{then} (computed by Keras)"
    return f"{kind}: computed by Keras" + (f" from weights [{shapes}]" if shapes else "") + then


class _FormatDict(dict):
    def __missing__(self, key):
        return "?"


_FORMULAS = {
    "BatchNormalization": "y = gamma · (x − moving_mean) / √(moving_variance + {epsilon}) + beta",
    "LayerNormalization": "y = gamma · (x − mean(x)) / √(variance(x) + {epsilon}) + beta",
    "Flatten": "y = x flattened into one vector", "Reshape": "y = x reshaped to {target_shape}",
    "Embedding": "y = row x of the embedding table [{input_dim}x{output_dim}]",
    "Add": "y = the sum of the inputs", "Multiply": "y = the product of the inputs",
    "Concatenate": "y = the inputs joined along axis {axis}",
    "Average": "y = the mean of the inputs",
    "LSTM": "y = LSTM({units}) run over the time steps (return_sequences={return_sequences})",
    "GRU": "y = GRU({units}) run over the time steps (return_sequences={return_sequences})",
    "SimpleRNN": "y = SimpleRNN({units}) over the time steps (return_sequences={return_sequences})",
}


def _fmt(v) -> str:
    v = float(v) + 0.0
    if v != 0 and (abs(v) < 1e-4 or abs(v) >= 1e6):
        return f"{v:.3e}"
    return f"{v:.4f}"


def _num(v) -> str:
    """An input value as a learner typed it: 10 rather than 10.0000."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e9 else _fmt(v)


def _brief(values) -> str:
    return ", ".join(_num(v) for v in values) if len(values) <= 4 else f"{len(values)} values"


def _vector(values, limit=8) -> str:
    flat = np.ravel(values)
    if flat.size == 1:
        return _fmt(flat[0])
    more = f", … ({flat.size} values)" if flat.size > limit else ""
    return "[" + ", ".join(_fmt(v) for v in flat[:limit]) + more + "]"


def _unit_line(s: Step) -> str:
    if not s.weights:
        calc = f"{s.activation}({_fmt(s.z)})"
        return f"  {s.layer}[{s.unit}]: {calc} = {_fmt(s.a)}{_mark(s)}"
    if len(s.weights) <= 4:
        terms = " + ".join(f"{_num(x)} × {_fmt(w)}" for x, w in zip(s.inputs, s.weights))
        calc = f"{terms} + {_fmt(s.bias)} = {_fmt(s.z)}"
    else:
        calc = (f"x·w + b = Σ({len(s.weights)} terms) + b = {_fmt(s.z - s.bias)} + {_fmt(s.bias)}"
                f" = {_fmt(s.z)}")
    if s.activation.startswith("linear"):
        return f"  {s.layer}[{s.unit}]: {calc} ({s.activation}: a = z)"
    return f"  {s.layer}[{s.unit}]: {calc} → {s.activation} → {_fmt(s.a)}{_mark(s)}"


def _mark(s: Step) -> str:
    return " (clamped)" if s.clamped else " (changed)" if s.changed else ""


def _layer_lines(summary: LayerSummary, steps) -> list[str]:
    if not summary.by_hand:
        return [f"Layer '{summary.name}' — {summary.formula}",
                f"  computed by Keras: {summary.input_shape} → {summary.output_shape}; output min "
                f"{_fmt(summary.min)}, max {_fmt(summary.max)}, mean {_fmt(summary.mean)}"]
    if not summary.activation:  # by hand without an activation: only Dropout, the identity
        return [f"Layer '{summary.name}' — {summary.formula}"]
    n_in, n_out = summary.input_shape[-1], summary.output_shape[-1]
    shapes = (f"{n_in} input{'s' * (n_in != 1)} → {n_out} unit{'s' * (n_out != 1)}"
              if summary.kind == "Dense" else f"{summary.input_shape} → {summary.output_shape}")
    lines = [f"Layer '{summary.name}' — {summary.kind}, {shapes}: {summary.formula}"]
    if summary.activation.startswith("softmax"):
        lines.append("  (softmax divides exp(z) of each unit by the sum of exp(z) over all "
                     f"{summary.output.size} units)")
    lines += [_unit_line(s) for s in steps]
    if summary.output.size > summary.shown:
        lines.append(f"  ... {summary.output.size - summary.shown} more units not shown")
    lines.append(f"  output of '{summary.name}' = {_vector(summary.output)}")
    if summary.changed:
        lines.append(f"  {summary.activation} changed {summary.changed} of {summary.output.size}"
                     " values")
    if summary.tf_max_abs_diff is not None:
        lines.append(f"  Keras' own output for this layer differs by at most "
                     f"{summary.tf_max_abs_diff:.2e}")
    return lines


def _render(ex: Explanation) -> list[str]:
    lines = [f"Explaining model '{ex.model_name}' for input x = {_brief(ex.input.ravel())}",
             "Every number is recomputed with NumPy in float64 from the layers' get_weights().", ""]
    for summary in ex.layers:
        lines += _layer_lines(summary, [s for s in ex.steps if s.layer == summary.name]) + [""]
    agree = "they agree" if ex.max_abs_diff <= 1e-5 else "they DIFFER by more than 1e-5"
    source = "NumPy, float64" if any(s.by_hand for s in ex.layers) else "Keras, nothing by hand"
    lines += [f"Final output ({source}):      {_vector(ex.output)}",
              f"TensorFlow's prediction (float32):  {_vector(ex.tensorflow_output)}",
              f"Difference max |NumPy − TensorFlow|: {ex.max_abs_diff:.2e} ({agree})", ""]
    return lines + _closing(ex)


def _closing(ex: Explanation) -> list[str]:
    """What the classic mistake, forgetting the activations, would have produced."""
    if np.isnan(ex.output_without_activations).any():
        return ["The output without activations could not be computed for this model."]
    if np.allclose(ex.output_without_activations, ex.tensorflow_output, rtol=0, atol=1e-6):
        return [f"Skipping the hidden activations would not change the output for this input "
                f"({_vector(ex.tensorflow_output)}): none of them changed a value."]
    lines = ["If the activations were skipped the output would be "
             f"{_vector(ex.output_without_activations)} instead of "
             f"{_vector(ex.tensorflow_output)}."]
    hidden = [s for s in ex.layers[:-1] if s.by_hand and s.changed]
    if hidden:
        causes = "; ".join(f"the {s.activation} of layer '{s.name}' changed {s.changed} of "
                           f"{s.output.size} values"
                           + (f" (it clamped {s.clamped} " + ("negative z to 0)" if s.activation
                                                               == "relu" else "to a bound)")
                              if s.clamped else "") for s in hidden)
        lines.append(f"Why: {causes}; skipping it lets those values reach the next layer "
                     "unchanged.")
    else:
        lines.append("Why: no hidden activation changed any value for this input.")
    if any(not s.by_hand for s in ex.layers):
        lines.append("(Activations inside layers computed by Keras, such as Conv2D, are kept.)")
    return lines
