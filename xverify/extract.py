"""ONNX initializers read back as each Keras layer's weights, matched by value.

Initializer names follow TensorFlow scopes, not Keras layer names, and tf2onnx rewrites weights on the
way (Conv kernels HWIO -> OIHW, LSTM gates reordered and packed, BatchNormalization folded into the
preceding Conv or turned into a scale and an offset, zero biases removed). So every Keras weight is
turned into the ONNX tensors it can become (a "joint": one expected ONNX tensor covering one or more
Keras weights) and the initializers are searched for that tensor, first among those the layer's own
nodes consume (the ``xvl<i>`` scope token, see ``convert.py``), then among all.

    report = match_weights(keras_model, onnx_model)
    for layer in report.layers:
        for w in layer.weights:
            print(layer.layer, w.name, w.transform, w.max_abs_diff, w.passed)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from xverify.convert import LAYERS_METADATA_KEY, flat_layers, layer_index_of


@dataclass(frozen=True)
class WeightMatch:
    """One Keras weight and the ONNX initializer it was found in (``bool()`` is ``passed``)."""

    layer: str
    layer_class: str
    name: str
    index: int
    shape: tuple
    onnx_initializer: str | None
    transform: str
    max_abs_diff: float
    passed: bool
    keras_value: np.ndarray | None = field(default=None, repr=False, compare=False)
    onnx_value: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        """The JSON report's ``weights`` entry."""
        return {"layer": self.layer, "name": self.name, "shape": list(self.shape),
                "onnx_initializer": self.onnx_initializer, "transform": self.transform,
                "max_abs_diff": self.max_abs_diff, "passed": self.passed}


@dataclass(frozen=True)
class LayerWeights:
    """The weights of one Keras layer, in ``get_weights()`` order."""

    layer: str
    layer_class: str
    weights: tuple[WeightMatch, ...]

    @property
    def passed(self) -> bool:
        return all(w.passed for w in self.weights)

    def __bool__(self) -> bool:
        return self.passed


@dataclass(frozen=True)
class WeightReport:
    """Every layer's weights, plus float initializers that no Keras weight accounts for."""

    layers: tuple[LayerWeights, ...]
    unattributed: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> list[dict]:
        return [w.to_dict() for layer in self.layers for w in layer.weights]


# ---- transforms: Keras layout <-> ONNX layout ------------------------------------------------------

@dataclass(frozen=True)
class _Form:
    label: str
    to_onnx: Callable
    to_keras: Callable


_IDENTITY = _Form("identity", lambda a: a, lambda a: a)
_LETTERS = {3: ("WIO", "OIW"), 4: ("HWIO", "OIHW"), 5: ("DHWIO", "OIDHW")}


def _conv_form(ndim: int, transposed: bool) -> _Form:
    # Keras Conv kernels are (*spatial, in, out); ONNX Conv wants (out, in, *spatial). Keras
    # ConvTranspose kernels are (*spatial, out, in) and ONNX ConvTranspose wants (in, out, *spatial):
    # the same axis permutation either way.
    perm = (ndim - 1, ndim - 2, *range(ndim - 2))
    back = tuple(int(i) for i in np.argsort(perm))
    src, dst = _LETTERS.get(ndim, ("spatial,I,O", "O,I,spatial"))
    if transposed:
        src, dst = src[:-2] + "OI", "IO" + dst[2:]
    return _Form(f"transpose {src}->{dst}", lambda a: a.transpose(perm), lambda a: a.transpose(back))


def _depthwise_form(shape: tuple) -> _Form:
    h, w, c, m = shape
    return _Form("depthwise reshape (H,W,C,M)->(C*M,1,H,W)",
                 lambda a: a.reshape(h, w, c * m).transpose(2, 0, 1)[:, None],
                 lambda a: a[:, 0].transpose(1, 2, 0).reshape(h, w, c, m))


