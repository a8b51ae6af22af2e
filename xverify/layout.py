"""Each ONNX tensor's reading in Keras terms, decided from the operations the graph applies, and
the readings of a layer's tensor that the comparison uses (``readings``).

tf2onnx runs convolutions and pools channels-first (NCHW) with Transposes at the edges, and
recurrent layers time-major, so an intermediate ONNX tensor may hold a Keras layer's output moved
around. Which way is decided here from the graph alone, never from a shape (a shape is ambiguous
whenever two dimensions are equal: a 6x6 ``Permute((2, 1))`` output, a cube of 3x3x3 channels):

- ``as-is``: graph inputs, and what an as-is tensor becomes through any layout-preserving op, a
  reshape, a matmul, or a Transpose that is a Keras ``Permute`` (it does not feed a channels-first op);
- ``channels-first``: the output of a channels-first op (Conv, ConvTranspose, windowed pools,
  BatchNormalization, InstanceNormalization, LRN, DepthToSpace, SpaceToDepth) of rank >= 3, and a
  channels-last tensor moved channels-first by a Transpose that feeds such an op or the inverse
  Transpose (a Resize between the two: UpSampling2D) (global pools keep
  their input's reading: tf2onnx also writes LayerNormalization's mean as one); a channels-first
  tensor stays so through layout-preserving ops and is back to ``as-is`` after the inverse Transpose;
- ``time-major``: the outputs of a recurrent op (LSTM, GRU, RNN, a Loop's scan outputs) and a
  batch-time swap of an as-is tensor, until the swap back;
- ``None``: undecidable (an axis permutation that is neither, a reshape mixing a moved axis).

Keras layers with ``data_format="channels_first"`` are not modelled: their tensors read as
channels-first moved, which TensorFlow's CPU kernels do not support anyway.
"""

from __future__ import annotations

import numpy as np

AS_IS, CHANNELS_FIRST, TIME_MAJOR = "as-is", "channels-first", "time-major"
# "permuted:0,2,1": the layer's output is this tensor transposed by that perm (a Keras Permute whose
# Transpose tf2onnx pushed past the layer; decided in ``layers.map_layers``, which knows the owners).
PERMUTED = "permuted:"

_CHANNELS_FIRST_OPS = {
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "BatchNormalization",
    "InstanceNormalization",
    "LRN",
    "DepthToSpace",
    "SpaceToDepth",
    "MaxUnpool",
    "ConvInteger",
    "QLinearConv",
}
# Reductions over every axis after the second: channels-first pooling, or a mean over the last axes
# (LayerNormalization's moments); either way the output keeps the input's reading.
_GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
_RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
# Ops whose output keeps the axis order of their data inputs (elementwise, or along a named axis).
_PRESERVING = {
    "Relu",
    "Sigmoid",
    "Tanh",
    "Elu",
    "Selu",
    "LeakyRelu",
    "PRelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Clip",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Erf",
    "Sin",
    "Cos",
    "Identity",
    "Cast",
    "Dropout",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Mean",
    "Sum",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Not",
    "Xor",
    "Mod",
    "IsNaN",
    "IsInf",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "Concat",
    "Split",
    "Slice",
    "Pad",
    "Resize",
    "Upsample",
    "Tile",
    "Expand",
    "Celu",
    "Gelu",
    "Mish",
    "ThresholdedRelu",
    "Shrink",
    "BitShift",
    "Trilu",
    "CumSum",
    "LayerNormalization",
    "Einsum",
}


def _perm(node) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def _to_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _feeds_channels_first(graph) -> set[str]:
    """Tensors that reach, through layout-preserving ops, the data input of a channels-first op or
    of a Transpose back to channels-last (a Resize or Pad between two Transposes runs channels-first
    too: UpSampling2D)."""
    feeding: set[str] = set()
    for node in reversed(graph.node):
        perm = _perm(node) if node.op_type == "Transpose" else []
        back = len(perm) >= 3 and perm == _to_last(len(perm))
        windowed = node.op_type in _CHANNELS_FIRST_OPS and node.op_type not in _GLOBAL_POOLS
        if (windowed or back) and node.input:
            feeding.add(node.input[0])
        elif node.op_type in _PRESERVING and any(o in feeding for o in node.output):
            feeding.update(i for i in node.input if i)
    return feeding


