"""Keras layer <-> ONNX tensor map and layout reconciliation (the comparison is in divergence.py).

Each Keras layer's ONNX nodes are found by the ``xvl<index>`` scope token that ``convert`` puts in node
names (or, for an ONNX file converted elsewhere, by the TensorFlow name scope ``<layer>`` / ``<layer>_N``).
A layer's output tensor is the last tensor its nodes produce that is used outside them. Conv layers run
NCHW inside the graph and recurrent layers time-major, so each tensor's reading is decided from the
graph (``xverify.layout``) and the tensor is moved back before it is compared with the Keras output.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from xverify.convert import LAYERS_METADATA_KEY, flat_layers, layer_index_of
from xverify.layout import AS_IS, CHANNELS_FIRST, PERMUTED, TIME_MAJOR, tensor_layouts


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
    shapes = static_shapes(onnx_model)
    kinds = _element_kinds(onnx_model)
    layouts = tensor_layouts(onnx_model, shapes)
    sizes = {name: int(np.prod(dims[1:])) for name, dims in shapes.items()
             if dims and None not in dims[1:]}
    fused_forward = _fused_forward(graph, owners)
    producer = {name: p for p, node in enumerate(graph.node) for name in node.output}
    rows = []
    for index, layer in enumerate(layers):
        positions = [p for p, owner in enumerate(owners) if owner == index]
        if len(getattr(layer, "_inbound_nodes", ())) > 1:
            sources = _last_call_sources(layer, rows, graph)
            positions = (_reached_from(sources, positions, graph) if sources
                         else _last_call(positions, graph))
        mine = set(positions)
        tensor = None
        for p in positions:
            if _reads_later_layer(graph.node[p], producer, owners, index):
                continue
            for name in graph.node[p].output:
                if name and (name in outputs or consumers.get(name, set()) - mine):
                    tensor = name
        foreign = tensor is not None and _reads_other_weights(producer.get(tensor), graph, index,
                                                              consumers, owners)
        if tensor is not None and (index in fused_forward or foreign
                                   or not _same_kind(layer, kinds.get(tensor))
                                   or not _holds_whole_output(layer, sizes.get(tensor))):
            tensor = None  # the layer's output was fused into the next layer: look through it
        layout = layouts.get(tensor)
        if layout == AS_IS:
            layout = _pushed_permutation(tensor, graph, consumers, owners, index) or layout
        rows.append(LayerTensor(index, layer.name, type(layer).__name__, tensor,
                                tuple(graph.node[p].name for p in positions), layout,
                                _inbound(layer)))
    _pending_permutations(rows, layers, _TransposeFinder(graph, producer, owners))
    return rows


# Layers that keep their input's axis order, so that tf2onnx may push a Permute's Transpose past them.
_ELEMENTWISE = {"ReLU", "Activation", "BatchNormalization", "Dropout", "LeakyReLU", "ELU", "PReLU",
                "Rescaling", "GaussianNoise", "GaussianDropout", "Add", "Subtract", "Multiply",
                "Average", "Maximum", "Minimum", "Softmax"}


def _pending_permutations(rows: list, layers: list, transposes) -> None:
    """Keras ``Permute`` layers whose Transpose tf2onnx pushed down past elementwise layers (and
    merged with later ones, under no layer's name): the Permute has no tensor of its own, and the
    elementwise layers after it hold their outputs before the permutation, until a Transpose is met
    on the way. Each such tensor is read through the Permutes' composed perm (the layers' own dims,
    so nothing is guessed from shapes)."""
    pending: dict[str, tuple | None] = {}
    start: dict[str, int] = {}
    for row, layer in zip(rows, layers):
        parents = [pending.get(name) for name in row.inbound]
        if row.layer_class == "Permute" and row.tensor is None and len(parents) == 1:
            dims = (0, *(int(d) for d in layer.dims))
            base = parents[0] or tuple(range(len(dims)))
            pending[row.name] = tuple(base[i] for i in dims)
            start[row.name] = start.get(row.inbound[0], row.index) if parents[0] else row.index
        elif row.layer_class in _ELEMENTWISE and parents and all(p == parents[0] for p in parents):
            pending[row.name] = parents[0]
            start[row.name] = start.get(row.inbound[0], row.index)
        else:
            pending[row.name] = None
        perm = pending[row.name]
        if perm and row.tensor is not None and transposes.between(row.tensor, start[row.name]):
            pending[row.name] = perm = None  # the permutation happened here (merged, pushed)
        if perm and row.tensor is not None and row.layout == AS_IS and perm != tuple(range(len(perm))):
            row.layout = PERMUTED + ",".join(str(i) for i in perm)


class _TransposeFinder:
    """Whether a Transpose lies on the way to a tensor from the nodes of layers before ``since``."""

    def __init__(self, graph, producer, owners):
        self.graph, self.producer, self.owners = graph, producer, owners

    def between(self, tensor: str, since: int) -> bool:
        todo, seen = [tensor], set()
        while todo and len(seen) < 200:
            position = self.producer.get(todo.pop())
            if position is None or position in seen:
                continue
            seen.add(position)
            owner = self.owners[position]
            if owner is not None and owner < since:
                continue
            node = self.graph.node[position]
            if node.op_type == "Transpose":
                return True
            todo.extend(i for i in node.input if i)
        return False


def _pushed_permutation(tensor, graph, consumers, owners, index) -> str | None:
    """A Keras ``Permute`` whose Transpose tf2onnx pushed past this layer (elementwise, such as a
    BatchNormalization's scale and offset): the Transpose still carries the earlier layer's token
    and reads this layer's tensor, which therefore holds the output before that permutation."""
    from xverify.layout import PERMUTED

    for p in consumers.get(tensor, ()):
        node = graph.node[p]
        if node.op_type == "Transpose" and owners[p] is not None and owners[p] < index:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            if perm:
                return PERMUTED + ",".join(str(i) for i in perm)
    return None


def _last_call_sources(layer, rows, graph) -> list[str] | None:
    """The ONNX tensors the layer's last call reads: model inputs by name, earlier layers by their
    tensor; None when one is not known (a layer reused on its own output)."""
    inputs = {i.name for i in graph.input}
    tensors = {r.name: r.tensor for r in rows}
    sources = []
    for tensor in getattr(layer._inbound_nodes[-1], "input_tensors", []):
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None)
        name = getattr(operation, "name", None)
        if type(operation).__name__ == "InputLayer" and name in inputs:
            sources.append(name)
        elif tensors.get(name):
            sources.append(tensors[name])
        else:
            return None
    return sources or None


