"""convert: the ONNX model is self-contained (no dangling inputs) and never holds unconverted ops."""

from __future__ import annotations

import importlib
import re

import numpy as np
import onnx
import pytest

import xverify
from xverify.errors import ConversionError

convert_module = importlib.import_module("xverify.convert")  # xverify.convert is the function


def _normalized_cnn(mean: float = 5.0, std: float = 3.0):
    """Normalization (adapted: mean and variance are eager tensors captured by the trace), then a Conv."""
    import keras

    inp = keras.Input((6, 6, 3))
    norm = keras.layers.Normalization(axis=-1, name="norm")
    out = keras.layers.Conv2D(4, 3, name="conv")(norm(inp))
    model = keras.Model(inp, out)
    data = np.random.default_rng(0).normal(mean, std, (16, 6, 6, 3)).astype("float32")
    norm.adapt(data)
    return model, data


def test_normalization_statistics_are_frozen_not_inputs():
    model, data = _normalized_cnn()
    onnx_model = xverify.convert(model)
    assert [i.name for i in onnx_model.graph.input] == [model.inputs[0].name]
    from xverify.runtimes import OnnxRuntime

    x = data[:4]
    got = next(iter(OnnxRuntime(onnx_model, "disabled").run({model.inputs[0].name: x}).values()))
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5, rtol=1e-5)


def test_check_passes_on_outputs_of_a_normalized_model():
    model, _ = _normalized_cnn()
    report = xverify.check(model, samples=2)
    assert all(report.comparisons), report.failures()
    assert report.layers and all(layer.passed for layer in report.layers)


def _with_dangling_input(onnx_model):
    """Turn the first Conv's weight into a graph input, as tf2onnx does with an unfrozen capture."""
    graph = onnx_model.graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    weight = next(t for t in graph.initializer if t.name == conv.input[1])
    graph.initializer.remove(weight)
    graph.input.append(onnx.helper.make_tensor_value_info(weight.name, weight.data_type, list(weight.dims)))
    return onnx_model


def test_dangling_input_is_a_conversion_error_naming_it_and_its_layer(monkeypatch):
    model, _ = _normalized_cnn()
    real = convert_module._from_function
    monkeypatch.setattr(
        convert_module, "_from_function", lambda function, opset: _with_dangling_input(real(function, opset))
    )
    with pytest.raises(ConversionError) as info:
        xverify.convert(model)
    message = str(info.value)
    assert "not self-contained" in message
    assert "Keras layer 'conv' (Conv2D)" in message
    assert repr(model.inputs[0].name) in message  # the expected inputs are listed
    assert info.value.exit_code == 2


def test_dangling_input_guard_accepts_the_keras_inputs_and_initialized_inputs():
    model, _ = _normalized_cnn()
    onnx_model = xverify.convert(model)
    layers = convert_module.flat_layers(model)
    convert_module._fail_on_dangling_inputs(onnx_model, layers, [model.inputs[0].name])
    init = onnx_model.graph.initializer[0]  # an input with a default value is self-contained
    onnx_model.graph.input.append(
        onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
    )
    convert_module._fail_on_dangling_inputs(onnx_model, layers, [model.inputs[0].name])
    with pytest.raises(ConversionError, match="'x_missing'"):
        convert_module._fail_on_dangling_inputs(onnx_model, layers, ["x_missing"])


def _digamma_model():
    import keras
    import tensorflow as tf

    class Digamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.digamma(x)  # tf2onnx 1.17 has no handler for Digamma

        def compute_output_shape(self, shape):
            return shape

    inp = keras.Input((3,))
    return keras.Model(inp, Digamma(name="psi")(keras.layers.Dense(3, name="dense")(inp)))


def test_unconverted_op_names_the_op_the_layer_and_the_reason():
    with pytest.raises(ConversionError) as info:
        xverify.convert(_digamma_model())
    message = str(info.value)
    assert "'Digamma'" in message and "Keras layer 'psi'" in message
    assert "not supported" in message
    assert info.value.exit_code == 2


def test_check_never_passes_a_model_with_unconverted_ops():
    with pytest.raises(ConversionError):
        xverify.check(_digamma_model(), samples=2)


