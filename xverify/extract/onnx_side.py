"""``onnx_weights``: an ONNX file's initializers grouped per Keras layer, with no Keras model.

Without Keras weights to compare with, each initializer's layout is undone by its role: the input
position of the node that consumes it (a Conv's second input is an OIHW kernel, an LSTM's W is packed).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np

from xverify.convert import LAYERS_METADATA_KEY, is_float, layer_index_of
from xverify.extract.graph import node_layer
from xverify.extract.recurrent import unpack_rnn
from xverify.extract.results import LayerWeights, WeightMatch


def _by_role(node, position: int, array: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    """``[(Keras weight name, Keras-layout value, transform)]`` for one initializer input of a node."""
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op in ("LSTM", "GRU", "RNN") and position in (1, 2, 3):
        return unpack_rnn(node, position, array)
    if op in ("Conv", "ConvTranspose") and position == 1:
        group = attrs["group"].i if "group" in attrs else 1
        if op == "Conv" and group > 1 and array.ndim == 4 and array.shape[1] == 1:
            o, _, h, w = array.shape
            return [
                (
                    "kernel",
                    array[:, 0].transpose(1, 2, 0).reshape(h, w, group, o // group),
                    "depthwise reshape (C*M,1,H,W)->(H,W,C,M)",
                )
            ]
        perm = (*range(2, array.ndim), 1, 0)
        label = "transpose OIHW->HWIO" if op == "Conv" else "transpose IOHW->HWOI"
        return [("kernel", array.transpose(perm), label)]
    if op == "Gemm" and position == 1 and "transB" in attrs and attrs["transB"].i:
        return [("kernel", array.T, "transpose (Gemm transB)")]
    if op == "BatchNormalization" and 1 <= position <= 4:
        return [(("gamma", "beta", "moving_mean", "moving_variance")[position - 1], array, "identity")]
    name = {
        "Gather": "embeddings",
        "MatMul": "kernel",
        "Gemm": "kernel" if position == 1 else "bias",
        "Conv": "bias",
        "ConvTranspose": "bias",
        "Add": "bias",
        "Mul": "scale",
    }.get(op, "weight")
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
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer if is_float(i)}
    producers = {out: node for node in graph.node for out in node.output}
    groups: dict[str, tuple[str, list]] = {}
    seen: set[str] = set()
    for node in graph.node:
        index = node_layer(node, producers, inits)
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
                found.append(
                    WeightMatch(
                        layer,
                        cls,
                        name,
                        len(found),
                        tuple(value.shape),
                        init,
                        transform,
                        0.0,
                        True,
                        value,
                        value,
                    )
                )
    return tuple(LayerWeights(layer, cls, _keras_order(ws)) for layer, (cls, ws) in groups.items())


def _scope_of(node, index: int | None) -> str:
    """Without the layer table: the TensorFlow scope of the name that carried the layer's token."""
    named = [n for n in (node.name, *node.input) if index is not None and layer_index_of(n) == index]
    return _tf_scope(named[0] if named else node.name)


def _keras_order(weights: list) -> tuple:
    """A Bidirectional layer's weights in Keras order: all forward ones, then all backward ones."""
    ordered = sorted(weights, key=lambda w: w.name.startswith("backward/"))
    return tuple(replace(w, index=i) for i, w in enumerate(ordered))
