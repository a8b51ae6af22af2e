"""Which ONNX tensor holds a Keras layer's output: the checks ``layers.map_layers`` applies.

A layer's tensor is the last one its nodes produce that is used outside them, unless tf2onnx or
TensorFlow's constant folding moved part of its arithmetic elsewhere: its weights (or a scalar of
it) feed a later layer's node (fused forward), its last node folded a later layer's constant in,
the tensor is a mask where the output is float, or only part of the output. A layer called more
than once is compared at its last call, found by the inputs its nodes read or, failing that, by
TensorFlow's numbered scopes.
"""

from __future__ import annotations

import math
import re

from xverify.convert import layer_index_of

_RECURRENT = {"LSTM", "GRU", "RNN"}
_RECURRENT_LAYERS = {"LSTM", "GRU", "SimpleRNN", "RNN"}
_RESHAPES = {"Squeeze", "Unsqueeze", "Transpose", "Reshape"}


def adopt_unnamed(graph, owners: list, classes: list[str] | None = None) -> list:
    """A one-direction recurrent node tf2onnx named afresh (no layer token), and the reshapes right
    after it, belong to the layer whose nodes feed it (a Bidirectional's pair is left as it was):
    the layer's output is computed there (a reversed LSTM's last tensor "used outside" was its
    reversed input before). Its initial states, zeros built in the recurrent layer's own scope,
    name that layer when its input comes from another recurrent layer's nodes."""
    inits = {i.name for i in graph.initializer}
    producer: dict[str, int] = {}
    owners = list(owners)
    adopted: set[int] = set()
    for position, node in enumerate(graph.node):
        if owners[position] is None:
            sources = {producer.get(i) for i in node.input if i and i not in inits}
            sources = {owners[p] if p is not None else None for p in sources}
            feeds_me = any(producer.get(i) in adopted for i in node.input)
            recurrent = node.op_type in _RECURRENT and not any(
                a.name == "direction" and a.s == b"bidirectional" for a in node.attribute
            )
            if recurrent:  # its initial states may come from unnamed nodes
                sources.discard(None)
                known = classes or []
                traced = _traced_owners(node.input[5:], graph, producer, owners) if known else set()
                states = {o for o in traced if known[o] in _RECURRENT_LAYERS}
                if len(states) == 1:
                    sources = set[int | None](states)
            if (
                len(sources) == 1
                and None not in sources
                and (recurrent or (node.op_type in _RESHAPES and feeds_me))
            ):
                owners[position] = sources.pop()
                adopted.add(position)
        for out in node.output:
            producer[out] = position
    return owners


def _traced_owners(names, graph, producer, owners, depth: int = 12) -> set[int]:
    """The layers owning the nearest named nodes upstream of ``names``, through unnamed ones."""
    found: set[int] = set()
    frontier = [n for n in names if n]
    for _ in range(depth):
        before: list[str] = []
        for name in frontier:
            if name not in producer:
                continue
            position = producer[name]
            if owners[position] is not None:
                found.add(owners[position])
            else:
                before.extend(i for i in graph.node[position].input if i)
        if not before:
            break
        frontier = before
    return found


def weight_owners(graph) -> dict[str, int]:
    """Weights (not shared scalars or shapes) and the layer whose scope token they carry."""
    from xverify.convert import is_weight

    return {
        i.name: index
        for i in graph.initializer
        if is_weight(i) and (index := layer_index_of(i.name + "/")) is not None
    }


def last_call_sources(layer, rows, graph) -> list[str] | None:
    """The ONNX tensors the layer's last call reads: model inputs by name, earlier layers by their
    tensor; None when one is not known (a layer reused on its own output)."""
    inputs = {i.name for i in graph.input}
    tensors = {r.name: r.tensor for r in rows}
    sources: list[str] = []
    for tensor in getattr(layer._inbound_nodes[-1], "input_tensors", []):  # see tensorflow_rt
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None)
        name = getattr(operation, "name", None)
        if type(operation).__name__ == "InputLayer" and name in inputs:
            sources.append(str(name))
        elif tensors.get(name):
            sources.append(tensors[name])
        else:
            return None
    return sources or None


