"""Layouts decided from the graph, never from a shape (issue 9, point 4).

Each model here has a layer tensor whose shape fits more than one reading (two equal dimensions),
which is where a layout guessed from shapes compared the wrong thing and raised a false alarm.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import xverify
from tests.test_keras_layers import build
from xverify.layers import map_layers, readings
from xverify.layout import tensor_layouts

keras = pytest.importorskip("keras")
layers = keras.layers


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def _assert_clean(model):
    report = xverify.check(model, samples=2)
    assert report.passed, report.failures()
    return report


def test_permute_of_a_square_tensor_in_a_two_input_model():
    """The issue's false alarm: a Permute((2, 1)) with a 6x6 output compared in the wrong layout."""
    a, b = keras.Input((6, 4), name="a"), keras.Input((6, 4), name="b")
    h = layers.Add(name="add")([layers.Dense(6, name="da")(a), layers.Dense(6, name="db")(b)])
    p = layers.Permute((2, 1), name="permute")(h)
    y = layers.Dense(3, name="out")(layers.Flatten(name="flat")(p))
    model = build([a, b], [y, p])
    _assert_clean(model)
    rows = {r.name: r for r in map_layers(model, xverify.convert(model))}
    assert rows["permute"].layout == "as-is"


def test_cube_of_convolutions_through_a_single_channel():
    """Conv3D on 3x3x3 volumes with 3 channels: tf2onnx writes the transposes around the 1-channel
    layer as a Reshape, so only the convolutions themselves say the tensors are channels-first."""
    x = keras.Input((3, 3, 3, 3), name="volume")
    h = layers.Conv3D(1, 2, padding="same", name="c1")(x)
    h = layers.Conv3D(3, 2, padding="same", name="c2")(h)
    y = layers.Conv3D(3, 2, padding="same", name="c3")(h)
    model = build(x, y)
    _assert_clean(model)
    rows = {r.name: r for r in map_layers(model, xverify.convert(model))}
    assert rows["c2"].layout == "channels-first"


def test_conv1d_then_permute_of_a_square_sequence():
    x = keras.Input((3, 3), name="seq")
    h = layers.Conv1D(3, 2, padding="same", name="conv")(x)
    h = layers.LeakyReLU(name="leaky")(h)
    h = layers.Permute((2, 1), name="permute")(h)
    _assert_clean(build(x, layers.GRU(4, name="gru")(h)))


def test_a_swap_of_two_equal_axes_is_still_found_at_its_layer():
    """Deciding the layout from the graph must not explain a real permutation away."""
    x = keras.Input((5, 5), name="seq")
    h = layers.Dense(5, activation="tanh", name="dense")(x)
    y = layers.Dense(2, name="out")(layers.Flatten(name="flat")(h))
    model = build(x, y)
    converted = xverify.convert(model)
    tensor = next(r.tensor for r in map_layers(model, converted) if r.name == "dense")
    graph = converted.graph
    position, producer = next((i, n) for i, n in enumerate(graph.node) if tensor in n.output)
    producer.output[list(producer.output).index(tensor)] = tensor + "_before"
    graph.node.insert(
        position + 1,
        helper.make_node(
            "Transpose", [tensor + "_before"], [tensor], name=producer.name + "_swap", perm=[0, 2, 1]
        ),
    )
    report = xverify.check(model, onnx=converted, samples=2)
    assert not report.passed
    assert report.first_divergence.layer == "dense"


def _graph(nodes, shape=(2, 4, 4, 4)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 1, 1], np.ones(16, np.float32))
    outs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes[-1:]]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs, [w]))


def test_a_transpose_is_channels_first_only_when_it_feeds_a_channels_first_op():
    to_first = helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2])
    relu = helper.make_node("Relu", ["t"], ["r"])
    conv = helper.make_node("Conv", ["r", "w"], ["c"])
    back = helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])
    layouts = tensor_layouts(_graph([to_first, relu, conv, back]))
    assert layouts["t"] == layouts["r"] == layouts["c"] == "channels-first"
    assert layouts["y"] == "as-is"
    permute = helper.make_node("Transpose", ["x"], ["p"], perm=[0, 3, 1, 2])
    assert tensor_layouts(_graph([permute, helper.make_node("Relu", ["p"], ["q"])]))["q"] == "as-is"


def test_undecided_layouts_offer_every_reading_that_fits():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    assert len(readings(x, None, (2, 3, 3))) == 2  # as is, and channels moved (time-major: 3 != 2)
    assert len(readings(x, "as-is", (2, 3, 3))) == 1
