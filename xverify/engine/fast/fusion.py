"""The fusion pass: ``fuse(steps) -> steps``, each fusable Conv chain replaced by one step.

A MobileNet block is Pad, Conv, a batch-norm scale (Mul by a per-channel constant) and ReLU6 (Clip):
unfused, each of them is a full memory pass over a large tensor. Fused (``chains.py``), the zero
Pad becomes the Conv's own padding, the Mul is folded into the Conv's weights and bias, and the
clamp runs on each block of the Conv's output while it is still in cache (``kernels.py``).
A depthwise chain runs as one step with the pointwise chains around it too (``depthwise.py``): the
one making its input (MobileNet's expand conv) and the one reading its output (the projection),
where each is the other's only reader, and the residual Add of the projection's output where that
is its only reader (MobileNetV2's skip connections).

The fused steps compute what the nodes compute, in their dtype, to float rounding: bit for bit
where they make the nodes' own products (the same matmul calls), but the folded Mul rounds once
where the nodes round twice, and a 1x1 conv's matmul over stride phases or wider rows can round
some columns differently in the last bit (``depthwise.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xverify.engine.fast.chains import ConvChain, Dataflow, find_chains
from xverify.engine.fast.depthwise import depthwise_between
from xverify.engine.fast.kernels import chain_kernel, folded
from xverify.engine.fast.tuning import Tuning
from xverify.engine.ops.conv import is_pointwise
from xverify.engine.registry import OPS, OpSpec
from xverify.engine.step import Step

# The ops a fused step stands for; it reuses their newest kernels.
FUSED_OPS = ("Conv", "Pad", "Mul", "Add", "Clip", "Relu")


@dataclass(frozen=True)
class ResidualAdd:
    step: int
    other: str  # the Add's other input
    output: str


@dataclass(frozen=True)
class DepthwiseGroup:
    """A depthwise chain with the chain making its input (``before``), the pointwise chain reading
    its output (``after``) and the Add after that (``add``); either of the first two may be None."""

    depthwise: ConvChain
    before: ConvChain | None
    after: ConvChain | None
    add: ResidualAdd | None

    @property
    def members(self) -> tuple[int, ...]:
        chains = (self.before, self.depthwise, self.after)
        steps = tuple(i for chain in chains if chain is not None for i in chain.members)
        return steps + ((self.add.step,) if self.add else ())


def fuse(steps: list[Step], constants: dict, pinned: set[str], tuning: Tuning | None = None) -> list[Step]:
    """``steps`` with each fusable Conv chain replaced by one step.

    Args:
        steps: the graph's steps, in order.
        constants: the initializers; the weights, the Pad's pads, the Mul's factor and the clamp's
            bounds must be among them.
        pinned: tensors that must stay visible (graph outputs, tensors read by subgraphs).
        tuning: where the fused depthwise steps switch layouts (``Tuning()`` by default).

    Returns:
        The new steps (a graph holding an older form of a fused op, whose kernel is not the newest,
        is left as it is).
    """
    tuning = tuning or Tuning()
    if any(step.spec is not OPS.get(step.node.op_type) for step in steps if step.node.op_type in FUSED_OPS):
        return list(steps)
    flow = Dataflow(steps, pinned)
    chains = find_chains(steps, constants, flow)
    replace, drop = {}, set()
    for members, step in _fusions(steps, constants, flow, chains, tuning):
        drop.update(members[:-1])
        replace[members[-1]] = step
    return [replace.get(i, step) for i, step in enumerate(steps) if i not in drop]


def _fusions(steps, constants, flow, chains, tuning):
    """``(members, fused step)`` per chain or depthwise group of more than one step."""
    used: set[int] = set()
    taken: set[int] = set()  # steps already inside a fused step
    by_source = {chain.source: c for c, chain in chains.items()}
    by_tail = {chain.tail: c for c, chain in chains.items()}
    for c, chain in chains.items():
        if c in used:
            continue
        group = None
        if _is_depthwise(constants[steps[c].inputs[1]], chain.attrs):
            group = _group(chain, steps, constants, flow, chains, used, by_source, by_tail)
        if group is not None and group.add is not None and group.add.step in taken:
            # Two branches' projections ending in one Add (NASNet): the first group took it, and
            # its other input is this branch's output, which must stay visible.
            group = dataclasses.replace(group, add=None)
        if group is None:
            members, step = chain.members, _chain_step(steps, chain)
        else:
            used.update(k.conv for k in (group.before, group.after) if k is not None)
            members, step = group.members, _group_step(steps, group, tuning)
        taken.update(members)
        if len(members) > 1:
            yield members, step


def _is_depthwise(weight, attrs) -> bool:
    """One input channel per group, for more than one group."""
    return weight.shape[1] == 1 and attrs.get("group", 1) == weight.shape[0] > 1


def _group(chain, steps, constants, flow, chains, used, by_source, by_tail) -> DepthwiseGroup | None:
    """The depthwise ``chain`` with the chains around it that can join it, or None."""
    weight = constants[steps[chain.conv].inputs[1]]
    before, after = by_tail.get(chain.source), by_source.get(chain.tail)
    if (
        before is None
        or before in used
        or not flow.sole(chain.source)
        or not _conv_next_to(steps, chains[before], constants, weight, pointwise=False)
    ):
        before = None
    if (
        after is None
        or not flow.sole(chain.tail)
        or not _conv_next_to(steps, chains[after], constants, weight, pointwise=True)
    ):
        after = None
    if before is None and after is None:
        return None
    add = None
    if after is not None:
        found = flow.residual_add(chains[after].tail)
        add = found and ResidualAdd(found[0], found[1], steps[found[0]].outputs[0])
    return DepthwiseGroup(
        chain, None if before is None else chains[before], None if after is None else chains[after], add
    )


def _conv_next_to(steps, chain: ConvChain, constants, weight, pointwise: bool) -> bool:
    """Whether ``chain`` is a Conv chain (group 1; ``pointwise``: 1x1, stride 1, no padding) with a
    constant weight of the dtype and rank of the depthwise weight ``weight``."""
    w1 = constants.get(steps[chain.conv].inputs[1])
    return (
        w1 is not None
        and chain.attrs.get("group", 1) == 1
        and w1.dtype == weight.dtype
        and w1.ndim == weight.ndim
        and (is_pointwise(w1, chain.attrs) or not pointwise)
    )


def _spec(kernel) -> OpSpec:
    return OpSpec("Conv", kernel, attributes=OPS["Conv"].attributes)


def _chain_step(steps, chain: ConvChain) -> Step:
    conv = steps[chain.conv]
    inputs = (chain.source,) + conv.inputs[1:]
    return Step(conv.node, _spec(chain_kernel(chain.epilogue)), inputs, (chain.tail,), chain.attrs)


def _operands(steps, chain: ConvChain | None) -> tuple[str, str]:
    """The names of a chain's Conv weight and bias ("" for those missing)."""
    if chain is None:
        return "", ""
    inputs = steps[chain.conv].inputs
    return inputs[1], inputs[2] if len(inputs) > 2 else ""