def _reached_from(sources: list[str], positions: list[int], graph) -> list[int]:
    """The layer's nodes downstream of its last call's inputs (the data decides the call, where
    fused nodes renamed into the weights' scope carry the first call's name)."""
    reached = set(sources)
    for node in graph.node:
        if any(i in reached for i in node.input):
            reached.update(o for o in node.output if o)
    mine = [p for p in positions if any(o in reached for o in graph.node[p].output)]
    return mine or positions


def _last_call(positions: list[int], graph) -> list[int]:
    """The nodes of a shared or reused layer's last call. TensorFlow numbers the scope of each call
    (``dense_1/xvl3``, then ``dense_3/xvl3``), so the call with the highest numbers in the scope
    before the layer token is the last; TensorFlow's taps keep the last call's output too."""
    from xverify.convert import _TOKEN

    def call(p):
        match = _TOKEN.search(graph.node[p].name)
        prefix = graph.node[p].name[:match.start()] if match else ""
        return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", prefix)]

    if not positions:
        return positions
    last = max(call(p) for p in positions)
    return [p for p in positions if call(p) == last]


def _reads_later_layer(node, producer, owners, index) -> bool:
    """A node named after this layer that reads a later layer's output only carries the name: the
    transpose optimizer pushes a layer's output Transpose past the next layer's Relu and keeps it."""
    data = next((name for name in node.input if name), None)
    source = owners[producer[data]] if data in producer else None
    return source is not None and source > index


def _element_kinds(onnx_model) -> dict[str, bool]:
    """Whether each typed tensor holds floats."""
    from onnx import TensorProto

    from xverify.shapes import value_infos

    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    return {name: info.type.tensor_type.elem_type in floats
            for name, info in value_infos(onnx_model).items()}


def _same_kind(layer, is_float: bool | None) -> bool:
    """False for a boolean or integer tensor standing for a float output (a Masking layer's mask,
    left as its last tensor used elsewhere when its product was fused into the next layer)."""
    dtype = str(getattr(getattr(layer, "output", None), "dtype", "") or "")
    return is_float is None or not dtype.startswith("float") or is_float


