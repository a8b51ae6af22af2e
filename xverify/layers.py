"""Keras layer <-> ONNX tensor map and layout reconciliation (the comparison is in divergence.py).

Each Keras layer's ONNX nodes are found by the ``xvl<index>`` scope token that ``convert`` puts in node
names (or, for an ONNX file converted elsewhere, by the TensorFlow name scope ``<layer>`` / ``<layer>_N``).
A layer's output tensor is the last tensor its nodes produce that is used outside them. Conv layers run
NCHW inside the graph, so each tensor's layout is propagated through the Transposes, and an NCHW
tensor is transposed back before it is compared with the Keras (channels-last) output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from xverify.convert import LAYERS_METADATA_KEY, flat_layers, layer_index_of
_RESHAPING = {"Reshape", "Flatten", "MatMul", "Gemm", "Shape", "Gather", "Squeeze", "Unsqueeze",
              "Einsum", "ReduceMean", "ReduceSum", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool"}


@dataclass
class LayerTensor:
    """A Keras layer and the ONNX tensor holding its output (None: fused away or removed)."""

    index: int
    name: str
    layer_class: str
    tensor: str | None
    nodes: tuple[str, ...]
    nchw: bool
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
        hit = next((index[n] for part in parts for n in names
                    if part == n or re.fullmatch(re.escape(n) + r"_\d+", part)), None)
        out.append(hit)
    return out


def _weight_owners(graph) -> dict[str, int]:
    """Weights (not shared scalars or shapes) and the layer whose scope token they carry."""
    from xverify.convert import is_weight

    return {i.name: index for i in graph.initializer
            if is_weight(i) and (index := layer_index_of(i.name + "/")) is not None}


def _same_layers(onnx_model, layers) -> bool:
    meta = {p.key: p.value for p in onnx_model.metadata_props}.get(LAYERS_METADATA_KEY)
    if meta is None:
        return True
    table = json.loads(meta)
    return [row["name"] for row in table] == [layer.name for layer in layers]


def _nchw_tensors(onnx_model) -> set[str]:
    """Tensors in channels-first layout, propagated from the inputs through every Transpose."""
    nchw: set[str] = set()
    for node in onnx_model.graph.node:
        first = next((i for i in node.input if i), "")
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            rank = len(perm)
            to_first = [0, rank - 1, *range(1, rank - 1)]
            to_last = [0, *range(2, rank), 1]
            if rank >= 3 and ((perm == to_first and first not in nchw)
                              or (perm == list(range(rank)) and first in nchw)):
                nchw.update(node.output)
            elif rank >= 3 and perm == to_last and first not in nchw:
                pass  # channels-last again (or a foreign layout we leave as is)
        elif node.op_type not in _RESHAPING and first in nchw:
            nchw.update(o for o in node.output if o)
    return nchw


def _inbound(layer) -> tuple[str, ...]:
    names = []
    for node in getattr(layer, "_inbound_nodes", [])[:1]:
        for tensor in getattr(node, "input_tensors", []):
            history = getattr(tensor, "_keras_history", None)
            if history is not None:
                names.append(history.operation.name)
    return tuple(names)


def map_layers(keras_model, onnx_model) -> list[LayerTensor]:
    """Every flat Keras layer with the ONNX tensor that holds its output."""
    layers = flat_layers(keras_model)
    graph = onnx_model.graph
    owners = _node_layer_indices(onnx_model, layers)
    consumers: dict[str, set[int]] = {}
    for position, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, set()).add(position)
    outputs = {o.name for o in graph.output}
    nchw = _nchw_tensors(onnx_model)
    sizes = _per_sample_sizes(onnx_model)
    fused_forward = _fused_forward(graph, owners)
    producer = {name: p for p, node in enumerate(graph.node) for name in node.output}
    rows = []
    for index, layer in enumerate(layers):
        positions = [p for p, owner in enumerate(owners) if owner == index]
        mine = set(positions)
        tensor = None
        for p in positions:
            if _reads_later_layer(graph.node[p], producer, owners, index):
                continue
            for name in graph.node[p].output:
                if name and (name in outputs or consumers.get(name, set()) - mine):
                    tensor = name
        if tensor is not None and (index in fused_forward
                                   or not _holds_whole_output(layer, sizes.get(tensor))):
            tensor = None  # the layer's output was fused into the next layer: look through it
        rows.append(LayerTensor(index, layer.name, type(layer).__name__, tensor,
                                tuple(graph.node[p].name for p in positions), tensor in nchw,
                                _inbound(layer)))
    return rows


def _reads_later_layer(node, producer, owners, index) -> bool:
    """A node named after this layer that reads a later layer's output only carries the name: the
    transpose optimizer pushes a layer's output Transpose past the next layer's Relu and keeps it."""
    data = next((name for name in node.input if name), None)
    source = owners[producer[data]] if data in producer else None
    return source is not None and source > index


def _fused_forward(graph, owners) -> set[int]:
    """Layers whose weights feed a node of another layer: tf2onnx fused their last step into it
    (a SeparableConv2D's pointwise Conv folded with the next BatchNorm), so no tensor holds their
    output."""
    weights = _weight_owners(graph)
    fused = set()
    for node, owner in zip(graph.node, owners):
        for name in node.input:
            source = weights.get(name)
            if source is not None and owner is not None and source != owner:
                fused.add(source)
    return fused


def _holds_whole_output(layer, onnx_size: int | None) -> bool:
    """False when an ONNX tensor certainly holds only part of the layer's output (tf2onnx merged a
    Bidirectional layer's Concat into the next Concatenate, say)."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    if onnx_size is None or shape is None or any(d is None for d in tuple(shape)[1:]):
        return True
    return int(np.prod(tuple(shape)[1:])) == onnx_size


def to_keras_layout(value: np.ndarray, nchw: bool, keras_shape: tuple | None = None) -> np.ndarray:
    """An ONNX tensor in the layout of the Keras layer's output.

    The propagated layout is the preferred reading. Where it does not give the Keras shape, the
    other readings tf2onnx produces are tried in turn: as is, channels-first moved last, time-major
    (batch and time swapped), then each reshaped where it differs only by size-1 axes (1-D pooling
    runs as a 2-D pool with a unit height). A tensor no reading fits is returned as is, and the
    comparison reports the shape mismatch.
    """
    if value.ndim < 3:
        readings = [value]
    else:
        moved = np.moveaxis(value, 1, -1)
        readings = [moved, value] if nchw else [value, moved]
        readings.append(np.swapaxes(value, 0, 1))
    if keras_shape is None:
        return readings[0]
    keras_shape = tuple(keras_shape)
    for reading in readings:
        if reading.shape == keras_shape:
            return reading
    squeezed = tuple(d for d in keras_shape if d != 1)
    for reading in readings:
        if (reading.size == int(np.prod(keras_shape)) and reading.shape[:1] == keras_shape[:1]
                and tuple(d for d in reading.shape if d != 1) == squeezed):
            return reading.reshape(keras_shape)
    return readings[0]


def _per_sample_sizes(onnx_model) -> dict[str, int]:
    """Elements per sample of each tensor whose shape is known but for one dimension (the batch)."""
    from xverify.shapes import value_infos

    sizes = {}
    for name, info in value_infos(onnx_model).items():
        dims = info.type.tensor_type.shape.dim
        known = [d.dim_value for d in dims if d.HasField("dim_value")]
        if dims and len(known) == len(dims) - 1:
            sizes[name] = int(np.prod(known))
    return sizes


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
            out.append(LayerTensor(row.index, row.name, row.layer_class, row.tensor, row.nodes,
                                   row.nchw, inputs))
    return out