def _bn_gru_model():
    """Conv + BatchNorm (folded by tf2onnx's optimizers), a GRU (a Loop with a body graph), Dense."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((6, 24))(keras.layers.ReLU()(x))
    x = keras.layers.GRU(5)(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def _structure(graph, outer=None):
    """The graph up to names: each tensor as a digest of what computes it (op, attributes, its
    inputs' digests; initializers by value). tf2onnx names the nodes it makes with a process-wide
    counter and walks some node sets in id order, so names (and which of two equal nodes survives
    a merge) differ from run to run; the computation does not."""
    import collections
    import hashlib

    from onnx import numpy_helper

    producers = {out: (node, k) for node in graph.node for k, out in enumerate(node.output)}
    values = {
        i.name: repr((i.data_type, tuple(i.dims), numpy_helper.to_array(i).tobytes()))
        for i in graph.initializer
    }
    memo: dict = {}

    def digest(tensor):
        if tensor not in memo:
            if tensor in values:
                key = values[tensor]
            elif tensor not in producers:
                key = (
                    outer(tensor)
                    if outer and not any(i.name == tensor for i in graph.input)
                    else re.sub(r"__\d+", "", f"input {tensor}")
                )
            else:
                node, k = producers[tensor]
                memo[tensor] = "cycle"
                attrs = sorted(
                    repr(_structure(a.g, digest)) if a.HasField("g") else re.sub(r"__\d+", "", str(a))
                    for a in node.attribute
                )
                key = repr((node.op_type, attrs, k, [digest(x) for x in node.input]))
            memo[tensor] = hashlib.sha1(key.encode()).hexdigest()
        return memo[tensor]

    nodes = collections.Counter(digest(node.output[0]) for node in graph.node if node.output)
    return sorted(digest(o.name) for o in graph.output), nodes


def _model(example_models, name):
    return _bn_gru_model() if name == "bn_gru" else example_models.keras(name)


@pytest.mark.parametrize("name", ["small_cnn", "text_lstm", "bn_gru"])
def test_lean_optimizer_makes_the_graph_tf2onnx_makes(example_models, monkeypatch, name):
    """tf2onnx_steps.optimize_graph (rollback copies that share the constants) leaves the graph
    node for node and byte for byte as tf2onnx's own optimize_graph does."""
    import copy

    from tf2onnx import optimizer
    from tf2onnx.graph import Node

    original = Node.get_onnx_attrs
    steps = importlib.import_module("xverify.tf2onnx_steps")
    lean = steps.optimize_graph
    made = {}

    def both(graph):
        patched = Node.get_onnx_attrs  # tf2onnx's own route, without tf2onnx_steps' patch
        Node.get_onnx_attrs = original
        try:
            made["tf2onnx"] = optimizer.optimize_graph(copy.deepcopy(graph)).make_model("m")
        finally:
            Node.get_onnx_attrs = patched
        result = lean(graph)
        made["xverify"] = result.make_model("m")
        return result

    monkeypatch.setattr(steps, "optimize_graph", both)
    xverify.convert(_model(example_models, name))
    ours, theirs = made["xverify"].graph, made["tf2onnx"].graph

    assert _structure(ours) == _structure(theirs)
    assert len(ours.initializer) > 0


@pytest.mark.parametrize("name", ["small_cnn", "text_lstm", "bn_gru"])
def test_lean_conversion_computes_what_plain_tf2onnx_computes(example_models, name):
    """Weights kept out of grappler (folded by tf2onnx instead): same outputs as plain tf2onnx."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model = _model(example_models, name)
    signature = [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"in{i}") for i, t in enumerate(model.inputs)
    ]
    function = tf.function(lambda *args: model(args[0], training=False), input_signature=signature)
    plain, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
    ours = xverify.convert(model)
    rng = np.random.default_rng(0)
    results = []
    for proto in (ours, plain):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {}
        for inp in session.get_inputs():
            shape = [4 if not isinstance(d, int) else d for d in inp.shape]
            feed[inp.name] = (
                rng.integers(0, 10, shape).astype(np.int64 if "int64" in inp.type else np.int32)
                if "int" in inp.type
                else rng.standard_normal(shape).astype(np.float32)
            )
        rng = np.random.default_rng(0)
        results.append(session.run(None, feed)[0])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
    sizes = [sum(len(i.raw_data) for i in p.graph.initializer) for p in (ours, plain)]
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05)


def test_models_over_the_protobuf_limit_are_saved_with_external_data(example_models, tmp_path):
    from xverify.convert import save_onnx
    from xverify.load import load_onnx

    model = onnx.ModelProto()
    model.CopyFrom(example_models.onnx("small_cnn"))
    path = tmp_path / "big.onnx"
    save_onnx(model, path, limit=1000)  # as if the model were over 2 GiB
    assert (tmp_path / "big.onnx.data").stat().st_size > 1000
    assert path.stat().st_size < (tmp_path / "big.onnx.data").stat().st_size
    loaded = load_onnx(path)
    original = example_models.onnx("small_cnn")
    from onnx import numpy_helper

    assert [i.name for i in loaded.graph.initializer] == [i.name for i in original.graph.initializer]
    for a, b in zip(loaded.graph.initializer, original.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


def test_small_graphs_skip_the_full_collections_meant_for_large_ones(monkeypatch):
    """A full gc.collect() after each of tf2onnx's optimizers frees a large model's dropped copies,
    but costs ~0.4 s in a process holding TensorFlow: 9 of the 10 s a small zoo model took."""
    import gc

    import keras

    import xverify
    from xverify import tf2onnx_steps

    decided = []
    large = tf2onnx_steps._large
    monkeypatch.setattr(tf2onnx_steps, "_large", lambda graph: decided.append(large(graph)) or decided[-1])
    collections = []
    monkeypatch.setattr(tf2onnx_steps.gc, "collect", lambda *a: collections.append(a) or 0)
    xverify.convert(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    assert decided == [False] and collections == []
    xverify.convert(keras.Sequential([keras.Input((2048,)), keras.layers.Dense(2048)]))  # 16 MiB
    assert decided == [False, True] and collections
    gc.collect()
