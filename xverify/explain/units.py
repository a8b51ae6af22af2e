"""One output element of a layer Keras computes, spelled out (``--unit INDEX``).

For a convolution: the input window and the kernel slice it multiplies; for pooling: the window;
for BatchNormalization and LayerNormalization: the mean, variance, gamma and beta used; for an
Embedding: the table row; for SimpleRNN, GRU and LSTM: the gates of the time step that gives the
element. Each detail is recomputed here in float64 and checked against the layer's Keras output.
The recurrent layers are in ``recurrent``.
"""

from __future__ import annotations

import functools

import numpy as np

from xverify.explain.activations import ACTIVATIONS
from xverify.explain.layers import activation_of, config, weight_name
from xverify.explain.results import UnitDetail, UnitRow


def element_index(spec, shape) -> tuple | None:
    """``spec`` (a flat index, or one index per axis) as an index into ``shape``; None if outside."""
    spec = tuple(int(i) for i in spec)
    size = int(np.prod(shape))
    if len(spec) == 1 and len(shape) != 1:
        return tuple(int(i) for i in np.unravel_index(spec[0], shape)) if 0 <= spec[0] < size else None
    if len(spec) != len(shape) or any(not 0 <= i < n for i, n in zip(spec, shape)):
        return None
    return spec


def detail(call, ins, keras_output, spec) -> UnitDetail | None:
    """The arithmetic of one element of ``call``'s output, or None for a layer not covered here.

    Args:
        call: the layer call.
        ins: its input values (one sample, float64).
        keras_output: the call's output as Keras computed it.
        spec: the element: a flat index, or one index per axis of a sample's output.
    """
    from xverify.explain.recurrent import RECURRENT

    kind = call.kind
    index = element_index(spec, keras_output.shape[1:])
    handler = RECURRENT.get(kind) or _HANDLERS.get(_family(kind))
    if index is None or handler is None or config(call.layer).get("data_format") == "channels_first":
        return None
    rows = handler(call.layer, ins[0][0], index)
    if rows is None:
        return None
    return UnitDetail(
        call.label, index, tuple(rows), rows[-1].values[0], float(keras_output[(0,) + tuple(index)])
    )


def _family(kind: str) -> str:
    if "Conv" in kind and not any(w in kind for w in ("Transpose", "Separable", "LSTM")):
        return "Conv"
    if kind.startswith("Global") and "Pooling" in kind:
        return "GlobalPooling"
    if "Pooling" in kind:
        return "Pooling"
    return kind


def _positions(out_pos, size, kernel, stride, dilation, padding):
    """Input positions a window covers along one axis, and which of them lie inside the input."""
    if padding == "same":
        out = -(-size // stride)
        before = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0) // 2
    elif padding == "causal":
        before = (kernel - 1) * dilation
    else:
        before = 0
    pos = out_pos * stride - before + np.arange(kernel) * dilation
    return pos, (pos >= 0) & (pos < size)


def _window(x, out_index, kernel, strides, dilation, padding):
    """The window of ``x`` (spatial..., channels) under output position ``out_index``."""
    axes = [
        _positions(o, n, k, s, d, padding)
        for o, n, k, s, d in zip(out_index, x.shape[:-1], kernel, strides, dilation)
    ]
    clipped = np.ix_(*[np.clip(p, 0, n - 1) for (p, _), n in zip(axes, x.shape[:-1])])
    rank = len(axes)  # np.ix_ would read boolean masks as indices: broadcast them by hand
    inside = functools.reduce(
        np.logical_and,
        [m.reshape([-1 if a == d else 1 for a in range(rank)]) for d, (_, m) in enumerate(axes)],
    )
    inside = np.broadcast_to(inside, [len(p) for p, _ in axes])
    where = (
        "x["
        + ", ".join(
            f"{p[0]}:{p[-1] + 1}" + (f":{p[1] - p[0]}" if len(p) > 1 and p[1] - p[0] != 1 else "")
            for p, _ in axes
        )
        + ", :]"
    )
    return x[clipped], inside, where


def _ntuple(value, n):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def _activation_rows(layer, z):
    act = activation_of(layer)
    if act is None or act[0] == "linear":
        return []
    a = float(ACTIVATIONS[act[0]](np.array([z]), **act[1])[0])
    return [UnitRow("a", (a,), f"{act[0]}(z)")]


def _conv(layer, x, index):
    settings = config(layer)
    kernel, *rest = (np.asarray(w, np.float64) for w in layer.get_weights())
    rank = kernel.ndim - 2
    out_pos, c = index[:-1], index[-1]
    k = kernel.shape[:rank]
    window, inside, where = _window(
        x,
        out_pos,
        k,
        _ntuple(settings["strides"], rank),
        _ntuple(settings.get("dilation_rate", 1), rank),
        settings["padding"],
    )
    groups = settings.get("groups", 1) or 1
    per_group = kernel.shape[-2]
    if "Depthwise" in type(layer).__name__:
        channel, sliced = c // kernel.shape[-1], kernel[..., c // kernel.shape[-1], c % kernel.shape[-1]]
        values = np.where(inside, window[..., channel], 0.0)
        slice_text = f"depthwise_kernel[..., {channel}, {c % kernel.shape[-1]}]"
    else:
        g = c // (kernel.shape[-1] // groups)
        values = np.where(inside[..., None], window[..., g * per_group : (g + 1) * per_group], 0.0)
        sliced, slice_text = kernel[..., c], f"kernel[..., {c}]"
    total = float(np.sum(values * sliced))
    bias = float(rest[0][c]) if rest and settings.get("use_bias", True) else 0.0
    z = total + bias
    rows = [
        UnitRow(
            "input window", tuple(values.ravel()), f"{where} ({values.size} values, 0 outside the input)"
        ),
        UnitRow("kernel slice", tuple(sliced.ravel()), slice_text),
        UnitRow("Σ window × kernel", (total,), f"SUMPRODUCT of the {values.size} pairs"),
        UnitRow("bias", (bias,), f"bias[{c}]"),
        UnitRow("z", (z,), "Σ + bias"),
    ]
    return rows + _activation_rows(layer, z)