def tensor_layouts(onnx_model, shapes: dict | None = None) -> dict[str, str | None]:
    """The reading of every tensor the graph computes (see the module docstring).

    Args:
        shapes: tensor name -> static shape (a list, None where a dimension is unknown), to tell a reshape
            that only moves size-1 axes from one that mixes axes.
    """
    graph = onnx_model.graph
    shapes = shapes or {}
    layout: dict[str, str | None] = {i.name: AS_IS for i in graph.input}
    constant = {i.name for i in graph.initializer}
    layout.update({name: AS_IS for name in constant})
    feeding = _feeds_channels_first(graph)
    for node in graph.node:
        data = [i for i in node.input if i and i not in constant]
        first = layout.get(data[0]) if data else AS_IS
        for out in node.output:
            if out:
                layout[out] = _rule(node, first, data, layout, out, feeding, shapes)
    return layout


def _rule(node, first, data, layout, out, feeding, shapes):
    op = node.op_type
    rank = len(shapes.get(out) or ())
    if op in _GLOBAL_POOLS:
        return first
    if op in _CHANNELS_FIRST_OPS:
        return CHANNELS_FIRST if rank >= 3 or rank == 0 else AS_IS
    if op in _RECURRENT_OPS:  # Y is (time, directions, batch, units); Y_h, Y_c lead with directions
        return TIME_MAJOR if out == node.output[0] else AS_IS
    if op == "Loop":  # the final carried values (a state), then the scan outputs (stacked over time)
        return TIME_MAJOR if list(node.output).index(out) >= len(node.input) - 2 else AS_IS
    if op == "Transpose":
        return _transpose(_perm(node), first, out in feeding)
    if op in _PRESERVING:
        kinds = {layout.get(i) for i in data if len(shapes.get(i) or ()) == rank or not rank}
        kinds = kinds or {first}
        return kinds.pop() if len(kinds) == 1 else None
    if op in ("Squeeze", "Unsqueeze", "Reshape", "Flatten"):
        return _reshape(first, shapes.get(data[0]) if data else None, shapes.get(out), out in feeding)
    if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2"):
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        return first if keep or first == AS_IS else (AS_IS if rank <= 2 else None)
    return AS_IS if first == AS_IS else None


def _transpose(perm, first, feeds_channels_first):
    rank = len(perm)
    swap = [1, 0, *range(2, rank)]
    if first == AS_IS:
        if rank >= 3 and perm == _to_first(rank) and feeds_channels_first:
            return CHANNELS_FIRST
        return TIME_MAJOR if rank >= 2 and perm == swap else AS_IS  # else a Keras Permute
    if first == CHANNELS_FIRST:
        return AS_IS if perm == _to_last(rank) else CHANNELS_FIRST if perm == list(range(rank)) else None
    if first == TIME_MAJOR:
        return AS_IS if perm == swap else TIME_MAJOR if perm == list(range(rank)) else None
    return None


def _reshape(first, before, after, feeds_channels_first):
    """A reshape keeps an as-is tensor as-is. A moved tensor survives one only when the reshape
    moves nothing but size-1 axes (tf2onnx writes such a Transpose as a Reshape): then the data
    order is that of the input, read by whichever layout the output takes next."""
    if first == AS_IS:
        return AS_IS
    if before is None or after is None:
        return None
    if [d for d in before if d != 1] != [d for d in after if d != 1]:
        return None
    if feeds_channels_first:
        return CHANNELS_FIRST
    if first == CHANNELS_FIRST and before[1:2] == [1]:
        return AS_IS  # one channel: channels-first and channels-last hold the same order
    if first == TIME_MAJOR and before[:1] == [1] and list(after) == list(before[1:]):
        return AS_IS  # the time axis (one step: a recurrent layer's last output) squeezed away
    if first == CHANNELS_FIRST and len(before) == len(after):
        moved = [before[i] for i in _to_last(len(before))]
        if list(after) == moved:
            return AS_IS  # the inverse Transpose, written as a Reshape (channels of size 1)
        return CHANNELS_FIRST if list(after) == list(before) else None
    return first


