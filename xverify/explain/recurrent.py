"""One recurrent step spelled out: the gates of SimpleRNN, GRU and LSTM for one unit.

The whole recurrence is rerun in float64 from the layer's weights (Keras' gate order: LSTM i, f, c,
o; GRU z, r, h), and the step that gives the chosen element is written out: its input x_t, the
previous state, each gate's value and the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xverify.explain.activations import ACTIVATIONS
from xverify.explain.layers import config
from xverify.explain.results import UnitRow


def _functions(layer):
    settings = config(layer)
    act = ACTIVATIONS.get(str(settings.get("activation", "tanh")))
    rec = ACTIVATIONS.get(str(settings.get("recurrent_activation", "sigmoid")))
    return act, rec, settings


@dataclass(frozen=True)
class _Cell:
    """A recurrent layer's functions and weights (a zero bias when it has none), and the element."""

    act: Callable[..., np.ndarray]
    rec: Callable[..., np.ndarray]
    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray
    step: int  # the time step that gives the element
    unit: int
    units: int


def _setup(layer, x, index) -> _Cell | None:
    """The layer as a ``_Cell``, or None for a configuration not covered here."""
    act, rec, settings = _functions(layer)
    if act is None or rec is None or settings.get("go_backwards") or settings.get("stateful"):
        return None
    step, unit = (index[0], index[1]) if settings.get("return_sequences") else (x.shape[0] - 1, index[0])
    kernel, recurrent, *bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    two_rows = type(layer).__name__ == "GRU" and settings.get("reset_after", True)
    zeros = np.zeros((2, recurrent.shape[1]) if two_rows else recurrent.shape[1])
    return _Cell(act, rec, kernel, recurrent, bias[0] if bias else zeros, step, unit, recurrent.shape[0])


def _simple_rnn(cell: _Cell, x, layer):
    kernel, recurrent, b, step, j = cell.kernel, cell.recurrent, cell.bias, cell.step, cell.unit
    act, h = cell.act, np.zeros(cell.units)
    for t in range(step + 1):
        previous, h = h, act(x[t] @ kernel + h @ recurrent + b)
    return [
        UnitRow(f"x_{step}", tuple(x[step]), f"input at time step {step}"),
        UnitRow(f"h_{step - 1}", tuple(previous), "the previous step's output (0 at step 0)"),
        UnitRow(
            "z",
            (float(x[step] @ kernel[:, j] + previous @ recurrent[:, j] + b[j]),),
            f"x_t·kernel[:, {j}] + h_(t−1)·recurrent_kernel[:, {j}] + bias[{j}]",
        ),
        UnitRow(f"h_{step}[{j}]", (float(h[j]),), "activation(z)"),
    ]


def _lstm(cell: _Cell, x, layer):
    act, rec, kernel, recurrent, b = cell.act, cell.rec, cell.kernel, cell.recurrent, cell.bias
    step, j, units = cell.step, cell.unit, cell.units
    h, c = np.zeros(units), np.zeros(units)
    for t in range(step + 1):
        pre = x[t] @ kernel + h @ recurrent + b
        gates = [
            rec(pre[:units]),
            rec(pre[units : 2 * units]),
            act(pre[2 * units : 3 * units]),
            rec(pre[3 * units :]),
        ]
        previous_h, previous_c = h, c
        c = gates[1] * c + gates[0] * gates[2]
        h = gates[3] * act(c)
    col = [j, units + j, 2 * units + j, 3 * units + j]
    rule = "x_t·kernel[:, {k}] + h_(t−1)·recurrent_kernel[:, {k}] + bias[{k}]"
    return [
        UnitRow(f"x_{step}", tuple(x[step]), f"input at time step {step}"),
        UnitRow(f"h_{step - 1}", tuple(previous_h), "the previous step's h (0 at step 0)"),
        UnitRow(f"c_{step - 1}[{j}]", (float(previous_c[j]),), "the previous cell state"),
        UnitRow("input gate i", (float(gates[0][j]),), "sigmoid(" + rule.format(k=col[0]) + ")"),
        UnitRow("forget gate f", (float(gates[1][j]),), "sigmoid(" + rule.format(k=col[1]) + ")"),
        UnitRow("candidate c̃", (float(gates[2][j]),), "tanh(" + rule.format(k=col[2]) + ")"),
        UnitRow("output gate o", (float(gates[3][j]),), "sigmoid(" + rule.format(k=col[3]) + ")"),
        UnitRow(f"c_{step}[{j}]", (float(c[j]),), "f · c_(t−1) + i · c̃"),
        UnitRow(f"h_{step}[{j}]", (float(h[j]),), "o · tanh(c_t)"),
    ]


def _gru(cell: _Cell, x, layer):
    act, rec, kernel, b_all = cell.act, cell.rec, cell.kernel, cell.bias
    recurrent, step, j, units = cell.recurrent, cell.step, cell.unit, cell.units
    after = config(layer).get("reset_after", True)
    b_in, b_rec = (b_all[0], b_all[1]) if after else (b_all, np.zeros(3 * units))
    h = np.zeros(units)
    for t in range(step + 1):
        xs, hs = x[t] @ kernel + b_in, h @ recurrent[:, : 2 * units] + b_rec[: 2 * units]
        z, r = rec(xs[:units] + hs[:units]), rec(xs[units : 2 * units] + hs[units:])
        inner = (
            (h @ recurrent[:, 2 * units :] + b_rec[2 * units :]) * r
            if after
            else (r * h) @ recurrent[:, 2 * units :]
        )
        candidate = act(xs[2 * units :] + inner)
        previous, h = h, z * h + (1 - z) * candidate
    where = "reset · (h_(t−1)·U_h + b_h)" if after else "(reset · h_(t−1))·U_h"
    return [
        UnitRow(f"x_{step}", tuple(x[step]), f"input at time step {step}"),
        UnitRow(f"h_{step - 1}", tuple(previous), "the previous step's h (0 at step 0)"),
        UnitRow(
            "update gate z",
            (float(z[j]),),
            f"sigmoid(x_t·kernel[:, {j}] + h_(t−1)·recurrent_kernel[:, {j}] + biases)",
        ),
        UnitRow("reset gate r", (float(r[j]),), f"sigmoid(… column {units + j} …)"),
        UnitRow("candidate h̃", (float(candidate[j]),), f"tanh(x_t·W_h + {where}), column {2 * units + j}"),
        UnitRow(f"h_{step}[{j}]", (float(h[j]),), "z · h_(t−1) + (1 − z) · h̃"),
    ]


def _spelled(step_fn):
    """``step_fn(cell, x, layer)`` as a ``units`` handler ``(layer, x, index)``."""

    def handler(layer, x, index):
        cell = _setup(layer, x, index)
        return None if cell is None else step_fn(cell, x, layer)

    return handler


RECURRENT = {"SimpleRNN": _spelled(_simple_rnn), "LSTM": _spelled(_lstm), "GRU": _spelled(_gru)}