def _forms(layer_class: str, name: str, shape: tuple) -> list[_Form]:
    """The layouts tf2onnx may give one Keras weight, most likely first."""
    forms = [_IDENTITY]
    if layer_class == "PReLU":  # tf2onnx computes relu(x) + (-alpha) * relu(-x)
        forms.append(_Form("negated", lambda a: -a, lambda a: -a))
    if len(shape) == 2 and layer_class != "Embedding":
        forms.append(_Form("transpose (Gemm transB)", lambda a: a.T, lambda a: a.T))
    if len(shape) == 4 and ("depthwise" in name or layer_class.startswith("Depthwise")):
        forms.append(_depthwise_form(shape))
    elif len(shape) >= 3 and layer_class not in ("Embedding",):
        forms.append(_conv_form(len(shape), "Transpose" in layer_class))
    if len(shape) >= 3 and "Conv" not in layer_class and layer_class != "Embedding":
        # EinsumDense kernels (MultiHeadAttention's query (D, heads, key_dim), output
        # (heads, key_dim, D)) become one MatMul on the kernel flattened to 2-D.
        forms += [_flat_form(shape, k) for k in range(1, len(shape))]
    return forms


def _flat_form(shape: tuple, k: int) -> _Form:
    flat = (math.prod(shape[:k]), math.prod(shape[k:]))
    return _Form(f"reshape {tuple(shape)}->{flat} (EinsumDense as MatMul)",
                 lambda a: a.reshape(flat), lambda a: a.reshape(shape))


def _fit(array: np.ndarray, shape: tuple) -> np.ndarray | None:
    """``array`` viewed in ``shape`` when they differ only by size-1 axes (tf2onnx adds some)."""
    if array.size != math.prod(shape):
        return None
    if tuple(d for d in array.shape if d != 1) != tuple(d for d in shape if d != 1):
        return None
    return array.reshape(shape)


def _close(found: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> bool:
    return bool(np.all(np.abs(found - expected) <= atol + rtol * np.abs(expected)))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# ---- joints: one expected ONNX tensor covering one or more Keras weights ------------------------

@dataclass(frozen=True)
class _Joint:
    targets: tuple       # ((layer_index, weight_index), ...)
    expected: np.ndarray  # float64, ONNX layout
    split: Callable       # ONNX array in expected's shape -> [Keras-layout array or None per target]
    labels: tuple         # per target; "{init}" is replaced by the initializer's name
    derived: bool = False  # recomputed from several weights (BN): float32 rounding in TensorFlow


class _Context:
    """What every search needs: the initializers, who consumes them, the Keras weights, tolerance."""

    def __init__(self, keras_model, onnx_model, atol, rtol):
        from onnx import numpy_helper

        self.layers = flat_layers(keras_model)
        self.values = [[np.asarray(w, np.float64) for w in layer.get_weights()]
                       for layer in self.layers]
        self.inits = {i.name: numpy_helper.to_array(i).astype(np.float64)
                      for i in onnx_model.graph.initializer if _is_float(i)}
        self.own = _owned_initializers(onnx_model)
        self.atol, self.rtol = atol, rtol
        self.claimed: set[str] = set()
        self.loose = False

    def tolerance(self, joint: _Joint) -> tuple[float, float]:
        # A folded or scale/offset tensor was computed by TensorFlow in float32 from several weights.
        return (max(self.atol, 1e-5), max(self.rtol, 1e-4)) if joint.derived else (self.atol, self.rtol)

    def find(self, joint: _Joint, layer_index: int):
        """``(initializer name, fitted array, passed)`` for the best initializer, or None."""
        own = self.own.get(layer_index, set())
        pools = [own] if not np.any(joint.expected) else [own, self.inits.keys()]
        atol, rtol = self.tolerance(joint)
        for pool in pools:
            hits = [(n, a) for n, a in self._fitting(pool, joint) if _close(a, joint.expected, atol, rtol)]
            if hits:
                return (*min(hits, key=lambda h: _max_diff(h[1], joint.expected)), True)
        if self.loose and np.any(joint.expected):
            # Values differ: name the closest initializer of the right shape that no other weight
            # already accounts for, so a user sees which tensor was altered and by how much.
            # All initializers only when the graph names none as the layer's own.
            for pool in (own,) if own else (self.inits.keys(),):
                hits = list(self._fitting(set(pool) - self.claimed, joint))
                if hits:
                    return (*min(hits, key=lambda h: _max_diff(h[1], joint.expected)), False)
        return None

    def _fitting(self, pool, joint):
        for name in sorted(pool):
            fitted = _fit(self.inits[name], joint.expected.shape) if name in self.inits else None
            if fitted is not None:
                yield name, fitted


def _is_float(tensor) -> bool:
    from onnx import TensorProto

    return tensor.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                                TensorProto.BFLOAT16)


