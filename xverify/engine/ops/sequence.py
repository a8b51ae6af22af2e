"""Kernels: ONNX sequences (what tf2onnx and PyTorch's exporter emit for lists of tensors).

A sequence is a Python list of arrays in the interpreter; kernels never change a list they are given
(a sequence is a value: SequenceInsert returns a new list). Positions may be negative (from the end).
"""

from __future__ import annotations

import numpy as np

from xverify.engine.ops.shape import ints
from xverify.engine.registry import op
from xverify.errors import InputDataError


def _position(seq, position, insert=False) -> int:
    """A position as an index; -1 is the last tensor (so inserting at -1 puts it before the last),
    and an insertion may also be at len(seq), the end."""
    n = len(seq)
    p = int(np.asarray(position).reshape(-1)[0])
    if not -n <= p < n + (1 if insert else 0):
        raise InputDataError(f"sequence position {p} is outside a sequence of {n} tensors")
    return p + n if p < 0 else p


@op("SequenceEmpty", context=True, attributes=("dtype",))
def sequence_empty(dtype=1, ctx=None):
    return []


@op("SequenceConstruct")
def sequence_construct(*xs):
    return list(xs)


@op("SequenceInsert", notes="at the end when position is omitted")
def sequence_insert(seq, tensor, position=None):
    p = len(seq) if position is None else _position(seq, position, insert=True)
    return seq[:p] + [tensor] + seq[p:]


@op("SequenceAt")
def sequence_at(seq, position):
    return seq[_position(seq, position)]


@op("SequenceErase", notes="the last tensor when position is omitted")
def sequence_erase(seq, position=None):
    p = len(seq) - 1 if position is None else _position(seq, position)
    return seq[:p] + seq[p + 1 :]


@op("SequenceLength")
def sequence_length(seq):
    return np.array(len(seq), dtype=np.int64)


@op(
    "SplitToSequence",
    attributes=("axis", "keepdims"),
    notes="split: omitted (pieces of 1), a scalar (equal pieces, the last smaller) or sizes",
)
def split_to_sequence(x, split=None, axis=0, keepdims=1):
    axis %= x.ndim
    n = x.shape[axis]
    if split is None:
        parts = np.split(x, n, axis=axis)
        return [np.squeeze(p, axis) for p in parts] if not keepdims else parts
    if np.asarray(split).ndim == 0:
        size = int(split)
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = ints(split)
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@op("ConcatFromSequence", attributes=("axis", "new_axis"))
def concat_from_sequence(seq, axis, new_axis=0):
    return np.stack(seq, axis=axis) if new_axis else np.concatenate(seq, axis=axis)


@op(
    "SequenceMap",
    context=True,
    attributes=("body",),
    notes="the body runs once per position; sequence inputs give it their tensor there",
)
def sequence_map(seq, *extra, body, ctx):
    outs = [[] for _ in body.output]
    names = [i.name for i in body.input]
    for i in range(len(seq)):
        args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
        for store, value in zip(outs, ctx.run_subgraph(body, dict(zip(names, args)))):
            store.append(value)
    return tuple(outs)
