"""xverify check on keras.applications models built with weights=None (no download).

Each test builds, converts and checks one model (all three runtimes, the float64 oracle, ONNX Runtime
optimized vs not, every layer; two samples at the default input size) and frees it. Measured on the
2-core CI machine: about 2 minutes for the file, peak resident memory about 9 GiB (tf2onnx converting
ResNet50, InceptionV3 or Xception), so the models run one at a time.

With weights=None every BatchNormalization has mean 0 and variance 1 and the activations shrink
layer after layer (MobileNetV2's last block outputs about 1e-10), so these checks prove the graph
converts, runs everywhere and maps layer by layer, but are weak at detecting numeric faults deep in
the network. So every test first sets the BatchNormalization statistics from the check's own inputs
(the same seeded synthetic samples), keeping activations of order 1: a check with teeth.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import xverify

pytestmark = pytest.mark.slow


def _free():
    import keras

    gc.collect()
    keras.backend.clear_session()
    gc.collect()


def _build(name: str, input_shape=None):
    import keras

    kwargs = {"weights": None}
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    return getattr(keras.applications, name)(**kwargs)


def _calibrate_batchnorm(model, x):
    """Set each BatchNormalization's moving mean and variance to its input's statistics on ``x``, in
    graph order, so a random-weight network keeps activations of order 1."""
    import keras

    def operation(op):
        if isinstance(op, keras.Model):
            return lambda *args, **kwargs: op._run_through_graph(args[0], operation_fn=operation)
        if not isinstance(op, keras.layers.BatchNormalization):
            return op

        def call(tensor, *args, **kwargs):
            value = np.asarray(tensor)
            axes = tuple(i for i in range(value.ndim) if i != op.axis % value.ndim)
            op.moving_mean.assign(value.mean(axis=axes))
            op.moving_variance.assign(value.var(axis=axes))
            return op(tensor, training=False)

        return call

    model._run_through_graph(x, operation_fn=operation)


def _check(model):
    onnx_model = xverify.convert(model)
    # Self-contained: the ONNX inputs are exactly the Keras inputs (no unfrozen constants).
    assert [i.name for i in onnx_model.graph.input] == [t.name for t in model.inputs]
    report = xverify.check(model, onnx=onnx_model, samples=2)
    del onnx_model
    pairs = {(d.a, d.b) for d in report.comparisons}
    assert {
        ("onnxruntime", "tensorflow"),
        ("numpy", "tensorflow"),
        ("numpy", "onnxruntime"),
        ("onnxruntime-opt", "onnxruntime"),
    } <= pairs
    assert {row.runtime for row in report.oracle} >= {"numpy", "onnxruntime", "tensorflow"}
    assert report.layers and report.weights
    return report


def _run(name, input_shape=None):
    """Build with BatchNormalization statistics calibrated on the check's own inputs (activations of
    order 1, so a numeric fault anywhere shows), convert, check every layer, free."""
    from xverify.inputs import synthetic

    model = _build(name, input_shape)
    try:
        x = synthetic([_spec(model)], samples=2, seed=0)[model.inputs[0].name]
        _calibrate_batchnorm(model, x)
        report = _check(model)
        assert all(np.isfinite(d.max_abs_diff) for d in report.comparisons)
        assert report.passed, report.failures()
    finally:
        del model
        _free()


def test_mobilenet_v2():
    _run("MobileNetV2")


def test_resnet50():
    _run("ResNet50")


def test_efficientnet_b0():
    # Its Normalization layer's mean and variance used to become two extra ONNX inputs.
    _run("EfficientNetB0")


def test_densenet121():
    _run("DenseNet121")


def test_inception_v3():
    _run("InceptionV3")


def test_xception():
    # tf2onnx folds each SeparableConv2D's pointwise Conv with the next BatchNormalization.
    _run("Xception")


def test_efficientnet_with_calibrated_batchnorm():
    from xverify.inputs import synthetic

    model = _build("EfficientNetB0")
    try:
        x = synthetic([_spec(model)], samples=2, seed=0)[model.inputs[0].name]
        _calibrate_batchnorm(model, x)
        assert np.abs(np.asarray(_upto(model, "top_activation", x))).max() > 0.1  # not vanishing
        report = _check(model)
        assert report.passed, report.failures()
    finally:
        del model
        _free()


def _spec(model):
    from xverify.inputs import InputSpec

    t = model.inputs[0]
    return InputSpec(t.name, (None, *tuple(t.shape)[1:]), "float32")


def _upto(model, layer_name, x):
    import keras

    return keras.Model(model.inputs, model.get_layer(layer_name).output)([x])
