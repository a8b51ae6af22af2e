"""Kernels: LSTM, GRU and RNN, following the ONNX spec's equations.

Gate order in W, R and B is the ONNX one: i, o, f, c for LSTM (peepholes P: i, o, f); z, r, h for GRU.
The input projection ``X W^T + Wb (+ Rb)`` of every time step is one matmul up front; only the
recurrent ``H R^T`` is inside the time loop (a loop over time steps, never over batch or units).

``sequence_lens``: a batch entry stops at its length, its later Y rows are zero and Y_h/Y_c hold its
last real step. The reverse direction reverses each entry within its own length, so it starts at
the entry's last real step.

Activation parameters (``activation_alpha``/``activation_beta``) are consumed in order by the
activations that take them, as ONNX Runtime does; the others keep the ONNX defaults.
"""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


def _sigmoid(x, a, b):
    return (np.tanh(x * x.dtype.type(0.5)) + 1) * x.dtype.type(0.5)  # no exp overflow


# name -> (function(x, alpha, beta), default alpha or None if unused, default beta or None)
ACTIVATIONS = {
    "sigmoid": (_sigmoid, None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}
_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}
_COMMON = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")
_NOTES = "directions forward|reverse|bidirectional; layout 0|1; sequence_lens; activations " + "|".join(
    ACTIVATIONS
)


def _activations(op_type, names, alphas, betas, default, num_dir, dtype):
    """One list of callables per direction, alpha/beta bound."""
    names = list(names) if names else default * num_dir
    if len(names) != len(default) * num_dir:
        raise UnsupportedOpError(
            f"{op_type}: activations={names} must name {len(default)} "
            f"functions per direction ({num_dir} directions)"
        )
    alphas, betas = list(alphas or []), list(betas or [])
    funcs = []
    for name in names:
        if name.lower() not in ACTIVATIONS:
            raise UnsupportedOpError(
                f"{op_type}: activation {name!r} is not supported; supported: {', '.join(ACTIVATIONS)}"
            )
        fn, alpha, beta = ACTIVATIONS[name.lower()]
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        a = dtype.type(alpha if alpha is not None else 0)
        b = dtype.type(beta if beta is not None else 0)
        funcs.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b).astype(dtype, copy=False))
    k = len(default)
    return [funcs[i * k : (i + 1) * k] for i in range(num_dir)]


def _num_dir(op_type, direction):
    if direction not in _DIRECTIONS:
        raise UnsupportedOpError(f"{op_type}: direction={direction!r}; supported: {', '.join(_DIRECTIONS)}")
    return len(_DIRECTIONS[direction])


def _clipper(clip, dtype):
    if clip is None:
        return lambda x: x
    c = dtype.type(clip)
    return lambda x: np.clip(x, -c, c)


def _time_order(seq, lens, reverse):
    """Index ``[step, batch]`` into time: identity, or each entry reversed within its length."""
    steps = np.arange(seq)[:, None]
    if not reverse:
        return np.broadcast_to(steps, (seq, lens.size))
    return np.where(steps < lens[None, :], lens[None, :] - 1 - steps, steps)


def _recur(op_type, x, w, r, b, seq_lens, states, direction, layout, step, n_gates, fold_bias):
    """Run ``step`` over time for every direction; return Y and the final states (ONNX layouts).

    Args:
        states: initial state arrays per kind (h, and c for LSTM), each ``(num_dir, batch, H)`` or
            None.
        step: ``step(d, xw_t, states) -> new states`` (first is h), for direction ``d``.
        fold_bias: how many bias vectors of R (gates) fold into the input projection.
    """
    if layout not in (0, 1):
        raise UnsupportedOpError(f"{op_type}: layout={layout}; supported: 0, 1")
    if layout == 1:
        x = x.transpose(1, 0, 2)
        states = [None if s is None else s.transpose(1, 0, 2) for s in states]
    seq, batch = x.shape[:2]
    num_dir, dtype, hid = len(_DIRECTIONS[direction]), x.dtype, r.shape[-1]
    lens = np.full(batch, seq) if seq_lens is None else np.asarray(seq_lens).astype(np.int64)
    y = np.zeros((seq, num_dir, batch, hid), dtype=dtype)
    finals = []
    for d, reverse in enumerate(_DIRECTIONS[direction]):
        xw = x @ w[d].T  # (seq, batch, gates * H): every step's input projection at once
        if b is not None:
            gh = n_gates * hid
            xw += b[d, :gh]
            xw[..., : fold_bias * hid] += b[d, gh : gh + fold_bias * hid]
        order = _time_order(seq, lens, reverse)
        xw = xw[order, np.arange(batch)]
        cur = [np.zeros((batch, hid), dtype) if s is None else s[d].astype(dtype) for s in states]
        out = np.zeros((seq, batch, hid), dtype=dtype)
        for t in range(seq):
            new = step(d, xw[t], cur)
            active = (t < lens)[:, None]
            cur = [np.where(active, n, c) for n, c in zip(new, cur)] if seq_lens is not None else new
            out[t] = np.where(active, new[0], 0) if seq_lens is not None else new[0]
        y[:, d] = out[order, np.arange(batch)]
        finals.append(cur)
    final = [np.stack([f[k] for f in finals]) for k in range(len(states))]
    if layout == 1:
        return (y.transpose(2, 0, 1, 3),) + tuple(s.transpose(1, 0, 2) for s in final)
    return (y,) + tuple(final)


