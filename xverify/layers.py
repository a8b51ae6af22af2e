"""Keras layer <-> ONNX tensor map and layout reconciliation (the comparison is in divergence.py).

Each Keras layer's ONNX nodes are found by the ``xvl<index>`` scope token that ``convert`` puts in node
names (or, for an ONNX file converted elsewhere, by the TensorFlow name scope ``<layer>`` / ``<layer>_N``).
A layer's output tensor is the last tensor its nodes produce that is used outside them. Conv layers run
NCHW inside the graph and recurrent layers time-major, so each tensor's reading is decided from the
graph (``xverify.layout``) and the tensor is moved back before it is compared with the Keras output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from xverify.convert import LAYERS_METADATA_KEY, flat_layers, layer_index_of
from xverify.layer_tensors import (
    adopt_unnamed,
    element_kinds,
    fused_forward,
    last_call,
    last_call_sources,
    reached_from,
    reads_later_layer,
    reads_other_weights,
    same_kind,
)
from xverify.layout import (  # noqa: F401  (readings, to_keras_layout: this module's API too)
    AS_IS,
    TransposeFinder,
    pending_permutations,
    pushed_permutation,
    readings,
    tensor_layouts,
    to_keras_layout,
)


@dataclass
class LayerTensor:
    """A Keras layer and the ONNX tensor holding its output (None: fused away or removed)."""

    index: int
    name: str
    layer_class: str
    tensor: str | None
    nodes: tuple[str, ...]
    layout: str | None  # how the ONNX tensor reads as the Keras output (xverify.layout); None: undecided
    inbound: tuple[str, ...]


def _node_layer_indices(onnx_model, layers) -> list[int | None]:
    tokens = [layer_index_of(n.name) for n in onnx_model.graph.node]
    if any(t is not None for t in tokens) and _same_layers(onnx_model, layers):
        return tokens
    names = sorted((layer.name for layer in layers), key=len, reverse=True)
    index = {layer.name: i for i, layer in enumerate(layers)}
    out = []
    for node in onnx_model.graph.node:  # foreign file: match the TensorFlow scope components
        parts = node.name.split("/")[:-1]
        hit = next(
            (
                index[n]
                for part in parts
                for n in names
                if part == n or re.fullmatch(re.escape(n) + r"_\d+", part)
            ),
            None,
        )
        out.append(hit)
    return out


def _same_layers(onnx_model, layers) -> bool:
    meta = {p.key: p.value for p in onnx_model.metadata_props}.get(LAYERS_METADATA_KEY)
    if meta is None:
        return True
    table = json.loads(meta)
    return [row["name"] for row in table] == [layer.name for layer in layers]


def _inbound(layer, entries: dict) -> tuple[str, ...]:
    """The layers whose outputs this layer reads. flat_layers opened nested models up, so a nested
    model stands for the layer inside it that makes that output, and a nested model's input layer
    for what the model was called on (``entries``, from ``nested_entries``)."""
    names = []
    for node in getattr(layer, "_inbound_nodes", [])[:1]:
        for tensor in getattr(node, "input_tensors", []):
            history = getattr(tensor, "_keras_history", None)
            if history is not None:
                names.append(_maker(history, entries).name)
    return tuple(names)


def nested_entries(model) -> dict:
    """For each input layer of a nested model: the Keras history of the tensor the model was
    called on (its first call), by the input layer's id."""
    entries = {}
    for layer in getattr(model, "layers", ()):
        if not getattr(layer, "layers", None):
            continue
        entries.update(nested_entries(layer))
        calls = getattr(layer, "_inbound_nodes", ())
        outer = getattr(calls[0], "input_tensors", ()) if calls else ()
        for inner, given in zip(getattr(layer, "inputs", None) or (), outer):
            inner_history = getattr(inner, "_keras_history", None)
            given_history = getattr(given, "_keras_history", None)
            if inner_history is not None and given_history is not None:
                entries[id(inner_history.operation)] = given_history
    return entries


def _maker(history, entries: dict):
    """The flat layer behind a Keras history entry: into nested models' outputs, out of their
    inputs."""
    operation = history.operation
    for _ in range(64):  # nesting depth; a built model has no cycle
        outputs = getattr(operation, "outputs", None) if getattr(operation, "layers", None) else None
        inner = getattr(outputs[history.tensor_index], "_keras_history", None) if outputs else None
        inner = inner or entries.get(id(operation))
        if inner is None:
            break
        history, operation = inner, inner.operation
    return operation