def _node_layer(node, producers: dict, inits, depth: int = 3) -> int | None:
    """A node's layer: its scope token, else its initializers' tokens, else its inputs' producers'.

    tf2onnx names some fused nodes afresh (``LSTM__33``, ``Conv__52``), dropping the scope.
    """
    tokens = [layer_index_of(node.name)] + [layer_index_of(n) for n in node.input if n in inits]
    for name in node.input:
        if name not in inits:
            tokens.append(layer_index_of(name))
            if tokens[-1] is None and depth and name in producers:
                tokens.append(_node_layer(producers[name], producers, inits, depth - 1))
    return next((t for t in tokens if t is not None), None)


def _owned_initializers(onnx_model) -> dict[int, set[str]]:
    """Layer index -> names of the initializers its nodes consume or its scope names."""
    graph = onnx_model.graph
    inits = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    owned: dict[int, set[str]] = {}
    for node in graph.node:
        index = _node_layer(node, producers, inits)
        if index is not None:
            owned.setdefault(index, set()).update(n for n in node.input if n in inits)
    for name in inits:
        if (index := layer_index_of(name)) is not None:
            owned.setdefault(index, set()).add(name)
    return owned
# ---- the joints each layer's weights can become ------------------------------------------------

def _weight_names(layer) -> list[str]:
    names = [v.name for v in layer.weights]
    if hasattr(layer, "forward_layer"):  # Bidirectional: forward weights, then backward
        half = len(names) // 2
        names = [f"{'forward' if i < half else 'backward'}/{n}" for i, n in enumerate(names)]
    return names


def _generic_groups(ctx: _Context, li: int) -> list:
    layer, cls = ctx.layers[li], type(ctx.layers[li]).__name__
    groups = []
    for wi, (name, value) in enumerate(zip(_weight_names(layer), ctx.values[li])):
        groups.append([[_Joint(((li, wi),), form.to_onnx(value), lambda a, f=form: [f.to_keras(a)],
                               (form.label,))] for form in _forms(cls, name, value.shape)])
    return groups


_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_ONNX_RNN = {"LSTM": "LSTM gates i,f,c,o -> i,o,f,c", "GRU": "GRU gates z,r,h", "SimpleRNN": "RNN"}


def _lstm_to_onnx(a):
    i, f, c, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def _lstm_to_keras(a):
    i, o, f, c = np.split(a, 4, axis=-1)
    return np.concatenate([i, f, c, o], axis=-1)


