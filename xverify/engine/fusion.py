"""Conv chains the interpreter runs as one step: ``[Pad ->] Conv [-> Mul] [-> Clip | Relu]``, and
depthwise ones with their pointwise neighbours.

A MobileNet block is Pad, Conv, a batch-norm scale (Mul by a per-channel constant) and ReLU6 (Clip):
unfused, each of them is a full memory pass over a large tensor. Fused, the zero Pad becomes the
Conv's own padding, the Mul is folded into the Conv's weights and bias (``_folded``), and the
clamp runs on each block of the Conv's output while it is still in cache (``conv(post=...)``).
A depthwise chain runs as one step with the pointwise chains around it too
(``depthwise_between``): the one making its input (MobileNet's expand conv) and the one reading
its output (the projection), where each is the other's only reader, and the residual Add of the
projection's output where that is its only reader (MobileNetV2's skip connections). The expanded
and the depthwise tensors, the model's largest, are then made one image at a time by the worker
that reads them back from its cache, and never exist whole.
The fused step computes what the nodes compute, in their dtype, to float rounding: bit for bit
where it makes their own products (the same matmul calls), but the folded Mul rounds once where
the nodes round twice, and where a 1x1 conv's matmul runs over stride phases or wider rows on large
planes, OpenBLAS's blocking can round some columns differently in the last bit
(``depthwise_between``). The interpreter uses the fused steps only when no caller wants to see the
intermediate tensors (taps, ``on_tensor``).
"""

from __future__ import annotations

import numpy as np

from xverify.engine.ops.conv import depthwise_between, is_pointwise
from xverify.engine.registry import OPS, OpSpec


def fuse_conv_chains(steps: list, constants: dict, pinned: set) -> tuple[list, set]:
    """``steps`` with each fusable Conv chain replaced by one step, and the tensors that hides.

    Args:
        steps: ``(node, spec, inputs, outputs, attrs)`` per node, in graph order.
        constants: the initializers; the weights, the Pad's pads, the Mul's factor and the clamp's
            bounds must be among them.
        pinned: tensors that must stay visible (graph outputs, tensors read by subgraphs).

    Returns:
        The new steps (the same list when nothing fuses) and the names of the hidden tensors.
    """
    readers: dict[str, int] = {}
    for _, _, inputs, _, _ in steps:
        for name in set(inputs):
            readers[name] = readers.get(name, 0) + 1
    producer = {out: i for i, (_, _, _, outs, _) in enumerate(steps) for out in outs if out}
    first_reader, reader = {}, {}
    for i, (_, _, inputs, _, _) in enumerate(steps):
        if inputs and inputs[0]:
            first_reader.setdefault(inputs[0], i)
        for name in inputs:
            reader.setdefault(name, i)

    def sole(name):  # read by one node only, and by no caller
        return readers.get(name) == 1 and name not in pinned

    def next_op(name, op_types):
        """The step that alone reads ``name``, as its first input, if it is one of ``op_types``."""
        i = first_reader.get(name)
        if i is None or not sole(name) or steps[i][0].domain or steps[i][0].op_type not in op_types:
            return None
        return i

    def residual_add(name):
        """``(step, other input)`` when an Add alone reads ``name`` (as either input)."""
        i = reader.get(name)
        if (
            i is None
            or not sole(name)
            or steps[i][0].domain
            or steps[i][0].op_type != "Add"
            or len(steps[i][2]) != 2
            or len(set(steps[i][2])) != 2
            or len(steps[i][3]) != 1
        ):
            return None
        return i, next(other for other in steps[i][2] if other != name)

    chains = {}  # Conv step -> (chain steps, input, attrs, factor, bounds, activation, tail)
    for c, (node, _, inputs, outs, attrs) in enumerate(steps):
        if (
            node.op_type != "Conv"
            or node.domain
            or len(outs) != 1
            or len(inputs) < 2
            or inputs[1] not in constants
        ):
            continue
        weight = constants[inputs[1]]
        attrs, first, chain = dict(attrs), inputs[0], [c]
        p = producer.get(first)
        if p is not None and steps[p][0].op_type == "Pad" and not steps[p][0].domain and sole(first):
            pads = _zero_pad(steps[p], constants, attrs)
            if pads is not None:
                attrs["pads"], first = pads, steps[p][2][0]
                chain.insert(0, p)
        tail, factor, bounds, activation = outs[0], None, None, None
        m = next_op(tail, ("Mul",))
        if m is not None and _channel_factor(steps[m], constants, weight):
            factor = constants[steps[m][2][1]]
            chain.append(m)
            tail = steps[m][3][0]
        a = next_op(tail, ("Clip", "Relu"))
        if a is not None:
            bounds = _bounds(steps[a], constants)
            if bounds is not None:
                chain.append(a)
                activation = steps[a][1].kernel
                tail = steps[a][3][0]
        chains[c] = (chain, first, attrs, factor, bounds, activation, tail)

    replace, drop, hidden, used = {}, set(), set(), set()
    by_first = {chain[1]: c for c, chain in chains.items()}
    by_tail = {chain[6]: c for c, chain in chains.items()}
    for c, (chain, first, attrs, factor, bounds, activation, tail) in chains.items():
        if c in used:
            continue
        inputs = steps[c][2]
        spec = OpSpec("Conv", _fused_kernel(factor, bounds, activation), attributes=OPS["Conv"].attributes)
        step = (steps[c][0], spec, [first] + inputs[1:], [tail], attrs)
        weight = constants[inputs[1]]
        if _is_depthwise(weight, attrs):  # with the pointwise chains making and reading its tensors
            before, after = by_tail.get(first), by_first.get(tail)
            if (
                before is None
                or before in used
                or not sole(first)
                or not _conv_next_to(steps[before], chains[before], constants, weight, pointwise=False)
            ):
                before = None
            if (
                after is None
                or not sole(tail)
                or not _conv_next_to(steps[after], chains[after], constants, weight, pointwise=True)
            ):
                after = None
            if before is not None or after is not None:
                used.update(k for k in (before, after) if k is not None)
                chain = (
                    (chains[before][0] if before is not None else [])
                    + chain
                    + (chains[after][0] if after is not None else [])
                )
                # A residual Add after the projection (MobileNetV2's blocks) joins it too.
                add = residual_add(chains[after][6]) if after is not None else None
                step = _around_depthwise(
                    step,
                    (factor, bounds, activation),
                    *(None if k is None else (steps[k][2], chains[k]) for k in (before, after)),
                    add and (add[1], steps[add[0]][3][0]),
                )
                chain += [add[0]] if add else []
        if len(chain) == 1:
            continue
        hidden.update(out for i in chain[:-1] for out in steps[i][3])
        drop.update(chain[:-1])
        replace[chain[-1]] = step
    if not replace:
        return steps, set()
    return [replace.get(i, step) for i, step in enumerate(steps) if i not in drop], hidden


