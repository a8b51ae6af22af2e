"""Failures the zoo found (benchmarks/zoo.py), each kept as a small model that once failed."""

from __future__ import annotations

import numpy as np
import pytest

import xverify
from tests.test_keras_layers import randomize

keras = pytest.importorskip("keras")
layers = keras.layers


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def _check(model, onnx=None):
    return xverify.check(model, onnx=onnx, samples=2)


def _nested_group_norm_model():
    x = keras.Input((5, 5, 4), name="x")
    block = keras.Sequential(
        [
            keras.Input((5, 5, 4)),
            layers.Conv2D(4, 3, padding="same", name="c"),
            layers.GroupNormalization(2, name="gn"),
        ],
        name="block",
    )
    h = layers.UnitNormalization(name="un")(block(x))
    model = keras.Model(x, layers.Dense(3, name="out")(layers.Flatten(name="flat")(h)))
    randomize(model)
    rng = np.random.default_rng(1)
    for layer in block.layers:  # randomize() reaches only the outer layers
        layer.set_weights([w + rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
    return model


def test_nested_sequential_with_group_normalization():
    """The issue's case: "weight gn/gamma: unmatched" (gamma stored as (1, 1, 1, groups, C/groups))
    and TensorFlow's taps failing on the nested block ("not connected to inputs")."""
    report = _check(_nested_group_norm_model())
    assert report.passed, report.failures()
    assert not [n for n in report.notes if "could not be tapped" in n], report.notes
    compared = {d.name for d in report.layers if "onnxruntime|tensorflow" in d.diffs}
    assert {"c", "gn", "un"} <= compared
    gamma = next(w for w in report.weights if w.layer == "gn" and w.name == "gamma")
    assert gamma.passed and "stored as" in gamma.transform


def test_a_fault_inside_a_nested_block_is_localized_there():
    model = _nested_group_norm_model()
    converted = xverify.convert(model)
    node = next(n for n in converted.graph.node if n.op_type == "Conv")
    kernel = next(i for i in converted.graph.initializer if i.name == node.input[1])
    from onnx import numpy_helper

    values = numpy_helper.to_array(kernel).copy()
    values.flat[0] += 1.0
    kernel.CopyFrom(numpy_helper.from_array(values, kernel.name))
    report = _check(model, converted)
    assert not report.passed
    assert report.first_divergence.layer == "c"


def test_shared_layer_compared_at_the_same_call_on_both_sides():
    """A layer called on two inputs: the ONNX graph lists the second call's nodes first, and
    TensorFlow's taps keep the last call; the map must take the same call (false alarm before)."""
    left, right = keras.Input((1, 4), name="left"), keras.Input((1, 4), name="right")
    pool = layers.GlobalMaxPooling1D(name="pool")
    h = layers.Add(name="add")([pool(left), pool(right)])
    reused = layers.Dense(4, activation="tanh", name="reused")
    model = keras.Model([left, right], layers.Dense(2, name="out")(reused(reused(h))))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert {"pool", "reused"} <= {d.name for d in report.layers}


def test_permute_then_batchnorm_then_1d_pooling():
    """Permute's Transpose cancels against the pooling's: the BatchNormalization's ONNX tensor is
    channels-first, and only the pooling that reads it says so (false alarm before)."""
    x = keras.Input((7, 7), name="x")
    h = layers.BatchNormalization(name="bn")(layers.Permute((2, 1), name="permute")(x))
    model = keras.Model(x, layers.Dense(2, name="out")(layers.GlobalAveragePooling1D(name="gap")(h)))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "bn" in {d.name for d in report.layers}


def test_hard_sigmoid_bias_folded_with_its_offset():
    """TensorFlow folds hard_sigmoid's +3 into the Dense bias: stored as bias + 3, not unmatched."""
    x = keras.Input((4,), name="x")
    model = keras.Model(x, layers.Dense(1, activation="hard_sigmoid", name="d")(x))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    bias = next(w for w in report.weights if w.name == "bias")
    assert "hard_sigmoid" in bias.transform


def test_batchnorm_on_an_input_is_not_folded_into_the_layer_listed_before_it():
    """Internal error before: the BatchNormalization's "previous layer" fell back to the layer
    before it in flat order, an unrelated Dense, whose kernel does not broadcast."""
    a, b = keras.Input((3,), name="a"), keras.Input((1, 1, 2), name="b")
    d = layers.Dense(18, name="dense")(a)
    n = layers.Flatten(name="flat")(layers.BatchNormalization(name="bn")(b))
    model = keras.Model([a, b], layers.Concatenate(name="cat")([d, n]))
    assert _check(randomize(model)).passed


def test_unit_normalization_whose_mul_took_the_next_batchnorm_scale():
    x = keras.Input((3, 3, 2), name="x")
    h = layers.UnitNormalization(name="un")(layers.BatchNormalization(name="bn0")(x))
    block = keras.Sequential([keras.Input((3, 3, 2)), layers.BatchNormalization(name="bn1")], name="block")
    y = layers.Dense(3, name="out")(layers.GlobalMaxPooling2D(name="gmp")(block(h)))
    model = randomize(keras.Model(x, y))
    block.layers[0].set_weights([np.full(2, v, np.float32) for v in (1.3, 0.2, -0.1, 0.8)])
    report = _check(model)
    assert report.passed, report.failures()


def test_grouped_convolutions_convert_and_pass():
    """tf2onnx left Keras' XLA-compiled grouped Conv2D as a StatefulPartitionedCall
    (onnx/tensorflow-onnx#2099, #2347: ConvNeXt refused); traced as a plain conv it becomes an ONNX
    Conv with ``group``."""
    x = keras.Input((6, 6, 4), name="x")
    h = layers.Conv2D(6, 3, padding="same", groups=2, name="g0")(x)
    h = layers.Conv2D(6, 3, padding="same", groups=6, name="g1")(h)
    s = keras.Input((7, 4), name="s")
    t = layers.Conv1D(4, 3, groups=4, name="g2")(s)
    model = randomize(keras.Model([x, s], [h, t]))
    converted = xverify.convert(model)
    groups = sorted(
        a.i for n in converted.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"
    )
    assert groups == [2, 4, 6]
    report = _check(model, converted)
    assert report.passed, report.failures()
    assert {"g0", "g1", "g2"} <= {d.name for d in report.layers}


def test_unconverted_ops_named_once_with_their_count():
    """One exit-2 message: each op once, its node count and a few layers, not a line per node."""
    from onnx import helper

    from xverify.convert import layer_index_of
    from xverify.convert_functions import unconverted_message

    model_layers = [layers.Conv2D(1, 1, name=f"c{i}") for i in range(5)]
    nodes = [
        helper.make_node("StatefulPartitionedCall", ["a"], ["b"], name=f"m/xvl{i}/call") for i in range(5)
    ]
    message = unconverted_message(nodes, model_layers, "", layer_index_of)
    assert message.count("'StatefulPartitionedCall'") == 1, message
    assert "5 nodes" in message and "and 2 more" in message and "'c0' (Conv2D)" in message


def test_gelu_whose_last_product_took_the_next_rescaling_factor():
    """Grappler folds a Rescaling's factor into the GELU's own product: the Dense has no tensor of
    its own and is looked through (a false alarm at the Dense before)."""
    x = keras.Input((6,), name="x")
    h = layers.Rescaling(1.5, offset=0.1, name="r1")(layers.Dense(6, name="d1")(x))
    h = layers.Dense(6, activation="gelu", name="d2")(h)
    model = keras.Model(x, layers.Rescaling(1.27, offset=0.12, name="r2")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_masking_layer_is_compared_on_its_values_not_its_mask():
    """A Masking layer's last tensor used elsewhere was its boolean mask (false alarm before)."""
    x = keras.Input((5, 1), name="seq")
    h = layers.Masking(mask_value=0.0, name="masking")(x)
    h = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="mul", name="bi")(h)
    h = layers.Conv1D(3, 1, activation="tanh", name="conv")(h)
    model = keras.Model(x, layers.Dense(2, name="out")(layers.GlobalAveragePooling1D(name="g")(h)))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_folded_batchnorm_with_the_same_default_scale_as_another():
    """EfficientNetB1 with weights=None: every BatchNormalization has the default statistics, so a
    folded one's scale equals an unfolded one's Mul constant elsewhere; the weights must be matched
    to the Conv the layer's own nodes read ("kernel: max abs diff 4e-4" before)."""
    x = keras.Input((8, 8, 3), name="x")
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="a_dw")(x)
    h = layers.BatchNormalization(name="a_bn")(h)
    h = layers.Conv2D(3, 1, use_bias=False, name="a_project")(h)
    a = layers.BatchNormalization(name="a_project_bn")(h)
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="b_dw")(a)
    h = layers.BatchNormalization(name="b_bn")(h)
    model = keras.Model(x, layers.Add(name="add")([h, a]))  # default weights: no randomize()
    report = _check(model)
    assert report.passed, report.failures()