def _rnn_groups(ctx: _Context, li: int) -> list:
    """ONNX LSTM/GRU/RNN nodes: W [dirs, G*H, in], R [dirs, G*H, H], B [dirs, 2*G*H] = [Wb, Rb]."""
    layer, values = ctx.layers[li], ctx.values[li]
    inner = getattr(layer, "forward_layer", layer)
    kind = type(inner).__name__
    dirs = 2 if inner is not layer else 1
    n = len(values) // dirs
    if kind not in _GATES or n < 2:
        return []
    fwd, back = (_lstm_to_onnx, _lstm_to_keras) if kind == "LSTM" else (lambda a: a, lambda a: a)
    label, gh = _ONNX_RNN[kind], values[0].shape[-1]
    joints = []
    for k in (0, 1):  # kernel, recurrent kernel
        idx = [d * n + k for d in range(dirs)]
        joints.append(_Joint(tuple((li, i) for i in idx),
                             np.stack([fwd(values[i]).T for i in idx]),
                             lambda a: [back(a[d].T) for d in range(len(a))],
                             (f"{label} (transposed)",) * dirs))
    if n == 3:
        idx = [d * n + 2 for d in range(dirs)]
        if values[idx[0]].ndim == 2:  # GRU reset_after: bias rows are [input bias, recurrent bias]
            expected = np.stack([values[i].reshape(-1) for i in idx])
            split = lambda a: [a[d].reshape(2, gh) for d in range(len(a))]  # noqa: E731
        else:
            expected = np.stack([np.concatenate([fwd(values[i]), 0 * values[i]]) for i in idx])
            split = lambda a: [back(a[d][:gh] + a[d][gh:]) for d in range(len(a))]  # noqa: E731
        joints.append(_Joint(tuple((li, i) for i in idx), expected, split,
                             (f"{label} (B = [Wb, Rb])",) * dirs))
    return [[joints]]


def _previous(ctx: _Context, li: int) -> int | None:
    """The layer feeding layer ``li`` (its first inbound node), or the one before it in flat order."""
    try:
        parent = ctx.layers[li]._inbound_nodes[0].parent_nodes[0].operation
    except (AttributeError, IndexError):
        parent = None
    found = [pi for pi, layer in enumerate(ctx.layers) if layer is parent]
    return found[0] if found else (li - 1 if li else None)


def _bn_groups(ctx: _Context, li: int) -> list:
    """BatchNormalization as Mul/Add of scale and offset, or folded into the preceding Conv/Dense."""
    layer, values = ctx.layers[li], ctx.values[li]
    pos = {n: i for i, n in enumerate(_weight_names(layer))}
    mean, var = values[pos["moving_mean"]], values[pos["moving_variance"]]
    gamma = values[pos["gamma"]] if "gamma" in pos else np.ones_like(mean)
    beta = values[pos["beta"]] if "beta" in pos else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + layer.epsilon)
    offset = beta - mean * scale
    on_scale = tuple((li, pos[n]) for n in ("gamma", "moving_variance") if n in pos)
    on_offset = tuple((li, pos[n]) for n in ("beta", "moving_mean") if n in pos)
    none = lambda k: lambda a: [None] * k  # noqa: E731  (not recoverable one by one)
    alternatives = [[
        _Joint(on_scale, scale, none(len(on_scale)), ("BN scale gamma/sqrt(var+eps)",) * 2, True),
        _Joint(on_offset, offset, none(len(on_offset)), ("BN offset beta-mean*scale",) * 2, True)]]
    pi = _previous(ctx, li)
    if pi is None or _weight_names(ctx.layers[pi])[:1] != ["kernel"]:
        return [alternatives]
    cls, pvals = type(ctx.layers[pi]).__name__, ctx.values[pi]
    kernel = pvals[0]
    has_bias = len(pvals) > 1 and pvals[1].shape == mean.shape

    def scaled(k, s):  # BN scales the output channel: the last axis (last two, depthwise)
        return (k.reshape(*k.shape[:-2], -1) * s).reshape(k.shape) if cls.startswith("Depthwise") else k * s

    bias = pvals[1] if has_bias else np.zeros_like(mean)
    bias_joint = _Joint(((pi, 1),) * has_bias + on_offset, (bias - mean) * scale + beta,
                        lambda a: [(a - beta) / scale + mean] * has_bias + [None] * len(on_offset),
                        (f"identity, {layer.name} folded in ({{init}})",) * has_bias
                        + ("folded into {init}",) * 2, True)
    for form in _forms(cls, "kernel", kernel.shape):
        alternatives.append([_Joint(
            ((pi, 0),) + on_scale, form.to_onnx(scaled(kernel, scale)),
            lambda a, f=form: [scaled(f.to_keras(a), 1 / scale)] + [None] * len(on_scale),
            (f"{form.label}, {layer.name} folded in ({{init}})",) + ("folded into {init}",) * 2,
            True), bias_joint])
    return [alternatives]