def _is_depthwise(weight, attrs) -> bool:
    """One input channel per group, for more than one group."""
    return weight.shape[1] == 1 and attrs.get("group", 1) == weight.shape[0] > 1


def _conv_next_to(step, chain, constants, weight, pointwise) -> bool:
    """Whether ``chain`` is a Conv chain (group 1; ``pointwise``: 1x1, stride 1, no padding) with a
    constant weight of the dtype and rank of the depthwise weight ``weight``."""
    w1 = constants.get(step[2][1])
    return (
        w1 is not None
        and chain[2].get("group", 1) == 1
        and w1.dtype == weight.dtype
        and w1.ndim == weight.ndim
        and (is_pointwise(w1, chain[2]) or not pointwise)
    )


def _around_depthwise(dw_step, dw_post, before, after, add=None):
    """One step for a depthwise chain and the Conv chains around it, ``before`` and ``after``
    (``(Conv inputs, chain)``, either may be None), run by ``depthwise_between``; ``add``
    (``(other input, output)``, optional) is an Add of the ``after`` chain's output and another
    tensor, done image by image too where their shapes and dtypes agree.

    The step's inputs: the first chain's input, then weight and bias of the depthwise, the before
    and the after Conv ("" for those missing), then the Add's other input.
    """
    node, _, dw_inputs, outs, dw_attrs = dw_step
    pw = [None if p is None else (p[1][2], p[1][3:6]) for p in (before, after)]  # attrs, post

    def operands(inputs):  # weight and bias
        return (list(inputs) + ["", ""])[1:3] if inputs else ["", ""]

    inputs = [
        before[1][1] if before else dw_inputs[0],
        *operands(dw_inputs),
        *operands(before and before[0]),
        *operands(after and after[0]),
    ]
    outs = [add[1]] if add else [after[1][6]] if after else outs
    inputs += [add[0]] if add else []

    def kernel(x, w, b, w1, b1, w3, b3, other=None, **attrs):
        parts = [_folded(x, w, b, *dw_post[:2])] + [
            (True, wp, bp, None) if p is None else _folded(x, wp, bp, *p[1][:2])
            for p, wp, bp in zip(pw, (w1, w3), (b1, b3))
        ]
        if not all(part[0] for part in parts):  # mixed or integer dtypes: chain by chain
            if pw[0]:
                x = _fused_kernel(*pw[0][1])(x, w1, b1, **pw[0][0])
            y = _fused_kernel(*dw_post)(x, w, b, **attrs)
            y = _fused_kernel(*pw[1][1])(y, w3, b3, **pw[1][0]) if pw[1] else y
            return y if other is None else OPS["Add"].kernel(y, other)
        around = [None if p is None else part[1:] + (p[0],) for p, part in zip(pw, parts[1:])]
        dw = parts[0][1:]
        if other is not None and other.dtype != x.dtype:  # (not valid ONNX)
            return OPS["Add"].kernel(depthwise_between(x, dw, attrs, *around), other)
        return depthwise_between(x, dw, attrs, *around, residual=other)

    return node, OpSpec("Conv", kernel, attributes=OPS["Conv"].attributes), inputs, outs, dw_attrs


