"""Keras layer <-> ONNX tensor map, layout reconciliation, and the per-layer comparison.

Each Keras layer's ONNX nodes are found by the ``xvl<index>`` scope token that ``convert`` puts in node
names (or, for an ONNX file converted elsewhere, by the TensorFlow name scope ``<layer>`` / ``<layer>_N``).
A layer's output tensor is the last tensor its nodes produce that is used outside them. Conv layers run
NCHW inside the graph, so each tensor's layout is propagated through the Transposes, and an NCHW
tensor is transposed back before it is compared with the Keras (channels-last) output.

Memory stays bounded: layers are compared in chunks whose tensors fit a byte budget; the NumPy engine
streams its tensors through a callback and each chunk's values are released once compared.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from xverify.compare import compare
from xverify.convert import LAYERS_METADATA_KEY, flat_layers, layer_index_of
from xverify.report.model import LayerDiff

CHUNK_BYTES = 256 << 20  # per runtime: tapped tensors held at once
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
        return _credit_fusions(onnx_model.graph, tokens)
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
    """Float initializers with more than one element (weights, not shared scalars or shapes) and the
    layer whose scope token they carry."""
    owners = {}
    for init in graph.initializer:
        index = layer_index_of(init.name + "/")
        if index is not None and init.data_type in (1, 10, 11) and int(np.prod(init.dims)) > 1:
            owners[init.name] = index
    return owners


def _credit_fusions(graph, tokens: list[int | None]) -> list[int | None]:
    """A node tf2onnx built by fusing two layers (a SeparableConv2D's pointwise Conv with the next
    BatchNorm, named afresh ``Conv__17``) carries no token: credit it to the latest layer whose
    weights it consumes, since the fused result is that layer's output."""
    weights = _weight_owners(graph)
    out = list(tokens)
    for position, node in enumerate(graph.node):
        if out[position] is None:
            sources = [weights[name] for name in node.input if name in weights]
            if sources:
                out[position] = max(sources)
    return out


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
    """Elements per sample of each intermediate tensor whose shape is known but for one dimension
    (the batch)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(onnx_model)
    except Exception:  # shape inference is a help here, not a requirement
        return {}
    sizes = {}
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        known = [d.dim_value for d in dims if d.HasField("dim_value")]
        if dims and len(known) == len(dims) - 1:
            sizes[info.name] = int(np.prod(known))
    return sizes


def _chunks(rows: list[LayerTensor], keras_model, batch: int) -> list[list[LayerTensor]]:
    by_name = {layer.name: layer for layer in flat_layers(keras_model)}
    chunks, current, size = [], [], 0
    for row in rows:
        shape = getattr(by_name[row.name], "output", None)
        shape = getattr(shape, "shape", None) or ()
        nbytes = 4 * batch * math.prod(d or 1 for d in tuple(shape)[1:])
        if current and size + nbytes > CHUNK_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += nbytes
    return chunks + ([current] if current else [])


def compare_layers(keras_model, onnx_model, feeds, runners, *, atol, rtol, oracle=None):
    """Compare every mapped layer across every pair of runtimes, chunk by chunk.

    Args:
        oracle: a float64 NumPy runtime; where the ONNX runtimes disagree at the first divergence,
            the one farthest from it is named.

    Returns:
        ``(layer_diffs, first_divergence, suspects)``.
    """
    every = map_layers(keras_model, onnx_model)
    rows = _with_effective_inputs(every)
    if not rows or len(runners) < 2:
        return (), None, ()
    batch = int(next(iter(feeds.values())).shape[0])
    chunks = _chunks(rows, keras_model, batch)
    results: dict[str, LayerDiff] = {}
    def finish(chunk, numpy_values):
        # TensorFlow first: its (Keras-layout) shapes settle an ONNX tensor's layout.
        values = {}
        if "tensorflow" in runners:
            values["tensorflow"] = _tap(runners["tensorflow"], feeds, [r.name for r in chunk])
        shapes = {k: np.shape(v) for k, v in values.get("tensorflow", {}).items()}
        onnx_side = {"numpy": lambda: numpy_values,
                     "onnxruntime": lambda: _tap(runners["onnxruntime"], feeds,
                                                 [r.tensor for r in chunk])}
        for name in runners:
            if name in onnx_side:
                got = onnx_side[name]()
                values[name] = {r.name: to_keras_layout(got[r.tensor], r.nchw, shapes.get(r.name))
                                for r in chunk if got.get(r.tensor) is not None}
        for row in chunk:
            results[row.name] = _layer_diff(row, values, atol, rtol)

    if "numpy" in runners:
        _stream_numpy(runners["numpy"], feeds, chunks, finish)
    else:
        for chunk in chunks:
            finish(chunk, {})
    ordered = [results[r.name] for r in rows if r.name in results]
    growth = _growth(rows, results)
    ordered = [_with_growth(d, growth.get(d.name, 0.0)) for d in ordered]
    first = first_divergence(rows, {d.name: d for d in ordered})
    if first is not None and oracle is not None:
        _referee(first, next(r for r in rows if r.name == first["layer"]), feeds, runners, oracle)
    suspects = sorted(({"layer": d.name, "class": d.layer_class, "growth": round(d.growth, 3)}
                       for d in ordered if not d.passed and d.growth > 0), key=lambda s: -s["growth"])
    return tuple(ordered), first, tuple(suspects[:5])


def _tap(runner, feeds, names):
    try:
        return runner.run(feeds, taps=names)
    except Exception:  # a layer that cannot be tapped (nested model, untyped tensor) is skipped
        return {}


def _stream_numpy(runner, feeds, chunks, finish):
    wanted = {r.tensor: i for i, chunk in enumerate(chunks) for r in chunk}
    pending = [{r.tensor for r in chunk} for chunk in chunks]
    held: dict[str, np.ndarray] = {}

    def on_tensor(name, value):
        index = wanted.get(name)
        if index is None:
            return
        held[name] = value
        pending[index].discard(name)
        if not pending[index]:
            finish(chunks[index], held)
            for r in chunks[index]:
                held.pop(r.tensor, None)

    runner.run(feeds, on_tensor=on_tensor)
    for index, chunk in enumerate(chunks):  # tensors the engine never produced: compare the rest
        if pending[index]:
            finish([r for r in chunk if r.tensor in held], held)


def layer_atol(reference: np.ndarray, atol: float, rtol: float) -> float:
    """The absolute tolerance of a hidden layer: at least ``rtol`` times the layer's largest value.

    Float32 rounding of a sum is relative to the size of its terms, not of its result: where terms
    cancel to near zero, the elementwise ``rtol * |b|`` vanishes while the rounding does not (seen on
    deep CNNs with realistic activations: runtimes of the same graph differ by 2e-4 on layers whose
    values reach 9). So a layer is judged norm-wise at its own scale. A real fault moves values by a
    sizeable fraction of that scale and still fails; the outputs keep the elementwise rule.
    """
    finite = np.abs(np.asarray(reference, np.float64))
    finite = finite[np.isfinite(finite)]
    scale = float(finite.max()) if finite.size else 0.0
    return max(float(atol), float(rtol) * scale)


def _layer_diff(row, values, atol, rtol) -> LayerDiff:
    diffs = {}
    names = [n for n in ("tensorflow", "onnxruntime", "numpy") if n in values]
    for i, b in enumerate(names):
        for a in names[i + 1:]:
            va, vb = values[a].get(row.name), values[b].get(row.name)
            if va is None or vb is None:
                continue
            diffs[f"{a}|{b}"] = compare(va, vb, atol=layer_atol(vb, atol, rtol), rtol=rtol,
                                        a_name=a, b_name=b, output=row.name)
    return LayerDiff(row.name, row.layer_class, row.tensor, row.nodes, diffs,
                     all(diffs.values()) if diffs else True)


def _with_effective_inputs(every: list[LayerTensor]) -> list[LayerTensor]:
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


def _error(diff: LayerDiff | None) -> float:
    """A layer's worst normalised error: max abs diff over the allowed difference."""
    if diff is None or not diff.diffs:
        return 0.0
    return max(d.max_abs_diff / (d.atol + d.rtol) for d in diff.diffs.values())