def _groups(ctx: _Context, li: int) -> list:
    cls = type(ctx.layers[li]).__name__
    special = _bn_groups(ctx, li) if cls == "BatchNormalization" else _rnn_groups(ctx, li)
    return _generic_groups(ctx, li) + special


# ---- search and record --------------------------------------------------------------------------

def _score(evaluated) -> tuple:
    ok = [f is not None and f[2] or (f is None and not np.any(j.expected)) for j, f in evaluated]
    found = [f for _, f in evaluated if f is not None]
    worst = max((_max_diff(f[1], j.expected) for j, f in evaluated if f is not None), default=0.0)
    return all(ok) and bool(found or ok), sum(ok), len(found), -worst


def _key(match: WeightMatch) -> tuple:
    return match.passed, match.onnx_initializer is not None, -match.max_abs_diff


def _record(ctx: _Context, joint: _Joint, found, entries: dict) -> None:
    if found is None:
        if not np.any(joint.expected):  # tf2onnx removes all-zero biases
            for li, wi in joint.targets:
                _put(ctx, entries, li, wi, None, "eliminated: all zeros", 0.0, True,
                     ctx.values[li][wi])
        return
    name, array, ok = found
    atol, rtol = ctx.tolerance(joint)
    stored = ctx.inits[name].shape
    suffix = f" (stored as {tuple(stored)})" if stored != joint.expected.shape else ""
    for (li, wi), value, label in zip(joint.targets, joint.split(array), joint.labels):
        keras = ctx.values[li][wi]
        if value is None:
            diff, passed = _max_diff(array, joint.expected), ok
        else:
            value = np.asarray(value).reshape(keras.shape)
            diff, passed = _max_diff(value, keras), _close(value, keras, atol, rtol)
        _put(ctx, entries, li, wi, name, label.replace("{init}", name) + suffix, diff, passed, value)


def _put(ctx, entries, li, wi, init, transform, diff, passed, onnx_value) -> None:
    layer = ctx.layers[li]
    keras = ctx.values[li][wi]
    match = WeightMatch(layer.name, type(layer).__name__, _weight_names(layer)[wi], wi,
                        tuple(keras.shape), init, transform, float(diff), bool(passed), keras,
                        onnx_value)
    if (li, wi) not in entries or _key(match) > _key(entries[li, wi]):
        entries[li, wi] = match


def _search_layer(ctx: _Context, li: int, entries: dict) -> None:
    for alternatives in _groups(ctx, li):
        evaluated = [[(j, ctx.find(j, li)) for j in alt] for alt in alternatives]
        for joint, found in max(evaluated, key=_score):
            _record(ctx, joint, found, entries)