def _zero_pad(step, constants, conv_attrs):
    """The Conv's pads with a zero, spatial-only, non-negative constant Pad folded in, or None."""
    _, _, inputs, _, attrs = step
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


def _channel_factor(step, constants, weight) -> bool:
    """Whether the Mul multiplies by a float constant with one value per output channel (or one)."""
    _, _, inputs, _, _ = step
    if len(inputs) != 2 or inputs[1] not in constants:
        return False
    factor = constants[inputs[1]]
    if factor.dtype.kind != "f" or factor.ndim > weight.ndim:
        return False
    full = (1,) * (weight.ndim - factor.ndim) + factor.shape  # aligned with (N, C, *spatial)
    return full[0] == 1 and full[1] in (1, weight.shape[0]) and all(v == 1 for v in full[2:])


def _bounds(step, constants):
    """``(lo, hi)`` of a Relu (``(0, inf)``, as the Relu kernel clamps) or of a Clip with constant
    bounds (``None``: unbounded), else None."""
    node, _, inputs, _, attrs = step
    if node.op_type == "Relu":
        return (0, np.inf)
    if any(name not in constants for name in inputs[1:] if name):
        return None
    lo = constants[inputs[1]] if len(inputs) > 1 and inputs[1] else attrs.get("min")
    hi = constants[inputs[2]] if len(inputs) > 2 and inputs[2] else attrs.get("max")
    return None if lo is None and hi is None else (lo, hi)


def _folded(x, w, b, factor, bounds):
    """``(usable, weight, bias, post)`` for a chain's Conv: its Mul folded into the weight and bias
    (``(conv(x, w) + b) * s == conv(x, w * s) + b * s``, one product fewer per output: what
    tf2onnx does with the batch norms of other convs; equal in exact arithmetic, within float
    rounding in floats), and ``post``, the hook clamping each block of the output while it is in
    cache (None without a clamp). Not ``usable`` for mixed or integer dtypes: the nodes' kernels
    then run one after the other."""
    if x.dtype != w.dtype or x.dtype.kind != "f" or (factor is not None and factor.dtype != x.dtype):
        return False, w, b, None
    if factor is not None:
        scale = np.broadcast_to(
            factor.reshape((-1,) + (1,) * (w.ndim - 1)), (w.shape[0],) + (1,) * (w.ndim - 1)
        )
        w, b = w * scale, None if b is None else b * scale.reshape(-1)
    if bounds is None:
        return True, w, b, None
    # Bounds in x's dtype, as the Clip and Relu kernels cast them.
    lo, hi = (None if v is None else np.asarray(v).astype(x.dtype) for v in bounds)

    def post(block, c0, c1):
        np.clip(block, lo, hi, out=block)

    return True, w, b, post


def _fused_kernel(factor, bounds, activation):
    """The chain's kernel: ``conv(post=...)``, or, for mixed or integer dtypes, the nodes' kernels
    one after the other (``activation``: the Clip or Relu kernel)."""
    conv, mul = OPS["Conv"].kernel, OPS["Mul"].kernel

    def kernel(x, w, b=None, **attrs):
        usable, wf, bf, post = _folded(x, w, b, factor, bounds)
        if usable:
            return conv(x, wf, bf, post=post, **attrs)
        y = conv(x, w, b, **attrs)
        y = y if factor is None else mul(y, factor)
        if bounds is None:
            return y
        return activation(y) if activation is OPS["Relu"].kernel else activation(y, *bounds)

    return kernel