def test_permutes_pushed_past_relus_and_merged():
    """Two Permutes whose Transposes tf2onnx pushed past the ReLUs after them and merged into one
    under no layer's name: the first ReLU's tensor holds its output before the permutation."""
    x = keras.Input((2, 2, 2), name="x")
    h = layers.ReLU(max_value=1.0, name="r1")(layers.Permute((2, 1, 3), name="p1")(x))
    h = layers.ReLU(max_value=6.0, name="r2")(layers.Permute((3, 2, 1), name="p2")(h))
    model = keras.Model(x, layers.GlobalAveragePooling2D(name="gap")(h))
    report = _check(model)
    assert report.passed, report.failures()
    assert "r1" in {d.name for d in report.layers}


def test_upsampling_whose_last_reshape_merged_into_the_next_reshape():
    x = keras.Input((8, 8, 1), name="x")
    h = layers.UpSampling2D(2, name="up")(layers.BatchNormalization(name="bn")(x))
    model = keras.Model(x, layers.Reshape((16, 16), name="reshape")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "up" in {d.name for d in report.layers}


def test_layer_norm_mean_written_as_a_global_pool():
    """tf2onnx writes LayerNormalization's mean over the last axis as a GlobalAveragePool; the
    tensor it reads is as is, not channels-first (a false alarm at the Dense before it)."""
    x = keras.Input((7, 3), name="seq")
    h = layers.Permute((2, 1), name="permute")(layers.GRU(3, return_sequences=True, name="g1")(x))
    h = layers.Dense(3, name="dense")(layers.GRU(2, return_sequences=True, name="g2")(h))
    model = keras.Model(x, layers.LayerNormalization(name="ln")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_single_channel_transposed_conv_then_reshape():
    x = keras.Input((3, 3, 3), name="x")
    h = layers.Conv2DTranspose(1, 2, padding="same", name="deconv")(x)
    h = layers.GlobalMaxPooling1D(name="pool")(layers.Reshape((3, 3), name="reshape")(h))
    report = _check(randomize(keras.Model(x, h)))
    assert report.passed, report.failures()
    assert "reshape" in {d.name for d in report.layers}


def test_hard_sigmoid_conv_then_batchnorm_takes_its_one_sixth():
    """The 1/6 of hard_sigmoid is folded into the next BatchNormalization's scale: the Conv has no
    tensor of its own and the scale is matched with the 1/6 (two false alarms before)."""
    x = keras.Input((8, 12), name="seq")
    h = layers.Conv1D(1, 3, padding="same", activation="hard_sigmoid", name="conv")(x)
    model = keras.Model(x, layers.BatchNormalization(name="bn")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_shared_depthwise_conv_is_compared_at_its_last_call():
    """The fused Conv nodes of both calls are renamed into the weights' (first call's) scope, so
    the call is told by which input its nodes read."""
    left, right = keras.Input((6, 6, 1), name="left"), keras.Input((6, 6, 1), name="right")
    shared = layers.DepthwiseConv2D(3, padding="same", name="dw")
    h = layers.Add(name="add")([shared(left), shared(right)])
    model = keras.Model([left, right], layers.GlobalMaxPooling2D(name="gmp")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "dw" in {d.name for d in report.layers}


def test_shared_layer_also_called_on_another_graphs_input():
    """A shared Dense first called on a throwaway Input (an inbound node outside the model) and the
    two calls at the same depth: TensorFlow's taps give the model's last call, whichever order
    Keras ran them in (false alarm before)."""
    left, right = keras.Input((5,), name="left"), keras.Input((5,), name="right")
    dense, reshape = layers.Dense(18, name="dense"), layers.Reshape((3, 3, 2), name="reshape")
    reshape(dense(keras.Input((5,))))
    h = layers.Add(name="add")([reshape(dense(left)), reshape(dense(right))])
    model = keras.Model([left, right], layers.GlobalMaxPooling2D(name="gmp")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_shared_upsampling_runs_channels_first_between_two_transposes():
    left, right = keras.Input((5, 5, 5), name="left"), keras.Input((5, 5, 5), name="right")
    up = layers.UpSampling2D(2, name="up")
    h = layers.Add(name="add")([up(left), up(right)])
    model = keras.Model([left, right], layers.Dense(2, name="out")(layers.Flatten(name="f")(h)))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "add" in {d.name for d in report.layers}


def test_reversed_lstm_sequence_then_pooling():
    """The LSTM node has no layer token: its last tensor "used outside" was its reversed input."""
    x = keras.Input((5, 3), name="seq")
    h = layers.LSTM(2, return_sequences=True, go_backwards=True, name="lstm")(x)
    model = keras.Model(x, layers.MaxPooling1D(2, padding="same", name="pool")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "lstm" in {d.name for d in report.layers}


def test_permute_pushed_past_zero_padding():
    x = keras.Input((8,), name="x")
    h = layers.Reshape((2, 2, 2), name="reshape")(x)
    h = layers.ZeroPadding2D(((1, 0), (1, 1)), name="pad")(layers.Permute((3, 1, 2), name="p")(h))
    model = keras.Model(x, layers.GlobalAveragePooling2D(name="gap")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()


def test_single_channel_conv_reshaped_then_permuted_into_a_1d_pool():
    """Seed 500: the Permute's Transpose cancelled against the 1-D pooling's, so the pooling's
    GlobalAveragePool reads the Reshape as is; a global pool does not make its input channels-first."""
    x = keras.Input((4, 4, 1), name="x")
    h = layers.Reshape((3, 3), name="reshape")(layers.Conv2D(1, 2, name="conv")(x))
    h = layers.GlobalAveragePooling1D(name="gap")(layers.Permute((2, 1), name="permute")(h))
    report = _check(randomize(keras.Model(x, layers.Dense(3, name="out")(h))))
    assert report.passed, report.failures()
    assert "reshape" in {d.name for d in report.layers}


def test_a_model_keras_cannot_call_is_refused_not_an_internal_error():
    """Zoo seed 1301: a mask reaching a Softmax makes Keras itself fail to call the model (the
    conversion traced it); exit 2 with the reason, not an internal error."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from zoo_forms import generate

    with pytest.raises(xverify.XverifyError) as info:
        _check(generate(1301).model)
    assert info.value.exit_code == 2 and "TensorFlow could not run" in str(info.value)


def test_permute_pushed_past_a_relu_behind_a_reshape_of_no_layer():
    """Seed 282: the Permute's Transpose went past the ReLU6 after it, split into a Reshape (moving
    the size-1 channel axis, no layer's name) and a Transpose still named after the Permute. The
    ReLU's tensor holds its output before both; the Permute has no tensor of its own."""
    model = keras.Sequential(
        [
            keras.Input((5, 5, 2)),
            layers.AveragePooling2D(2, padding="same", name="pool"),
            layers.Conv2DTranspose(1, 2, name="deconv"),
            layers.Permute((3, 2, 1), name="permute"),
            layers.ReLU(max_value=6.0, name="relu"),
        ]
    )
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "relu" in {d.name for d in report.layers}


def test_lstm_after_a_summed_bidirectional_keeps_its_own_recurrent_node():
    """Seed 404: tf2onnx named the second LSTM's node afresh; it reads the Bidirectional's sum, so
    it was adopted by the Bidirectional (compared in shape (7, 2, 2) against (2, 7, 1)). Its
    initial states, zeros built in the LSTM's own scope, say whose it is."""
    x = keras.Input((7, 1), name="x")
    h = layers.Bidirectional(layers.LSTM(1, return_sequences=True), merge_mode="sum", name="bi")(x)
    h = layers.LSTM(2, return_sequences=True, name="lstm")(h)
    model = keras.Model(x, layers.GlobalMaxPooling1D(name="pool")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert {"bi", "lstm"} <= {d.name for d in report.layers}


def _nested(name, *inner, shape):
    block = keras.Sequential([keras.Input(shape), *inner], name=f"{name}_inner")
    x = keras.Input(shape)
    return keras.Model(x, block(x), name=name)


def test_permute_at_the_end_of_a_nested_block_pushed_past_the_batchnorm_after_it():
    """Seed 1198: the BatchNormalization after a nested block reads the block's Permute; its
    inbound was the block's name, so the pushed permutation was not carried to it."""
    x = keras.Input((3, 4), name="x")
    block = _nested(
        "outer", layers.BatchNormalization(name="bn1"), layers.Permute((2, 1), name="p"), shape=(3, 4)
    )
    h = layers.BatchNormalization(name="bn2")(block(x))
    model = keras.Model(x, layers.Dense(3, name="out")(layers.Flatten(name="flat")(h)))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "bn2" in {d.name for d in report.layers}


def test_permute_before_a_nested_block_pushed_past_the_batchnorm_inside_it():
    """Seed 940: the nested block's first layer reads the block's own input layer, which stands
    for the Permute the block was called on."""
    x = keras.Input((4, 5), name="x")
    h = layers.Permute((2, 1), name="p")(layers.Dense(2, name="d")(x))
    block = _nested("outer", layers.BatchNormalization(name="bn"), shape=(2, 4))
    h = layers.GRU(1, return_sequences=True, name="gru")(block(h))
    model = keras.Model(x, layers.GlobalAveragePooling1D(name="gap")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    assert "bn" in {d.name for d in report.layers}


def test_bidirectional_left_as_two_one_direction_nodes():
    """Seed 1360: tf2onnx left a Bidirectional LSTM as two forward LSTM nodes (the backward one
    reading a reversed input), each holding one direction's W, R and B: matched per direction."""
    x = keras.Input((1, 3), name="x")
    h = layers.PReLU(name="prelu")(x)
    h = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi")(h)
    model = keras.Model(x, layers.Dense(1, name="out")(h))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    bi = [w for w in report.weights if w.layer == "bi"]
    assert len(bi) == 6 and all(w.passed and w.onnx_initializer for w in bi)


def test_batchnorm_scale_holding_the_bidirectional_average():
    """Seed 1367: TensorFlow folded the Bidirectional's averaging (merge_mode 'ave', a division by 2)
    into the next BatchNormalization's scale, gamma / sqrt(var + eps) / 2."""
    x = keras.Input((6, 1), name="seq")
    h = layers.Bidirectional(layers.LSTM(1), merge_mode="ave", name="bi")(layers.Masking(name="mask")(x))
    model = keras.Model(x, layers.Dense(2, name="out")(layers.BatchNormalization(name="bn")(h)))
    report = _check(randomize(model))
    assert report.passed, report.failures()
    gamma = next(w for w in report.weights if w.layer == "bn" and w.name == "gamma")
    assert "average folded in" in gamma.transform


def test_a_graph_no_runtime_can_run_is_one_clear_refusal():
    """Seed 690: tf2onnx wrote a Reshape with the batch size baked in, so the graph fails in ONNX
    Runtime and in the engine alike (shapes (2, 1, 2, 8) and (8, 1, 2, 1) in a Mul): exit 2 naming
    the node and both runtimes' errors, not an internal error."""
    model = keras.Sequential(
        [
            keras.Input((8, 1, 1)),
            layers.DepthwiseConv2D(1, depth_multiplier=2, padding="same", name="dw"),
            layers.Permute((2, 3, 1), name="permute"),
            layers.UnitNormalization(name="un"),
        ]
    )
    with pytest.raises(xverify.XverifyError) as info:
        _check(randomize(model))
    message = str(info.value)
    assert info.value.exit_code == 2 and "ONNX Runtime cannot run the ONNX graph" in message
    assert "the NumPy engine fails as well" in message and "(Mul)" in message
