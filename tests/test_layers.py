"""Layer map, layout reconciliation, first divergence, and the fault-injection matrix of issue 4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests import faults
from xverify.cli import app
from xverify.layers import map_layers, to_keras_layout


def test_every_small_cnn_layer_maps_to_its_onnx_tensor(example_models):
    rows = {
        r.name: r for r in map_layers(example_models.keras("small_cnn"), example_models.onnx("small_cnn"))
    }
    assert [n for n, r in rows.items() if r.tensor is None] == ["dropout"]  # removed at inference
    assert rows["conv1"].layout == rows["pool1"].layout == "channels-first"
    assert rows["flatten"].layout == "as-is"
    assert rows["classes"].tensor == "classes"  # the graph output
    assert rows["relu1"].inbound == ("bn1",)


def test_foreign_onnx_without_tokens_maps_by_scope(example_models):
    """An ONNX file converted elsewhere has TensorFlow scopes (``conv1_1``) but no xverify tokens."""
    model = faults.copy(example_models.onnx("small_cnn"))
    del model.metadata_props[:]
    for node in model.graph.node:
        node.name = "/".join(p for p in node.name.split("/") if not p.startswith("xvl"))
    rows = {r.name: r.tensor for r in map_layers(example_models.keras("small_cnn"), model)}
    assert rows["conv2"] and rows["relu1"] and rows["classes"] == "classes"


def test_layout_reconciliation():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # NCHW
    np.testing.assert_array_equal(to_keras_layout(x, "channels-first"), x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(to_keras_layout(x, "as-is"), x)
    # undecided by the graph: only the channels-last reading fits the Keras shape
    np.testing.assert_array_equal(to_keras_layout(x, None, (2, 4, 5, 3)), x.transpose(0, 2, 3, 1))
    # a decided reading that does not fit the Keras shape falls back to the one that does
    np.testing.assert_array_equal(to_keras_layout(x, "channels-first", (2, 3, 4, 5)), x)
    # time-major (T, N, F) from a recurrent layer whose final transpose moved downstream
    seq = np.arange(4 * 2 * 3).reshape(4, 2, 3)
    np.testing.assert_array_equal(to_keras_layout(seq, "time-major", (2, 4, 3)), seq.swapaxes(0, 1))
    # a 1-D pool run as a 2-D pool: (N, C, 1, W) against Keras (N, W, C)
    pooled = np.arange(2 * 3 * 1 * 5).reshape(2, 3, 1, 5)
    np.testing.assert_array_equal(
        to_keras_layout(pooled, "channels-first", (2, 5, 3)), pooled[:, :, 0, :].transpose(0, 2, 1)
    )


def _inject(model, fault):
    kind, arg = fault
    if kind == "kernel":
        return faults.alter_initializer(model, "Conv", 1, arg, 0.5)
    if kind == "bias":
        return faults.alter_initializer(model, "Add", 1, arg, 0.5)
    if kind == "relu":
        return faults.replace_op(model, "Relu", "Identity", arg)
    if kind == "pads":
        return faults.shift_pads(model, arg)
    if kind == "perm":
        return faults.set_attribute(model, "Transpose", "perm", [0, 3, 2, 1], arg)
    if kind == "softmax":
        return faults.set_attribute(model, "Softmax", "axis", 0, arg)
    raise AssertionError(kind)


# (fault, layer that holds it). small_cnn: conv1 bn1 relu1 pool1 conv2 pool2 flatten dropout classes;
# the scope tokens xvl<i> pick the node of layer i.
FAULTS = [
    (("kernel", "xvl4"), "conv2"),  # one kernel element changed
    (("bias", "xvl8"), "classes"),  # one bias element changed
    (("relu", "xvl2"), "relu1"),  # a Relu replaced by Identity
    (("pads", "xvl0"), "conv1"),  # pads shifted: same shape, shifted content
    (("perm", "xvl0"), "conv1"),  # the input Transpose's perm changed (H and W swapped)
    (("softmax", "xvl8"), "classes"),  # Softmax over the batch axis instead of the classes
]


@pytest.mark.parametrize("fault, layer", FAULTS, ids=[f[0][0] for f in FAULTS])
def test_injected_fault_is_localized(example_models, models_dir, tmp_path, fault, layer):
    faulty = faults.save(_inject(example_models.onnx("small_cnn"), fault), tmp_path / "faulty.onnx")
    result = CliRunner().invoke(
        app,
        ["check", str(models_dir / "small_cnn.keras"), "--onnx", faulty, "--json", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 1, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    failed_weights = {w["layer"] for w in data["weights"] if not w["passed"]}
    first = data["first_divergence"]
    assert first is not None and first["layer"] == layer, (first, failed_weights)
    assert failed_weights <= {layer}
    assert data["suspects"][0]["layer"] == layer
    assert "First divergence" in result.output and layer in result.output


def test_terminal_shows_divergent_layer_and_neighbours(example_models, models_dir, tmp_path):
    faulty = faults.save(_inject(example_models.onnx("small_cnn"), ("relu", "xvl2")), tmp_path / "f.onnx")
    result = CliRunner().invoke(app, ["check", str(models_dir / "small_cnn.keras"), "--onnx", faulty])
    lines = result.output.splitlines()
    assert any(line.startswith("│ bn1") for line in lines)  # the neighbour before
    assert not any(line.startswith("│ conv1 ") for line in lines)  # not a neighbour
    verbose = CliRunner().invoke(
        app, ["check", str(models_dir / "small_cnn.keras"), "--onnx", faulty, "--verbose"]
    )
    assert any(line.startswith("│ conv1 ") for line in verbose.output.splitlines())


def test_separable_conv_fused_with_batchnorm_is_looked_through():
    """tf2onnx folds the pointwise Conv into the next BatchNorm (a token-less ``Conv__N``); with as
    many output as input channels the depthwise result has the layer's shape, and must not be taken
    for the layer's output."""
    import keras

    import xverify

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 8), name="x")
    h = keras.layers.SeparableConv2D(8, 3, padding="same", use_bias=False, name="sep")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, keras.layers.Activation("relu", name="act")(h))
    rng = np.random.default_rng(0)
    model.get_layer("bn").set_weights(
        [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.normal(0, 0.2, 8), rng.uniform(0.5, 2, 8)]
    )
    onnx_model = xverify.convert(model)
    rows = {r.name: r.tensor for r in map_layers(model, onnx_model)}
    assert rows["sep"] is None and rows["bn"] is not None
    report = xverify.check(model, onnx=onnx_model)
    assert report.passed, report.failures()
