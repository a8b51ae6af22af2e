"""LSTM, GRU and SimpleRNN weights packed into (and unpacked from) ONNX LSTM/GRU/RNN inputs.

ONNX wants W [dirs, G*H, in], R [dirs, G*H, H] and B [dirs, 2*G*H] = [Wb, Rb], with the LSTM gates in
the order i, o, f, c where Keras has i, f, c, o.
"""

from __future__ import annotations

import numpy as np

from xverify.extract.joints import Context, Joint

_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
ONNX_RNN = {"LSTM": "LSTM gates i,f,c,o -> i,o,f,c", "GRU": "GRU gates z,r,h", "SimpleRNN": "RNN"}


def lstm_to_onnx(a):
    i, f, c, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def lstm_to_keras(a):
    i, o, f, c = np.split(a, 4, axis=-1)
    return np.concatenate([i, f, c, o], axis=-1)


def rnn_groups(ctx: Context, li: int) -> list:
    """ONNX LSTM/GRU/RNN nodes: W [dirs, G*H, in], R [dirs, G*H, H], B [dirs, 2*G*H] = [Wb, Rb].

    A Bidirectional layer is one node with both directions stacked, or two one-direction nodes
    (tf2onnx leaves them apart when it cannot merge them: the backward one reads a reversed
    input); each is an alternative."""
    layer, values = ctx.layers[li], ctx.values[li]
    inner = getattr(layer, "forward_layer", layer)
    kind = type(inner).__name__
    dirs = 2 if inner is not layer else 1
    n = len(values) // dirs
    if kind not in _GATES or n < 2:
        return []
    stacked = _direction_joints(li, values, kind, n, tuple(range(dirs)))
    if dirs == 1:
        return [[stacked]]
    apart = _direction_joints(li, values, kind, n, (0,)) + _direction_joints(li, values, kind, n, (1,))
    return [[stacked, apart]]


def _direction_joints(li: int, values, kind: str, n: int, directions: tuple) -> list:
    """The kernel, recurrent kernel and bias joints of the given directions, stacked as ONNX does."""
    fwd, back = (lstm_to_onnx, lstm_to_keras) if kind == "LSTM" else (lambda a: a, lambda a: a)
    label, gh = ONNX_RNN[kind], values[0].shape[-1]
    joints = []
    for k in (0, 1):  # kernel, recurrent kernel
        idx = [d * n + k for d in directions]
        joints.append(
            Joint(
                tuple((li, i) for i in idx),
                np.stack([fwd(values[i]).T for i in idx]),
                lambda a: [back(a[d].T) for d in range(len(a))],
                (f"{label} (transposed)",) * len(idx),
            )
        )
    if n == 3:
        idx = [d * n + 2 for d in directions]
        if values[idx[0]].ndim == 2:  # GRU reset_after: bias rows are [input bias, recurrent bias]
            expected = np.stack([values[i].reshape(-1) for i in idx])
            split = lambda a: [a[d].reshape(2, gh) for d in range(len(a))]  # noqa: E731
        else:
            expected = np.stack([np.concatenate([fwd(values[i]), 0 * values[i]]) for i in idx])
            split = lambda a: [back(a[d][:gh] + a[d][gh:]) for d in range(len(a))]  # noqa: E731
        joints.append(
            Joint(tuple((li, i) for i in idx), expected, split, (f"{label} (B = [Wb, Rb])",) * len(idx))
        )
    return joints


def unpack_rnn(node, position: int, array: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """ONNX LSTM/GRU/RNN W, R or B back to Keras kernel, recurrent_kernel or bias per direction."""
    kind = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}[node.op_type]
    back = lstm_to_keras if kind == "LSTM" else (lambda a: a)
    name = {1: "kernel", 2: "recurrent_kernel", 3: "bias"}.get(position, f"input{position}")
    before_reset = any(a.name == "linear_before_reset" and a.i for a in node.attribute)
    out = []
    for d, part in enumerate(array):
        prefix = ("forward/", "backward/")[d] if len(array) == 2 else ""
        if position == 3:
            gh = part.size // 2
            value = part.reshape(2, gh) if before_reset else back(part[:gh] + part[gh:])
        else:
            value = back(part.T)
        out.append((prefix + name, value, f"{ONNX_RNN[kind]} unpacked to Keras layout"))
    return out