@op("LSTM", attributes=_COMMON + ("input_forget",), notes=_NOTES + "; peepholes P; input_forget")
def lstm(
    x,
    w,
    r,
    b=None,
    sequence_lens=None,
    initial_h=None,
    initial_c=None,
    p=None,
    *,
    activation_alpha=None,
    activation_beta=None,
    activations=None,
    clip=None,
    direction="forward",
    hidden_size=None,
    input_forget=0,
    layout=0,
):
    """Returns (Y, Y_h, Y_c); hidden_size is taken from R's shape."""
    num_dir, dtype, hid = _num_dir("LSTM", direction), x.dtype, r.shape[-1]
    acts = _activations(
        "LSTM", activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh", "Tanh"], num_dir, dtype
    )
    cl = _clipper(clip, dtype)

    def step(d, xw, states):
        h, c = states
        f_act, g_act, h_act = acts[d]
        gates = xw + h @ r[d].T
        i, o, f, cc = (gates[:, k * hid : (k + 1) * hid] for k in range(4))
        if p is not None:
            i = i + p[d, :hid] * c
            f = f + p[d, 2 * hid :] * c
        i = f_act(cl(i))
        f = 1 - i if input_forget else f_act(cl(f))
        c_new = f * c + i * g_act(cl(cc))
        if p is not None:
            o = o + p[d, hid : 2 * hid] * c_new
        return [f_act(cl(o)) * h_act(c_new), c_new]

    return _recur("LSTM", x, w, r, b, sequence_lens, [initial_h, initial_c], direction, layout, step, 4, 4)


@op("GRU", attributes=_COMMON + ("linear_before_reset",), notes=_NOTES + "; linear_before_reset 0|1")
def gru(
    x,
    w,
    r,
    b=None,
    sequence_lens=None,
    initial_h=None,
    *,
    activation_alpha=None,
    activation_beta=None,
    activations=None,
    clip=None,
    direction="forward",
    hidden_size=None,
    layout=0,
    linear_before_reset=0,
):
    """Returns (Y, Y_h)."""
    num_dir, dtype, hid = _num_dir("GRU", direction), x.dtype, r.shape[-1]
    acts = _activations(
        "GRU", activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh"], num_dir, dtype
    )
    cl = _clipper(clip, dtype)

    def step(d, xw, states):
        (h,) = states
        f_act, g_act = acts[d]
        rd = r[d]
        zr = xw[:, : 2 * hid] + h @ rd[: 2 * hid].T
        z, rr = f_act(cl(zr[:, :hid])), f_act(cl(zr[:, hid:]))
        if linear_before_reset:
            lin = h @ rd[2 * hid :].T
            if b is not None:
                lin += b[d, 5 * hid :]  # Rbh stays inside the reset gate's product
            hh = g_act(cl(xw[:, 2 * hid :] + rr * lin))
        else:
            hh = g_act(cl(xw[:, 2 * hid :] + (rr * h) @ rd[2 * hid :].T))
        return [(1 - z) * hh + z * h]

    # Rb folds into the projection for z and r, and for h only when it is outside the reset product.
    return _recur(
        "GRU",
        x,
        w,
        r,
        b,
        sequence_lens,
        [initial_h],
        direction,
        layout,
        step,
        3,
        2 if linear_before_reset else 3,
    )


@op("RNN", attributes=_COMMON, notes=_NOTES)
def rnn(
    x,
    w,
    r,
    b=None,
    sequence_lens=None,
    initial_h=None,
    *,
    activation_alpha=None,
    activation_beta=None,
    activations=None,
    clip=None,
    direction="forward",
    hidden_size=None,
    layout=0,
):
    """Returns (Y, Y_h)."""
    num_dir, dtype = _num_dir("RNN", direction), x.dtype
    acts = _activations("RNN", activations, activation_alpha, activation_beta, ["Tanh"], num_dir, dtype)
    cl = _clipper(clip, dtype)

    def step(d, xw, states):
        return [acts[d][0](cl(xw + states[0] @ r[d].T))]

    return _recur("RNN", x, w, r, b, sequence_lens, [initial_h], direction, layout, step, 1, 1)
