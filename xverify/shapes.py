"""The static type and shape of every tensor of an ONNX model, inferred once per model.

``onnx.shape_inference`` serialises the whole model, weights included (100 MB for ResNet50), so it
runs on a light copy: every large initializer becomes a graph input of the same type and shape (its
values cannot change a type or a shape), while small ones, such as the shape tensors a Reshape reads,
keep their data.
"""

from __future__ import annotations

import onnx
from onnx import helper

_SMALL = 64  # elements: initializers up to this size keep their values (shapes, axes, scalars)
_CACHE: dict[int, tuple[onnx.ModelProto, dict]] = {}


def _light(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    small: list[onnx.TensorProto] = []
    large: list[onnx.TensorProto] = []
    for init in graph.initializer:
        size = 1
        for d in init.dims:
            size *= d
        (small if size <= _SMALL else large).append(init)
    light_graph = helper.make_graph(
        list(graph.node),
        graph.name,
        list(graph.input)
        + [
            helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
            for i in large
            if i.name not in {v.name for v in graph.input}
        ],
        list(graph.output),
        initializer=small,
        value_info=list(graph.value_info),
    )
    light = helper.make_model(light_graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    return light


def value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every typed tensor of ``model`` (inputs, intermediates, outputs) by name; {} if inference fails.

    Cached per model object (the last few), since a check asks for them from several places.
    """
    cached = _CACHE.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    try:
        inferred = onnx.shape_inference.infer_shapes(_light(model))
        infos = {
            v.name: v
            for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
            if v.type.tensor_type.elem_type
        }
    except Exception:  # inference is a help (taps, layer sizes), never a requirement
        infos = {}
    if len(_CACHE) >= 4:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(model)] = (model, infos)
    return infos