def map_layers(keras_model, onnx_model) -> list[LayerTensor]:
    """Every flat Keras layer with the ONNX tensor that holds its output."""
    layers = flat_layers(keras_model)
    entries = nested_entries(keras_model)
    graph = onnx_model.graph
    owners = adopt_unnamed(
        graph, _node_layer_indices(onnx_model, layers), [type(layer).__name__ for layer in layers]
    )
    consumers: dict[str, set[int]] = {}
    for position, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, set()).add(position)
    outputs = {o.name for o in graph.output}
    shapes = static_shapes(onnx_model)
    kinds = element_kinds(onnx_model)
    layouts = tensor_layouts(onnx_model, shapes)
    sizes = {name: int(np.prod(dims[1:])) for name, dims in shapes.items() if dims and None not in dims[1:]}
    fused = fused_forward(graph, owners)
    producer = {name: p for p, node in enumerate(graph.node) for name in node.output}
    rows: list[LayerTensor] = []
    for index, layer in enumerate(layers):
        positions = [p for p, owner in enumerate(owners) if owner == index]
        if len(getattr(layer, "_inbound_nodes", ())) > 1:
            sources = last_call_sources(layer, rows, graph)
            positions = reached_from(sources, positions, graph) if sources else last_call(positions, graph)
        mine = set(positions)
        tensor = None
        for p in positions:
            if reads_later_layer(graph.node[p], graph, producer, owners, index):
                continue
            for name in graph.node[p].output:
                if name and (name in outputs or consumers.get(name, set()) - mine):
                    tensor = name
        foreign = tensor is not None and reads_other_weights(
            producer.get(tensor), graph, index, consumers, owners
        )
        if tensor is not None and (
            index in fused
            or foreign
            or not same_kind(layer, kinds.get(tensor))
            or not _holds_whole_output(layer, sizes.get(tensor))
        ):
            tensor = None  # the layer's output was fused into the next layer: look through it
        # A Transpose of an earlier layer reading this tensor says how it reads, whatever the
        # propagation found (a Permute merged with a Conv's transpose back to channels-last).
        layout = pushed_permutation(tensor, graph, consumers, owners, index, shapes) or (
            layouts.get(tensor) if tensor else None
        )
        rows.append(
            LayerTensor(
                index,
                layer.name,
                type(layer).__name__,
                tensor,
                tuple(graph.node[p].name for p in positions),
                layout,
                _inbound(layer, entries),
            )
        )
    pending_permutations(rows, layers, TransposeFinder(graph, producer, owners))
    return rows


def _holds_whole_output(layer, onnx_size: int | None) -> bool:
    """False when an ONNX tensor certainly holds only part of the layer's output (tf2onnx merged a
    Bidirectional layer's Concat into the next Concatenate, say)."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    if onnx_size is None or shape is None or any(d is None for d in tuple(shape)[1:]):
        return True
    return int(np.prod(tuple(shape)[1:])) == onnx_size


def static_shapes(onnx_model) -> dict[str, list]:
    """Every typed tensor's static shape (None for a dimension that is not a number)."""
    from xverify.shapes import value_infos

    return {
        name: [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
        for name, info in value_infos(onnx_model).items()
    }


def with_effective_inputs(every: list[LayerTensor]) -> list[LayerTensor]:
    """The compared layers, each with its nearest compared ancestors as inputs: a layer with no
    ONNX tensor (Dropout removed, a Conv fused into its BatchNorm) is looked through."""
    by_name = {r.name: r for r in every}

    def resolve(name, seen):
        row = by_name.get(name)
        if row is None or name in seen:
            return ()
        if row.tensor is not None:
            return (name,)
        return tuple(n for parent in row.inbound for n in resolve(parent, seen | {name}))

    out = []
    for row in every:
        if row.tensor is not None:
            inputs = tuple(dict.fromkeys(n for p in row.inbound for n in resolve(p, {row.name})))
            out.append(
                LayerTensor(row.index, row.name, row.layer_class, row.tensor, row.nodes, row.layout, inputs)
            )
    return out