def match_weights(keras_model, onnx_model, *, atol: float = 1e-6, rtol: float = 1e-5) -> WeightReport:
    """Find every Keras weight among the ONNX initializers, by value.

    Args:
        keras_model: the Keras model the ONNX model was converted from.
        onnx_model: an ``onnx.ModelProto`` (from ``xverify.convert`` or a file).
        atol, rtol: a weight passes where ``|onnx - keras| <= atol + rtol * |keras|`` element-wise
            (tensors that TensorFlow recomputed from several weights, such as a BatchNormalization
            folded into a Conv, get at least atol 1e-5 and rtol 1e-4 for float32 rounding).

    Returns:
        A WeightReport: per layer, each weight's initializer, transform, max abs diff and verdict.
    """
    ctx = _Context(keras_model, onnx_model, atol, rtol)
    entries: dict = {}
    for loose in (False, True):
        # First only matches within tolerance, so that the closest-but-different search of the
        # second pass can skip every initializer another weight already accounts for.
        ctx.loose = loose
        for li, values in enumerate(ctx.values):
            if not loose or not all((li, wi) in entries and entries[li, wi].passed
                                    for wi in range(len(values))):
                _search_layer(ctx, li, entries)
        ctx.claimed = {m.onnx_initializer for m in entries.values() if m.passed}
    layers = []
    for li, (layer, values) in enumerate(zip(ctx.layers, ctx.values)):
        names = _weight_names(layer)
        # Not ``entries.get(...) or ...``: a failed WeightMatch is falsy but still the answer.
        weights = tuple(entries[li, wi] if (li, wi) in entries else WeightMatch(
            layer.name, type(layer).__name__, names[wi], wi, tuple(v.shape), None, "unmatched",
            math.inf, False, v, None) for wi, v in enumerate(values))
        if weights:
            layers.append(LayerWeights(layer.name, type(layer).__name__, weights))
    used = {m.onnx_initializer for m in entries.values()}
    unattributed = tuple(n for n, a in ctx.inits.items() if a.size > 1 and n not in used)
    return WeightReport(tuple(layers), unattributed)


# ---- an ONNX file alone: group initializers per layer and undo the layout by their role ---------

def _unpack_rnn(node, position: int, array: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """ONNX LSTM/GRU/RNN W, R or B back to Keras kernel, recurrent_kernel or bias per direction."""
    kind = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}[node.op_type]
    back = _lstm_to_keras if kind == "LSTM" else (lambda a: a)
    name = {1: "kernel", 2: "recurrent_kernel", 3: "bias"}.get(position, f"input{position}")
    before_reset = any(a.name == "linear_before_reset" and a.i for a in node.attribute)
    out = []
    for d, part in enumerate(array):
        prefix = ("forward/", "backward/")[d] if len(array) == 2 else ""
        if position == 3:
            gh = part.size // 2
            value = part.reshape(2, gh) if before_reset else back(part[:gh] + part[gh:])
        else:
            value = back(part.T)
        out.append((prefix + name, value, f"{_ONNX_RNN[kind]} unpacked to Keras layout"))
    return out


