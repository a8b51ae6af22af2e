"""Which values a layer can give at all, carried forward to the output as intervals.

A ReLU never gives a negative value, a sigmoid stays within (0, 1), a tanh within (-1, 1). Whatever
went wrong before such a layer, what comes after it is computed from values in that range, so the
output can only lie in the interval that range leads to. A number outside it cannot come from the
layers after that point, whatever mistake was made before it.
"""

from __future__ import annotations

import numpy as np

from xverify.explain.activations import ACTIVATIONS
from xverify.explain.layers import activation_of, dense_weights

_INF = np.inf
# Each activation's range over all z; None: unbounded both ways (no conclusion from it).
_RANGES = {
    "relu6": (0.0, 6.0),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softmax": (0.0, 1.0),
    "softsign": (-1.0, 1.0),
    "softplus": (0.0, _INF),
    "exponential": (0.0, _INF),
    "gelu": (-0.17, _INF),
    "silu": (-0.28, _INF),
    "swish": (-0.28, _INF),
    "hard_silu": (-0.375, _INF),
    "mish": (-0.31, _INF),
    "selu": (-1.7581, _INF),
}
# Where the activations that are not monotone take their minimum (for an interval's lower end).
_ARGMIN = {"gelu": -0.7518, "silu": -1.2785, "swish": -1.2785, "mish": -1.1924, "hard_silu": -1.5}


def first_impossible(ex, mine) -> str | None:
    """The first layer after which ``mine`` cannot arise, in one sentence; None if none rules it out.

    Args:
        ex: an Explanation with its graph.
        mine: the user's values, shaped like the output.
    """
    for start, call in enumerate(ex.graph.calls):
        act = activation_of(call.layer) if ex.hand.summaries[start].by_hand else None
        bounds = _range(act) if act is not None else None
        if act is None or bounds is None:
            continue
        shape = ex.hand.values[call.outputs[0]].shape
        lo, hi = _forward(ex, start, np.full(shape, bounds[0]), np.full(shape, bounds[1]))
        if np.any(mine < lo) or np.any(mine > hi):
            return (
                f"A value like that cannot arise after layer '{call.label}' (layer {start + 1}):"
                f" its {act[0]} gives values in [{_f(bounds[0])}, {_f(bounds[1])}], and from "
                f"there the output can only lie in [{_f(lo.min())}, {_f(hi.max())}]."
            )
    return None


def _range(act):
    name, params = act
    if name == "relu":
        if params.get("negative_slope"):
            return None
        top = params.get("max_value")
        return (0.0, _INF if top is None else float(top))
    if name == "elu":
        return (-float(params.get("alpha", 1.0)), _INF)
    return _RANGES.get(name)


def _forward(ex, start, lo, hi):
    """The output interval when call ``start`` gives values in [lo, hi] (later calls exact)."""
    calls = ex.graph.calls
    bounds = {calls[start].outputs[0]: (lo, hi)}
    for call, summary in zip(calls[start + 1 :], ex.hand.summaries[start + 1 :]):
        ins = [bounds.get(k) for k in call.inputs]
        out = None
        if summary.by_hand and ins[0] is not None:
            out = _through(call, summary, *ins[0])
        if out is not None:
            bounds[call.outputs[0]] = out
    last = bounds.get(ex.graph.output_keys[0])
    if last is None:  # the output does not depend on that layer alone
        return np.full_like(ex.output, -_INF), np.full_like(ex.output, _INF)
    return last


def _through(call, summary, lo, hi):
    if call.kind == "Dropout":
        return lo, hi
    if call.kind == "Dense":
        weights = dense_weights(call.layer)
        if weights is None:
            return None
        kernel, bias = weights
        with np.errstate(invalid="ignore"):
            low = np.where(kernel > 0, lo.T * kernel, np.where(kernel < 0, hi.T * kernel, 0))
            high = np.where(kernel > 0, hi.T * kernel, np.where(kernel < 0, lo.T * kernel, 0))
        lo, hi = low.sum(axis=0)[None] + bias, high.sum(axis=0)[None] + bias
    act = activation_of(call.layer)
    if act is None or summary.activation.startswith("linear"):
        return lo, hi
    name, params = act
    if name == "softmax":
        return np.zeros_like(lo), np.ones_like(hi)
    f = ACTIVATIONS[name]
    with np.errstate(over="ignore", invalid="ignore"):
        ends = [f(lo, **params), f(hi, **params)]
        if name in _ARGMIN:
            ends.append(f(np.clip(_ARGMIN[name], lo, hi), **params))
    return np.minimum.reduce(ends), np.maximum.reduce(ends)


def _f(v) -> str:
    return "∞" if v == _INF else "−∞" if v == -_INF else f"{float(v):.4g}"
