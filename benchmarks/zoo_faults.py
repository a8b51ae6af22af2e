"""One injected fault per generated model, in a copy of its conversion, to show detection holds.

Four kinds: a weight element changed, a bias element changed, an activation dropped (its node made an
Identity), an axis permuted (two equal axes of an as-is layer output swapped, or the elements along
one axis reversed, by a node added after the layer's last node). Each fault names the Keras layer whose
scope token its node carries: that is where a check should localize it. A fault that moves no graph
output (a ReLU dropped where its input is positive anyway) is no fault: another is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

KINDS = ("weight", "bias", "activation", "axis")
_ACTIVATIONS = {
    "Relu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Elu",
    "Selu",
    "LeakyRelu",
    "HardSigmoid",
    "Softplus",
    "Softsign",
    "Clip",
    "PRelu",
    "HardSwish",
    "Exp",
    "LogSoftmax",
}


@dataclass(frozen=True)
class Fault:
    """The faulty copy, what was changed, and the layer it belongs to."""

    model: onnx.ModelProto
    kind: str
    layer: str
    tensor: str  # the ONNX tensor the fault changes first
    detail: str


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _owner(name: str, layers) -> str | None:
    from xverify.convert import layer_index_of

    index = layer_index_of(name)
    return layers[index].name if index is not None and index < len(layers) else None


def _weight_fault(model, layers, rng, bias: bool):
    from xverify.convert import is_weight

    inits = {i.name: i for i in model.graph.initializer if is_weight(i)}
    options = [
        (node, name)
        for node in model.graph.node
        for name in node.input
        if name in inits and (len(inits[name].dims) == 1) == bias and _owner(node.name, layers) is not None
    ]
    if not options:
        return None
    node, name = options[rng.integers(len(options))]
    faulty = _copy(model)
    init = next(i for i in faulty.graph.initializer if i.name == name)
    values = numpy_helper.to_array(init).copy()
    index = int(rng.integers(values.size))
    values.flat[index] += max(0.5, 0.5 * float(np.max(np.abs(values))))
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    return Fault(
        faulty,
        "bias" if bias else "weight",
        _owner(node.name, layers),
        node.output[0],
        f"{name}[{index}] of {node.op_type} {node.name}",
    )


def _activation_fault(model, layers, rng):
    options = [
        i
        for i, n in enumerate(model.graph.node)
        if n.op_type in _ACTIVATIONS and _owner(n.name, layers) is not None
    ]
    if not options:
        return None
    position = options[rng.integers(len(options))]
    faulty = _copy(model)
    node = faulty.graph.node[position]
    detail = f"{node.op_type} {node.name} made an Identity"
    node.op_type = "Identity"
    del node.input[1:]
    del node.attribute[:]
    return Fault(faulty, "activation", _owner(node.name, layers), node.output[0], detail)


def _axis_fault(model, rows, rng):
    from xverify.shapes import value_infos

    infos = value_infos(model)
    options = []
    for row in rows:
        info = infos.get(row.tensor) if row.tensor else None
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim] if info else []
        if len(dims) >= 2 and any(d > 1 for d in dims[1:]):
            options.append((row, dims))
    if not options:
        return None
    row, dims = options[rng.integers(len(options))]
    faulty = _copy(model)
    graph = faulty.graph
    position, producer = next((i, n) for i, n in enumerate(graph.node) if row.tensor in n.output)
    hidden = row.tensor + "__xv_before_fault"
    producer.output[list(producer.output).index(row.tensor)] = hidden
    # Swap two equal axes of an as-is tensor (a Permute that should not be there). On a moved
    # tensor (channels-first, time-major) a swap can be a valid layout change, the very thing the
    # layout rules read back, so there the elements along an axis are reversed instead.
    pairs = (
        [(a, b) for a in range(1, len(dims)) for b in range(a + 1, len(dims)) if dims[a] == dims[b] > 1]
        if row.layout == "as-is"
        else []
    )
    name = producer.name + "__xv_fault"
    if pairs:
        a, b = pairs[rng.integers(len(pairs))]
        perm = list(range(len(dims)))
        perm[a], perm[b] = b, a
        node = helper.make_node("Transpose", [hidden], [row.tensor], name=name, perm=perm)
        detail = f"axes {a} and {b} of {row.tensor} swapped"
    else:
        axis = int(rng.choice([i for i in range(1, len(dims)) if dims[i] > 1]))
        consts = [
            numpy_helper.from_array(np.array([v], np.int64), f"{name}_{k}")
            for k, v in (("starts", -1), ("ends", -(2**62)), ("axes", axis), ("steps", -1))
        ]
        graph.initializer.extend(consts)
        node = helper.make_node("Slice", [hidden, *(c.name for c in consts)], [row.tensor], name=name)
        detail = f"axis {axis} of {row.tensor} reversed"
    graph.node.insert(position + 1, node)
    return Fault(faulty, "axis", row.name, row.tensor, detail)


def _moves(clean, fault: Fault, feeds) -> bool:
    """Whether the fault changes a graph output on these inputs (beyond float rounding): a node
    whose result is discarded (a masked step's branch) is no fault a check could be asked to see."""
    from xverify.runtimes import OnnxRuntime

    before = OnnxRuntime(clean, "disabled").run(feeds)
    after = OnnxRuntime(fault.model, "disabled").run(feeds)
    for name, value in before.items():
        other = after.get(name)
        if other is None or np.shape(other) != np.shape(value):
            return True
        scale = max(1.0, float(np.max(np.abs(value)))) if np.size(value) else 1.0
        if np.max(np.abs(other.astype(np.float64) - value), initial=0.0) > 1e-3 * scale:
            return True
    return False


def inject(keras_model, onnx_model, kind: str, rng, feeds, tries: int = 6) -> Fault | None:
    """A copy of ``onnx_model`` with one fault of ``kind`` that moves its tensor, or None when the
    model offers no such place (no bias anywhere, say)."""
    from xverify.convert import flat_layers
    from xverify.layers import map_layers

    layers = flat_layers(keras_model)
    rows = map_layers(keras_model, onnx_model)
    for _ in range(tries):
        fault = {
            "weight": lambda: _weight_fault(onnx_model, layers, rng, False),
            "bias": lambda: _weight_fault(onnx_model, layers, rng, True),
            "activation": lambda: _activation_fault(onnx_model, layers, rng),
            "axis": lambda: _axis_fault(onnx_model, rows, rng),
        }[kind]()
        if fault is None:
            return None
        if _moves(onnx_model, fault, feeds):
            return fault
    return None
