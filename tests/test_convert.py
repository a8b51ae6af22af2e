"""convert: the ONNX model is self-contained (no dangling inputs) and never holds unconverted ops."""

from __future__ import annotations

import importlib

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
    graph.input.append(onnx.helper.make_tensor_value_info(weight.name, weight.data_type,
                                                          list(weight.dims)))
    return onnx_model


def test_dangling_input_is_a_conversion_error_naming_it_and_its_layer(monkeypatch):
    model, _ = _normalized_cnn()
    real = convert_module._from_function
    monkeypatch.setattr(convert_module, "_from_function",
                        lambda function, opset: _with_dangling_input(real(function, opset)))
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
    onnx_model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type,
                                                                     list(init.dims)))
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