def _growth(rows, results) -> dict[str, float]:
    """How sharply the error grows across each layer: log10 of output error over input error
    (errors in units of the tolerance, floored at 1e-3 so exact agreement is not a zero)."""
    growth = {}
    for row in rows:
        err_in = max((_error(results.get(n)) for n in row.inbound), default=0.0)
        err_out = _error(results.get(row.name))
        if not math.isfinite(err_out):
            growth[row.name] = 0.0 if not math.isfinite(err_in) else float("inf")
        elif not math.isfinite(err_in):
            growth[row.name] = float("-inf")
        else:
            growth[row.name] = math.log10((err_out + 1e-3) / (err_in + 1e-3))
    return growth


def _with_growth(diff: LayerDiff, growth: float) -> LayerDiff:
    return LayerDiff(diff.name, diff.layer_class, diff.onnx_tensor, diff.onnx_nodes, diff.diffs,
                     diff.passed, growth)


def first_divergence(rows, diffs: dict[str, LayerDiff]) -> dict | None:
    """The earliest failing layer all of whose inputs (nearest compared ancestors) are within
    tolerance for the same runtime pair."""
    for row in rows:
        d = diffs.get(row.name)
        if d is None or d.passed:
            continue
        for pair, diff in sorted(d.diffs.items(), key=lambda kv: -kv[1].max_abs_diff):
            inputs_ok = all(pair not in diffs[p].diffs or diffs[p].diffs[pair]
                            for p in row.inbound if p in diffs)
            if not diff and inputs_ok:
                return {"layer": row.name, "class": row.layer_class, "a": diff.a, "b": diff.b,
                        "max_abs_diff": diff.max_abs_diff, "onnx_tensor": row.tensor,
                        "onnx_nodes": list(row.nodes), "diverged": _who(d),
                        "pairs": {p: bool(x) for p, x in d.diffs.items()}}
    return None


