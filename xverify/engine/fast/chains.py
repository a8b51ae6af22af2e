"""Finding the Conv chains ``[Pad ->] Conv [-> Mul] [-> Clip | Relu]`` in a list of steps.

A chain is fusable only where each tensor it hides has one reader (the next member) and no caller
can ask for it (``pinned``): graph outputs, tensors read by subgraphs. The Pad must be a zero,
spatial-only, constant one (it becomes the Conv's own padding), the Mul a float constant with one
value per output channel (it folds into the Conv's weights), the clamp's bounds constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xverify.engine.step import Step


@dataclass(frozen=True)
class Epilogue:
    """What a chain does after its Conv: multiply by ``factor`` (one value per output channel, or
    one), then clamp to ``bounds`` (``(lo, hi)``, either None for unbounded) with ``activation``,
    the Clip or Relu kernel (for dtypes the fold cannot take)."""

    factor: np.ndarray | None = None
    bounds: tuple | None = None
    activation: Callable | None = None


@dataclass(frozen=True)
class ConvChain:
    """A fusable chain: its steps (by index, in order), its input and output, and the Conv's
    attributes with the Pad folded into its pads."""

    conv: int  # the Conv's step
    members: tuple[int, ...]
    source: str
    tail: str
    attrs: dict
    epilogue: Epilogue


class Dataflow:
    """Who makes and who reads each tensor of ``steps``."""

    def __init__(self, steps: list[Step], pinned: set[str]):
        self.steps, self.pinned = steps, pinned
        self.readers: dict[str, int] = {}
        self.producer: dict[str, int] = {}
        self.first_reader: dict[str, int] = {}  # the first step reading it as its first input
        self.reader: dict[str, int] = {}  # the first step reading it as any input
        for i, step in enumerate(steps):
            for name in set(step.inputs):
                self.readers[name] = self.readers.get(name, 0) + 1
            for out in step.outputs:
                if out:
                    self.producer[out] = i
            if step.inputs and step.inputs[0]:
                self.first_reader.setdefault(step.inputs[0], i)
            for name in step.inputs:
                self.reader.setdefault(name, i)

    def sole(self, name: str) -> bool:
        """Read by one step only, and by no caller."""
        return self.readers.get(name) == 1 and name not in self.pinned

    def next_op(self, name: str, op_types: tuple[str, ...]) -> int | None:
        """The step that alone reads ``name``, as its first input, if it is one of ``op_types``."""
        i = self.first_reader.get(name)
        if i is None or not self.sole(name) or not _is(self.steps[i], op_types):
            return None
        return i

    def residual_add(self, name: str) -> tuple[int, str] | None:
        """``(step, other input)`` when an Add of two distinct tensors alone reads ``name``."""
        i = self.reader.get(name)
        if i is None or not self.sole(name):
            return None
        step = self.steps[i]
        if (
            not _is(step, ("Add",))
            or len(set(step.inputs)) != 2
            or len(step.inputs) != 2
            or len(step.outputs) != 1
        ):
            return None
        return i, next(other for other in step.inputs if other != name)


def _is(step: Step, op_types: tuple[str, ...]) -> bool:
    return not step.node.domain and step.node.op_type in op_types


def find_chains(steps: list[Step], constants: dict, flow: Dataflow) -> dict[int, ConvChain]:
    """Every Conv with a constant weight, as a chain with what fuses around it, by Conv step."""
    chains = {}
    for c, step in enumerate(steps):
        if (
            _is(step, ("Conv",))
            and len(step.outputs) == 1
            and len(step.inputs) >= 2
            and step.inputs[1] in constants
        ):
            chains[c] = _chain_at(c, steps, constants, flow)
    return chains


def _chain_at(c: int, steps: list[Step], constants: dict, flow: Dataflow) -> ConvChain:
    conv = steps[c]
    weight = constants[conv.inputs[1]]
    attrs, source, members = dict(conv.attrs), conv.inputs[0], [c]
    p = flow.producer.get(source)
    if p is not None and _is(steps[p], ("Pad",)) and flow.sole(source):
        pads = _zero_pad(steps[p], constants, attrs)
        if pads is not None:
            attrs["pads"], source = pads, steps[p].inputs[0]
            members.insert(0, p)
    tail, factor, bounds, activation = conv.outputs[0], None, None, None
    m = flow.next_op(tail, ("Mul",))
    if m is not None and _channel_factor(steps[m], constants, weight):
        factor = constants[steps[m].inputs[1]]
        members.append(m)
        tail = steps[m].outputs[0]
    a = flow.next_op(tail, ("Clip", "Relu"))
    if a is not None:
        bounds = _bounds(steps[a], constants)
        if bounds is not None:
            members.append(a)
            activation = steps[a].spec.kernel
            tail = steps[a].outputs[0]
    return ConvChain(c, tuple(members), source, tail, attrs, Epilogue(factor, bounds, activation))


def _zero_pad(step: Step, constants: dict, conv_attrs: dict) -> list[int] | None:
    """The Conv's pads with a zero, spatial-only, non-negative constant Pad folded in, or None."""
    inputs, attrs = step.inputs, step.attrs
    if conv_attrs.get("auto_pad", "NOTSET") != "NOTSET" or attrs.get("mode", "constant") != "constant":
        return None
    if len(inputs) > 3 or any(name not in constants for name in inputs[1:] if name):
        return None  # pads computed at run time, or an axes input
    pads = constants[inputs[1]] if len(inputs) > 1 else attrs.get("pads", [])
    pads = [int(v) for v in np.asarray(pads).reshape(-1)]
    value = constants[inputs[2]] if len(inputs) > 2 and inputs[2] else attrs.get("value", 0.0)
    n = len(pads) // 2
    if n < 3 or np.any(np.asarray(value) != 0) or min(pads) < 0 or any(pads[:2] + pads[n : n + 2]):
        return None
    own = list(conv_attrs.get("pads") or [0] * (2 * (n - 2)))
    if len(own) != 2 * (n - 2):
        return None
    return [a + b for a, b in zip(own[: n - 2], pads[2:n])] + [
        a + b for a, b in zip(own[n - 2 :], pads[n + 2 :])
    ]


def _channel_factor(step: Step, constants: dict, weight: np.ndarray) -> bool:
    """Whether the Mul multiplies by a float constant with one value per output channel (or one)."""
    if len(step.inputs) != 2 or step.inputs[1] not in constants:
        return False
    factor = constants[step.inputs[1]]
    if factor.dtype.kind != "f" or factor.ndim > weight.ndim:
        return False
    full = (1,) * (weight.ndim - factor.ndim) + factor.shape  # aligned with (N, C, *spatial)
    return full[0] == 1 and full[1] in (1, weight.shape[0]) and all(v == 1 for v in full[2:])


def _bounds(step: Step, constants: dict) -> tuple | None:
    """``(lo, hi)`` of a Relu (``(0, inf)``, as the Relu kernel clamps) or of a Clip with constant
    bounds (``None``: unbounded), else None."""
    if step.node.op_type == "Relu":
        return (0, np.inf)
    inputs, attrs = step.inputs, step.attrs
    if any(name not in constants for name in inputs[1:] if name):
        return None
    lo = constants[inputs[1]] if len(inputs) > 1 and inputs[1] else attrs.get("min")
    hi = constants[inputs[2]] if len(inputs) > 2 and inputs[2] else attrs.get("max")
    return None if lo is None and hi is None else (lo, hi)