def _pool(layer, x, index):
    settings = config(layer)
    rank = x.ndim - 1
    window, inside, where = _window(
        x,
        index[:-1],
        _ntuple(settings["pool_size"], rank),
        _ntuple(settings["strides"] or settings["pool_size"], rank),
        (1,) * rank,
        settings["padding"],
    )
    values = window[..., index[-1]][inside]
    is_max = "Max" in type(layer).__name__
    value = float(values.max() if is_max else values.mean())
    return [
        UnitRow(
            "window",
            tuple(values),
            f"{where.replace(', :]', '')}, {index[-1]}] ({values.size} values inside the input)",
        ),
        UnitRow("y", (value,), "max of the window" if is_max else "mean of the window"),
    ]


def _global_pool(layer, x, index):
    values = x[..., index[-1]].ravel()
    is_max = "Max" in type(layer).__name__
    value = float(values.max() if is_max else values.mean())
    return [
        UnitRow("channel values", tuple(values), f"x[..., {index[-1]}] ({values.size} values)"),
        UnitRow("y", (value,), "max of them" if is_max else "mean of them"),
    ]


def _batchnorm(layer, x, index):
    settings = config(layer)
    axis = settings.get("axis", -1)
    axis = axis if isinstance(axis, int) else axis[0]
    c = index[axis if axis < 0 else axis - 1]
    weights = dict(zip([weight_name(w) for w in layer.weights], layer.get_weights()))
    gamma = float(weights["gamma"][c]) if "gamma" in weights else 1.0
    beta = float(weights["beta"][c]) if "beta" in weights else 0.0
    mean, var = float(weights["moving_mean"][c]), float(weights["moving_variance"][c])
    eps, value = settings["epsilon"], float(x[index])
    y = gamma * (value - mean) / np.sqrt(var + eps) + beta
    return [
        UnitRow("x", (value,), f"x[{', '.join(map(str, index))}]"),
        UnitRow("moving_mean", (mean,), f"moving_mean[{c}]"),
        UnitRow("moving_variance", (var,), f"moving_variance[{c}]"),
        UnitRow("gamma", (gamma,), f"gamma[{c}]"),
        UnitRow("beta", (beta,), f"beta[{c}]"),
        UnitRow("y", (float(y),), f"gamma · (x − mean) / √(variance + {eps}) + beta"),
    ]


def _layernorm(layer, x, index):
    settings = config(layer)
    axis = settings.get("axis", -1)
    if settings.get("rms_scaling") or axis not in (-1, [-1], x.ndim - 1 + 1, [x.ndim]):
        return None  # normalized over several axes or by RMS: left to Keras
    vector = x[index[:-1]]
    c = index[-1]
    weights = dict(zip([weight_name(w) for w in layer.weights], layer.get_weights()))
    gamma = float(weights["gamma"][c]) if "gamma" in weights else 1.0
    beta = float(weights["beta"][c]) if "beta" in weights else 0.0
    mean, var, eps = float(vector.mean()), float(vector.var()), settings["epsilon"]
    y = gamma * (float(vector[c]) - mean) / np.sqrt(var + eps) + beta
    return [
        UnitRow(
            "normalized values",
            tuple(vector),
            f"x[{', '.join(map(str, index[:-1]))}{', ' if index[:-1] else ''}:] ({vector.size} values)",
        ),
        UnitRow("mean", (mean,), "their mean"),
        UnitRow("variance", (var,), "their variance"),
        UnitRow("x", (float(vector[c]),), f"value {c} of them"),
        UnitRow("gamma", (gamma,), f"gamma[{c}]"),
        UnitRow("beta", (beta,), f"beta[{c}]"),
        UnitRow("y", (float(y),), f"gamma · (x − mean) / √(variance + {eps}) + beta"),
    ]


def _embedding(layer, x, index):
    token = int(x[index[:-1]])
    table = np.asarray(layer.get_weights()[0], np.float64)
    row = token % table.shape[0]  # Keras wraps a negative index
    return [
        UnitRow("token", (float(token),), f"x[{', '.join(map(str, index[:-1]))}]"),
        UnitRow("y", (float(table[row, index[-1]]),), f"embeddings[{row}, {index[-1]}]"),
    ]


_HANDLERS = {
    "Conv": _conv,
    "Pooling": _pool,
    "GlobalPooling": _global_pool,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Embedding": _embedding,
}