def _referee(first: dict, row: LayerTensor, feeds, runners, oracle) -> None:
    """Where the ONNX runtimes disagree on a layer, say which is farther from the float64 oracle.

    The oracle computes the ONNX graph exactly, so it arbitrates rounding between runtimes of the
    same graph; it cannot judge a conversion fault (there, the graph itself is what differs).
    """
    onnx_sides = [n for n in ("numpy", "onnxruntime") if n in runners]
    pair = "numpy|onnxruntime"  # the key _layer_diff gives this pair (reference side last)
    if len(onnx_sides) < 2 or first["pairs"].get(pair, True):
        return
    exact = oracle.run(feeds, taps=[row.tensor])[row.tensor]
    distances = {}
    for name in onnx_sides:
        got = runners[name].run(feeds, taps=[row.tensor]).get(row.tensor)
        if got is not None and np.shape(got) == np.shape(exact):
            distances[name] = float(np.max(np.abs(np.asarray(got, np.float64) - exact)))
    if len(distances) == 2:
        far = max(distances, key=distances.get)
        first["oracle_distances"] = distances
        first["diverged"] = (f"{far} is farther from the float64 oracle at this layer "
                             f"({', '.join(f'{k} {v:.3g}' for k, v in distances.items())})")


def _who(diff: LayerDiff) -> str:
    """Which side diverged, from which pairs agree."""
    ok = {pair for pair, d in diff.diffs.items() if d}
    if "onnxruntime|numpy" in ok or "numpy|onnxruntime" in ok:
        return ("numpy and onnxruntime agree on the ONNX graph and both differ from TensorFlow: "
                "the conversion is at fault")
    for pair in ok:
        sides = pair.split("|")
        if "tensorflow" in sides:
            agree = next(side for side in sides if side != "tensorflow")
            return f"{agree} agrees with TensorFlow: the other ONNX runtime is at fault"
    return ""