# Layers that keep their input's axis order (elementwise, or padding, cropping, repeating along
# each axis), so that tf2onnx may push a Permute's Transpose past them.
_ELEMENTWISE = {
    "ReLU",
    "Activation",
    "BatchNormalization",
    "Dropout",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "Rescaling",
    "GaussianNoise",
    "GaussianDropout",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Softmax",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
}


def pending_permutations(rows: list, layers: list, transposes) -> None:
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


class TransposeFinder:
    """Whether a Transpose lies on the way to a tensor from the nodes of layers before ``since``."""

    def __init__(self, graph, producer, owners):
        self.graph, self.producer, self.owners = graph, producer, owners

    def between(self, tensor: str, since: int) -> bool:
        todo, seen = [tensor], set[str]()
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


def pushed_permutation(tensor, graph, consumers, owners, index, shapes=None) -> str | None:
    """A Keras ``Permute`` whose Transpose tf2onnx pushed past this layer (elementwise, such as a
    BatchNormalization's scale and offset): the Transpose still carries the earlier layer's token
    and reads this layer's tensor, which therefore holds the output before that permutation. The
    optimizer may have turned part of the Transpose into a Reshape that moves only size-1 axes (a
    node of no layer) before it: that Reshape is a permutation too, and the two compose."""
    for p in consumers.get(tensor, ()):
        moved = None
        if graph.node[p].op_type == "Reshape" and owners[p] is None and shapes:
            out = graph.node[p].output[0]
            moved = _unit_axes_moved(shapes.get(tensor), shapes.get(out))
            if moved is None or len(consumers.get(out, ())) != 1:
                continue
            p = next(iter(consumers[out]))
        node = graph.node[p]
        if node.op_type == "Transpose" and owners[p] is not None and owners[p] < index:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            if moved is not None and len(moved) == len(perm):
                perm = [moved[i] for i in perm]
            if perm:
                return PERMUTED + ",".join(str(i) for i in perm)
    return None


def _unit_axes_moved(before: list | None, after: list | None) -> list[int] | None:
    """The permutation a Reshape from ``before`` to ``after`` amounts to when it only moves size-1
    axes, the others keeping their order (an unknown batch size counts as one of those), else None."""
    if not before or not after or len(before) != len(after):
        return None
    big = [i for i, d in enumerate(before) if d != 1]
    unit = [i for i, d in enumerate(before) if d == 1]
    if len(unit) != sum(d == 1 for d in after):
        return None
    perm = [big.pop(0) if d != 1 else unit.pop(0) for d in after]
    return perm if [before[i] for i in perm] == list(after) else None


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
        perm = [int(i) for i in layout[len(PERMUTED) :].split(",")]
        if len(perm) == value.ndim:
            every[layout] = np.transpose(value, perm)
    if value.ndim >= 3:
        every[CHANNELS_FIRST] = np.moveaxis(value, 1, -1)
    if value.ndim >= 2:
        every[TIME_MAJOR] = np.swapaxes(value, 0, 1)
    if keras_shape is None:
        return [every.get(layout, value) if layout else value]
    decided = _fit(every.get(layout), tuple(keras_shape), layout == AS_IS) if layout else None
    if decided is not None:
        return [decided]
    fitting = [r for r in (_fit(v, tuple(keras_shape)) for v in every.values()) if r is not None]
    distinct: list[np.ndarray] = []
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