def reached_from(sources: list[str], positions: list[int], graph) -> list[int]:
    """The layer's nodes downstream of its last call's inputs (the data decides the call, where
    fused nodes renamed into the weights' scope carry the first call's name)."""
    reached = set(sources)
    for node in graph.node:
        if any(i in reached for i in node.input):
            reached.update(o for o in node.output if o)
    mine = [p for p in positions if any(o in reached for o in graph.node[p].output)]
    return mine or positions


def last_call(positions: list[int], graph) -> list[int]:
    """The nodes of a shared or reused layer's last call. TensorFlow numbers the scope of each call
    (``dense_1/xvl3``, then ``dense_3/xvl3``), so the call with the highest numbers in the scope
    before the layer token is the last; TensorFlow's taps keep the last call's output too."""
    from xverify.convert import _TOKEN

    def call(p):
        match = _TOKEN.search(graph.node[p].name)
        prefix = graph.node[p].name[: match.start()] if match else ""
        return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", prefix)]

    if not positions:
        return positions
    last = max(call(p) for p in positions)
    return [p for p in positions if call(p) == last]


def reads_later_layer(node, graph, producer, owners, index) -> bool:
    """A node named after this layer that reads a later layer's output only carries the name: the
    transpose optimizer pushes a layer's output Transpose past the next layer's Relu and keeps it,
    at times behind a Reshape of its own (a size-1 axis moved), a node that owns no layer."""
    data = next((name for name in node.input if name), None)
    while data in producer:
        position = producer[data]
        if owners[position] is not None:
            return owners[position] > index
        if graph.node[position].op_type not in _RESHAPES:
            return False
        data = next((name for name in graph.node[position].input if name), None)
    return False


def element_kinds(onnx_model) -> dict[str, bool]:
    """Whether each typed tensor holds floats."""
    from onnx import TensorProto

    from xverify.shapes import value_infos

    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    return {name: info.type.tensor_type.elem_type in floats for name, info in value_infos(onnx_model).items()}


def same_kind(layer, is_float: bool | None) -> bool:
    """False for a boolean or integer tensor standing for a float output (a Masking layer's mask,
    left as its last tensor used elsewhere when its product was fused into the next layer)."""
    dtype = str(getattr(getattr(layer, "output", None), "dtype", "") or "")
    return is_float is None or not dtype.startswith("float") or is_float


def reads_other_weights(position, graph, index, consumers, owners) -> bool:
    """The node making the tensor folded a later layer's constant in (tf2onnx merged the next
    BatchNormalization's scale into a UnitNormalization's last Mul; grappler moved a Rescaling's
    factor into the GELU before it): the tensor is not this layer's output. A constant the later
    layer's own nodes read as well is only shared (tf2onnx merges equal constants: ReLU6 bounds)."""
    if position is None:
        return False
    inits = {i.name for i in graph.initializer}
    for name in graph.node[position].input:
        later = layer_index_of(name + "/") if name in inits else None
        if later is not None and later > index and all(owners[p] != later for p in consumers.get(name, ())):
            return True
    return False


def fused_forward(graph, owners) -> set[int]:
    """Layers whose weights feed a node of another layer: tf2onnx fused their last step into it
    (a SeparableConv2D's pointwise Conv folded with the next BatchNorm), so no tensor holds their
    output."""
    weights = weight_owners(graph)
    scalars = _scalar_owners(graph)
    readers: dict[str, set] = {}
    for node, owner in zip(graph.node, owners):
        for name in node.input:
            readers.setdefault(name, set()).add(owner)
    fused = set()
    for node, owner in zip(graph.node, owners):
        for name in node.input:
            source = weights.get(name)
            if source is not None and owner is not None and source != owner:
                fused.add(source)
            # A scalar only when the layer's own nodes no longer read it (tf2onnx shares equal
            # scalars): hard_sigmoid's 1/6 folded into the next BatchNormalization's scale.
            source = scalars.get(name)
            if source is not None and owner is not None and owner > source and source not in readers[name]:
                fused.add(source)
    return fused


def _scalar_owners(graph) -> dict[str, int]:
    from xverify.convert import is_float

    return {
        i.name: index
        for i in graph.initializer
        if is_float(i) and math.prod(i.dims) == 1 and (index := layer_index_of(i.name + "/")) is not None
    }