def _by_role(node, position: int, array: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """``[(Keras weight name, Keras-layout value, transform)]`` for one initializer input of a node."""
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op in ("LSTM", "GRU", "RNN") and position in (1, 2, 3):
        return _unpack_rnn(node, position, array)
    if op in ("Conv", "ConvTranspose") and position == 1:
        group = attrs["group"].i if "group" in attrs else 1
        if op == "Conv" and group > 1 and array.ndim == 4 and array.shape[1] == 1:
            o, _, h, w = array.shape
            return [("kernel", array[:, 0].transpose(1, 2, 0).reshape(h, w, group, o // group),
                     "depthwise reshape (C*M,1,H,W)->(H,W,C,M)")]
        perm = (*range(2, array.ndim), 1, 0)
        label = "transpose OIHW->HWIO" if op == "Conv" else "transpose IOHW->HWOI"
        return [("kernel", array.transpose(perm), label)]
    if op == "Gemm" and position == 1 and "transB" in attrs and attrs["transB"].i:
        return [("kernel", array.T, "transpose (Gemm transB)")]
    if op == "BatchNormalization" and 1 <= position <= 4:
        return [(("gamma", "beta", "moving_mean", "moving_variance")[position - 1], array, "identity")]
    name = {"Gather": "embeddings", "MatMul": "kernel", "Gemm": "kernel" if position == 1 else "bias",
            "Conv": "bias", "ConvTranspose": "bias", "Add": "bias", "Mul": "scale"}.get(op, "weight")
    broadcast = op in ("Add", "Sub", "Mul", "Div") and array.ndim > 1
    if broadcast and sum(d != 1 for d in array.shape) <= 1:  # (1, C, 1, 1) in an NCHW graph
        return [(name, array.reshape(-1), f"reshape {tuple(array.shape)}->({array.size},)")]
    return [(name, array, "identity")]


def _tf_scope(name: str) -> str:
    """The layer part of a TensorFlow name scope: ``model_1/dense_1/MatMul`` -> ``dense_1``."""
    parts = [p for p in name.split("/") if not re.fullmatch(r"xvl\d+(_\d+)?", p)]
    return parts[1] if len(parts) >= 3 else parts[0]


def onnx_weights(onnx_model) -> tuple[LayerWeights, ...]:
    """An ONNX model's weights grouped per Keras layer, in Keras layout (no Keras model needed).

    Layers come from the ``xverify.layers`` metadata and the ``xvl<i>`` scope tokens that
    ``xverify.convert`` writes, or else from the TensorFlow name scope of the consuming node.

    Args:
        onnx_model: an ``onnx.ModelProto``.

    Returns:
        One LayerWeights per layer holding initializers, in graph order; each weight's ``onnx_value``
        (and ``keras_value``) is the initializer brought back to Keras layout, ``passed`` True.
    """
    from onnx import numpy_helper

    graph = onnx_model.graph
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    table = {e["index"]: e for e in json.loads(meta.get(LAYERS_METADATA_KEY, "[]"))}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer if _is_float(i)}
    producers = {out: node for node in graph.node for out in node.output}
    groups: dict[str, tuple[str, list]] = {}
    seen: set[str] = set()
    for node in graph.node:
        index = _node_layer(node, producers, inits)
        for position, init in enumerate(node.input):
            if init not in inits or init in seen or inits[init].ndim == 0:  # 0-d: eps, one
                continue
            seen.add(init)
            entry = table.get(index, {})
            layer = entry.get("name") or _scope_of(node, index)
            cls, found = groups.setdefault(layer, (entry.get("class", node.op_type), []))
            for name, value, transform in _by_role(node, position, inits[init]):
                if cls == "BatchNormalization" and node.op_type in ("Add", "Sub"):
                    name = "offset"  # beta - mean * scale
                if cls == "Conv1D" and value.ndim == 4 and value.shape[0] == 1:
                    value, transform = value[0], transform.replace("HWIO", "WIO")  # tf2onnx's H=1
                found.append(WeightMatch(layer, cls, name, len(found), tuple(value.shape), init,
                                         transform, 0.0, True, value, value))
    return tuple(LayerWeights(layer, cls, _keras_order(ws)) for layer, (cls, ws) in groups.items())


def _scope_of(node, index: int | None) -> str:
    """Without the layer table: the TensorFlow scope of the name that carried the layer's token."""
    named = [n for n in (node.name, *node.input) if index is not None and layer_index_of(n) == index]
    return _tf_scope(named[0] if named else node.name)


def _keras_order(weights: list) -> tuple:
    """A Bidirectional layer's weights in Keras order: all forward ones, then all backward ones."""
    ordered = sorted(weights, key=lambda w: w.name.startswith("backward/"))
    return tuple(replace(w, index=i) for i, w in enumerate(ordered))


def extract_weights(model_or_onnx) -> tuple[LayerWeights, ...]:
    """Every layer's weights as read back from ONNX.

    Args:
        model_or_onnx: a Keras model, an ``onnx.ModelProto``, or a path to either.

    Returns:
        For a Keras model: the layers of ``match_weights(model, convert(model))``, each weight compared
        with ``get_weights()``. For ONNX alone: ``onnx_weights(model)`` (nothing to compare with).
    """
    import os

    import onnx

    from xverify.errors import UsageError

    model = model_or_onnx
    if isinstance(model, (str, os.PathLike)):
        from xverify.load import open_model

        model, _ = open_model(model)
    if isinstance(model, onnx.ModelProto):
        return onnx_weights(model)
    if not hasattr(model, "get_weights"):
        raise UsageError(f"extract_weights: expected a Keras model, an ONNX model or a path to one, "
                         f"found {type(model).__name__} (a SavedModel has no Keras layers; load the "
                         ".keras file instead).")
    from xverify.convert import convert

    return match_weights(model, convert(model)).layers