def _group_step(steps, group: DepthwiseGroup, tuning: Tuning) -> Step:
    """One step for a depthwise group, run by ``depthwise_between``.

    The step's inputs: the first chain's input, then weight and bias of the depthwise, the before
    and the after Conv ("" for those missing), then the Add's other input.
    """
    dw, before, after, add = group.depthwise, group.before, group.after, group.add
    inputs = (
        (dw.source if before is None else before.source,)
        + _operands(steps, dw)
        + _operands(steps, before)
        + _operands(steps, after)
        + ((add.other,) if add else ())
    )
    output = add.output if add else after.tail if after else dw.tail
    kernel = _group_kernel(group, tuning)
    return Step(steps[dw.conv].node, _spec(kernel), inputs, (output,), dw.attrs)


def _group_kernel(group: DepthwiseGroup, tuning: Tuning):
    dw, before, after = group.depthwise, group.before, group.after

    def kernel(x, w, b, w1, b1, w3, b3, other=None, **attrs):
        convs = [folded(x, w, b, dw.epilogue, attrs)] + [
            None if chain is None else folded(x, wp, bp, chain.epilogue, chain.attrs)
            for chain, wp, bp in ((before, w1, b1), (after, w3, b3))
        ]
        if any(conv is None for conv, chain in zip(convs, (dw, before, after)) if chain is not None):
            return _chains_one_by_one(group, x, (w, b), (w1, b1), (w3, b3), other, attrs)
        if other is not None and other.dtype != x.dtype:  # (not valid ONNX)
            return OPS["Add"].kernel(depthwise_between(x, *convs, tuning=tuning), other)
        return depthwise_between(x, *convs, residual=other, tuning=tuning)

    return kernel


def _chains_one_by_one(group: DepthwiseGroup, x, dw_operands, before_operands, after_operands, other, attrs):
    """Mixed or integer dtypes: each chain's kernel in turn, then the Add."""
    if group.before is not None:
        x = chain_kernel(group.before.epilogue)(x, *before_operands, **group.before.attrs)
    y = chain_kernel(group.depthwise.epilogue)(x, *dw_operands, **attrs)
    if group.after is not None:
        y = chain_kernel(group.after.epilogue)(y, *after_operands, **group.after.attrs)
    return y if other is None else OPS["Add"].kernel(y, other)
