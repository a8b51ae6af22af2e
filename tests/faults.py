"""Fault injection: copies of a converted ONNX model with exactly one thing changed."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _initializer_of(model, node_op: str, input_index: int, token: str):
    node = next(n for n in model.graph.node if n.op_type == node_op and token in n.name)
    name = node.input[input_index]
    return next(i for i in model.graph.initializer if i.name == name)


def alter_initializer(
    model, node_op: str, input_index: int, token: str, delta: float = 0.5, index: int = 0
) -> onnx.ModelProto:
    """Add ``delta`` to one element of the initializer feeding input ``input_index`` of a node."""
    faulty = copy(model)
    init = _initializer_of(faulty, node_op, input_index, token)
    values = numpy_helper.to_array(init).copy()
    values.flat[index] += delta
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    return faulty


def replace_op(model, op_type: str, new_type: str, token: str = "") -> onnx.ModelProto:
    """Turn the first ``op_type`` node (whose name holds ``token``) into ``new_type``."""
    faulty = copy(model)
    node = next(n for n in faulty.graph.node if n.op_type == op_type and token in n.name)
    node.op_type = new_type
    del node.attribute[:]
    return faulty


def set_attribute(model, op_type: str, name: str, value, token: str = "") -> onnx.ModelProto:
    """Set one attribute of the first ``op_type`` node whose name holds ``token``."""
    faulty = copy(model)
    node = next(n for n in faulty.graph.node if n.op_type == op_type and token in n.name)
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return faulty


def shift_pads(model, token: str = "") -> onnx.ModelProto:
    """Move a 'same' Conv's padding from top/left to bottom/right: same shape, shifted content."""
    faulty = copy(model)
    node = next(n for n in faulty.graph.node if n.op_type == "Conv" and token in n.name)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "pads" in attrs:
        pads = list(attrs["pads"])
    else:  # auto_pad SAME_UPPER with a 3x3 kernel: one pixel on each side
        pads = [1, 1, 1, 1]
    half = len(pads) // 2
    begins, ends = pads[:half], pads[half:]
    shifted = [0] * half + [b + e for b, e in zip(begins, ends)]
    kept = [a for a in node.attribute if a.name not in ("pads", "auto_pad")]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute("pads", shifted)])
    assert shifted != pads
    return faulty


def save(model, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def max_weight_diff(report) -> float:
    return max((w.max_abs_diff for w in report.weights if not w.passed), default=0.0)


__all__ = [
    "alter_initializer",
    "copy",
    "max_weight_diff",
    "np",
    "replace_op",
    "save",
    "set_attribute",
    "shift_pads",
]