def _reads_other_weights(position, graph, index, consumers, owners) -> bool:
    """The node making the tensor folded a later layer's constant in (tf2onnx merged the next
    BatchNormalization's scale into a UnitNormalization's last Mul; grappler moved a Rescaling's
    factor into the GELU before it): the tensor is not this layer's output. A constant the later
    layer's own nodes read as well is only shared (tf2onnx merges equal constants: ReLU6 bounds)."""
    if position is None:
        return False
    inits = {i.name for i in graph.initializer}
    for name in graph.node[position].input:
        later = layer_index_of(name + "/") if name in inits else None
        if later is not None and later > index and \
                all(owners[p] != later for p in consumers.get(name, ())):
            return True
    return False


def _fused_forward(graph, owners) -> set[int]:
    """Layers whose weights feed a node of another layer: tf2onnx fused their last step into it
    (a SeparableConv2D's pointwise Conv folded with the next BatchNorm), so no tensor holds their
    output."""
    weights = _weight_owners(graph)
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
            if source is not None and owner is not None and owner > source \
                    and source not in readers[name]:
                fused.add(source)
    return fused


def _scalar_owners(graph) -> dict[str, int]:
    from xverify.convert import is_float

    return {i.name: index for i in graph.initializer
            if is_float(i) and math.prod(i.dims) == 1
            and (index := layer_index_of(i.name + "/")) is not None}


def _holds_whole_output(layer, onnx_size: int | None) -> bool:
    """False when an ONNX tensor certainly holds only part of the layer's output (tf2onnx merged a
    Bidirectional layer's Concat into the next Concatenate, say)."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    if onnx_size is None or shape is None or any(d is None for d in tuple(shape)[1:]):
        return True
    return int(np.prod(tuple(shape)[1:])) == onnx_size


def readings(value: np.ndarray, layout: str | None, keras_shape: tuple | None = None) -> list:
    """The ONNX tensor read as the Keras layer's output: one reading where the graph decided the
    layout (``xverify.layout``); where it could not, every distinct reading that fits the Keras
    shape (as is, channels-first moved last, time-major), for the caller to compare each and say so.

    A reading that differs from the Keras shape only by size-1 axes is reshaped to it (1-D pooling
    runs as a 2-D pool with a unit height). A tensor no reading fits is returned as is, and the
    comparison reports the shape mismatch.
    """
    every = {AS_IS: value}
    if layout and layout.startswith(PERMUTED):
        perm = [int(i) for i in layout[len(PERMUTED):].split(",")]
        if len(perm) == value.ndim:
            every[layout] = np.transpose(value, perm)
    if value.ndim >= 3:
        every[CHANNELS_FIRST] = np.moveaxis(value, 1, -1)
    if value.ndim >= 2:
        every[TIME_MAJOR] = np.swapaxes(value, 0, 1)
    if keras_shape is None:
        return [every.get(layout, value)]
    decided = _fit(every.get(layout), tuple(keras_shape), layout == AS_IS) if layout else None
    if decided is not None:
        return [decided]
    fitting = [r for r in (_fit(v, tuple(keras_shape)) for v in every.values()) if r is not None]
    distinct = []
    for r in fitting:
        if not any(np.array_equal(r, d, equal_nan=True) for d in distinct):
            distinct.append(r)
    return distinct or [value]


def _fit(reading, keras_shape: tuple, row_major: bool = False):
    """``reading`` in the Keras shape where they differ only by size-1 axes; or, for a tensor the
    graph holds as is (``row_major``), by any reshape of the same per-sample size: the layer's
    final Reshape was merged into the next layer's (UpSampling2D's Tile before a Keras Reshape)."""
    if reading is None:
        return None
    if reading.shape == keras_shape:
        return reading
    squeezed = tuple(d for d in keras_shape if d != 1)
    if reading.size != int(np.prod(keras_shape)) or reading.shape[:1] != keras_shape[:1]:
        return None
    if row_major or tuple(d for d in reading.shape if d != 1) == squeezed:
        return reading.reshape(keras_shape)
    return None


def to_keras_layout(value: np.ndarray, layout: str | None, keras_shape: tuple | None = None):
    """The first of ``readings``: the one reading where the layout is decided."""
    return readings(value, layout, keras_shape)[0]


def static_shapes(onnx_model) -> dict[str, list]:
    """Every typed tensor's static shape (None for a dimension that is not a number)."""
    from xverify.shapes import value_infos

    return {name: [d.dim_value if d.HasField("dim_value") else None
                   for d in info.type.tensor_type.shape.dim]
            for name, info in value_infos(onnx_model).items()}


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
                                   row.layout, inputs))
    return out
