"""xverify.check on small Keras models covering each common layer and activation.

Every model is built with the functional API from seeded random weights (non-zero biases, BatchNorm
statistics away from 0 and 1) and checked with all three runtimes plus ONNX Runtime optimized, at the
default tolerances: outputs, weights and every layer must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

import xverify

keras = pytest.importorskip("keras")
layers = keras.layers

PAIRS = {
    ("onnxruntime", "tensorflow"),
    ("numpy", "tensorflow"),
    ("numpy", "onnxruntime"),
    ("onnxruntime-opt", "onnxruntime"),
}


class GeluTanh(layers.Layer):
    """GELU with the tanh approximation: ``Activation("gelu")`` is the exact (erf) form."""

    def call(self, x):
        return keras.activations.gelu(x, approximate=True)


def randomize(model, seed: int = 0):
    """Give every weight a seeded random value: biases non-zero, BN statistics non-trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for var, value in zip(layer.weights, layer.get_weights()):
            name = var.name
            if "variance" in name or "gamma" in name:
                new = rng.uniform(0.5, 1.5, value.shape)
            elif "mean" in name or "beta" in name or "alpha" in name:
                new = rng.uniform(-0.5, 0.5, value.shape)
            elif value.ndim <= 1 or "bias" in name:
                new = rng.uniform(-0.3, 0.3, value.shape)
            elif value.dtype.kind == "f":
                new = value + rng.uniform(-0.05, 0.05, value.shape)  # keep Glorot scale
            else:
                new = value
            values.append(np.asarray(new, value.dtype))
        if values:
            layer.set_weights(values)
    return model


@pytest.fixture(autouse=True)
def _seeded():
    """Layers draw their initial weights when built, so seed before each model is built."""
    keras.utils.set_random_seed(0)


def build(inputs, outputs, name="m"):
    return randomize(keras.Model(inputs, outputs, name=name))


def assert_passes(model, fused=()):
    """Check ``model`` with all runtimes and assert outputs, weights and every layer agree.

    Args:
        fused: layers with weights whose output tf2onnx may fuse away, so that no ONNX tensor
            holds it and the layer is rightly looked through rather than compared.
    """
    report = xverify.check(model)
    bad_layers = [
        f"{d.name} ({d.layer_class}): "
        + ", ".join(f"{k} {v.max_abs_diff:.3g}" for k, v in d.diffs.items() if not v)
        for d in report.layers
        if not d.passed
    ]
    failures = report.failures() + bad_layers
    assert report.passed, failures
    assert report.first_divergence is None, report.first_divergence
    pairs = {(d.a, d.b) for d in report.comparisons}
    assert pairs >= PAIRS, pairs
    unmatched = [(w.layer, w.name, w.transform, w.max_abs_diff) for w in report.weights if not w.passed]
    assert not unmatched, unmatched
    assert len(report.weights) == sum(len(layer.weights) for layer in model.layers)
    # Every layer with weights has an ONNX tensor that was compared (a BatchNormalization may be
    # folded into its Conv).
    weighted = {
        layer.name
        for layer in model.layers
        if layer.weights and not isinstance(layer, layers.BatchNormalization)
    }
    assert report.layers and {d.name for d in report.layers} >= weighted - set(fused)
    return report


# ---- dense and activations --------------------------------------------------------------------

ACTIVATIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "softsign",
    "exponential",
    "linear",
)


def test_dense_with_every_activation():
    x = keras.Input((6,), name="x")
    # Pre-activations of std ~3 reach the interesting parts: relu6's clip at 6, hard_sigmoid's
    # saturation beyond +-3, softplus and exponential on large arguments.
    h = layers.Rescaling(3.0, name="spread")(x)
    outs = [layers.Dense(4, activation=a, name=f"dense_{a}")(h) for a in ACTIVATIONS]
    outs.append(GeluTanh(name="gelu_tanh")(layers.Dense(4, name="dense_pre_gelu_tanh")(h)))
    outs.append(layers.Activation("relu6", name="act_relu6")(outs[ACTIVATIONS.index("linear")]))
    outs.append(layers.Activation(keras.activations.gelu, name="act_gelu")(outs[0]))
    y = layers.Concatenate(name="concat")(outs)
    assert_passes(build(x, y))


def test_activation_layers_and_prelu():
    x = keras.Input((5, 4), name="x")
    h = layers.Dense(6, name="dense")(x)
    h = layers.PReLU(name="prelu")(h)
    h = layers.Dense(6, name="dense_2")(h)
    h = layers.PReLU(shared_axes=[1], name="prelu_shared")(h)
    h = layers.LeakyReLU(negative_slope=0.2, name="leaky")(h)
    h = layers.ReLU(max_value=1.0, name="relu_capped")(h)
    h = layers.ELU(alpha=0.5, name="elu_layer")(h)
    y = layers.Softmax(name="softmax_layer")(h)
    assert_passes(build(x, y))


# ---- convolutions and pooling -----------------------------------------------------------------


def test_conv1d_and_1d_pooling():
    assert_passes(_conv1d_model())


def _conv1d_model():
    x = keras.Input((16, 3), name="x")
    h = layers.Conv1D(5, 3, padding="same", activation="relu", name="conv1d")(x)
    h = layers.MaxPooling1D(2, name="maxpool1d")(h)
    h = layers.Conv1D(4, 3, strides=2, padding="valid", name="conv1d_s2")(h)
    h = layers.BatchNormalization(name="bn")(h)
    a = layers.AveragePooling1D(2, padding="same", name="avgpool1d")(h)
    g1 = layers.GlobalAveragePooling1D(name="gap1d")(a)
    g2 = layers.GlobalMaxPooling1D(name="gmp1d")(h)
    y = layers.Concatenate(name="concat")([g1, g2])
    return build(x, y)


def test_conv2d_batchnorm_and_2d_pooling():
    x = keras.Input((12, 12, 3), name="image")
    h = layers.Conv2D(6, 3, padding="same", name="conv")(x)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Activation("relu", name="relu")(h)
    h = layers.MaxPooling2D(2, name="maxpool")(h)
    h = layers.Conv2D(5, 3, strides=2, padding="same", activation="elu", name="conv_s2")(h)
    a = layers.AveragePooling2D(2, padding="same", name="avgpool")(h)  # 3x3 -> 2x2: pads excluded
    m = layers.MaxPooling2D(3, strides=1, padding="valid", name="maxpool_3")(h)
    g1 = layers.GlobalAveragePooling2D(name="gap")(a)
    g2 = layers.GlobalMaxPooling2D(name="gmp")(h)
    g3 = layers.Flatten(name="flatten")(m)
    h = layers.Concatenate(name="concat")([g1, g2, g3])
    y = layers.Dense(3, activation="softmax", name="out")(h)
    assert_passes(build(x, y))


def test_batchnorm_and_layernorm_on_dense():
    x = keras.Input((8,), name="x")
    h = layers.BatchNormalization(name="bn_input")(x)
    h = layers.Dense(6, name="dense")(h)
    h = layers.BatchNormalization(name="bn_dense")(h)
    h = layers.LayerNormalization(name="ln")(h)
    y = layers.LayerNormalization(center=False, scale=False, epsilon=1e-3, name="ln_plain")(h)
    assert_passes(build(x, y))


def test_conv3d():
    x = keras.Input((6, 6, 6, 2), name="volume")
    h = layers.Conv3D(3, 3, padding="same", activation="relu", name="conv3d")(x)
    h = layers.Conv3D(2, 2, strides=2, name="conv3d_s2")(h)
    y = layers.Flatten(name="flatten")(h)  # NCDHW inside the graph: the flatten order matters
    assert_passes(build(x, y))


def test_transposed_depthwise_and_separable_conv():
    x = keras.Input((8, 8, 3), name="image")
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="deconv")(x)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(h)
    h = layers.SeparableConv2D(5, 3, padding="valid", activation="relu", name="separable")(h)
    h = layers.Conv2DTranspose(2, 2, strides=1, padding="valid", name="deconv_valid")(h)
    y = layers.GlobalAveragePooling2D(name="gap")(h)
    assert_passes(build(x, y))


def test_upsampling_padding_cropping_rescaling():
    x = keras.Input((6, 6, 2), name="image")
    h = layers.Rescaling(1 / 3.0, offset=0.5, name="rescale")(x)
    h = layers.Conv2D(3, 1, name="conv")(h)
    n = layers.UpSampling2D(2, interpolation="nearest", name="up_nearest")(h)
    b = layers.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(h)
    h = layers.Add(name="add")([n, b])
    h = layers.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(h)
    h = layers.Cropping2D(((2, 1), (1, 0)), name="crop")(h)
    h = layers.UpSampling2D((1, 2), interpolation="bilinear", name="up_wide")(h)
    y = layers.Conv2D(2, 3, name="conv_out")(h)
    assert_passes(build(x, y))


# ---- shapes and merges -----------------------------------------------------------------------


def test_reshape_permute_flatten_dropout():
    assert_passes(_shape_model())


def _shape_model():
    x = keras.Input((4, 6), name="x")
    h = layers.Dense(6, activation="tanh", name="dense")(x)
    h = layers.Dropout(0.5, name="dropout")(h)
    h = layers.Permute((2, 1), name="permute")(h)
    h = layers.Reshape((3, 8), name="reshape")(h)
    h = layers.Reshape((2, 3, 4), name="reshape_4d")(h)
    h = layers.Permute((2, 1, 3), name="permute_4d")(h)
    h = layers.Flatten(name="flatten")(h)
    y = layers.Dense(2, name="out")(h)
    return build(x, y)


def test_merge_layers_two_inputs_two_named_outputs():
    a = keras.Input((5,), name="left")
    b = keras.Input((5,), name="right")
    da = layers.Dense(4, name="dense_a")(a)
    db = layers.Dense(4, name="dense_b")(b)
    merged = [
        layers.Add(name="add")([da, db]),
        layers.Subtract(name="subtract")([da, db]),
        layers.Multiply(name="multiply")([da, db]),
        layers.Average(name="average")([da, db]),
        layers.Maximum(name="maximum")([da, db]),
        layers.Minimum(name="minimum")([da, db]),
    ]
    h = layers.Concatenate(name="concat")(merged)
    score = layers.Dense(1, activation="sigmoid", name="score")(h)
    label = layers.Dense(3, activation="softmax", name="label")(h)
    report = assert_passes(build([a, b], {"score": score, "label": label}))
    assert {d.output for d in report.comparisons} == {"score", "label"}
    assert [t.name for t in report.inputs.tensors] == ["left", "right"]


# ---- embeddings, recurrent layers and attention ----------------------------------------------


def test_embedding_and_simple_rnn():
    x = keras.Input((7,), dtype="int32", name="tokens")
    h = layers.Embedding(20, 5, name="embedding")(x)
    h = layers.SimpleRNN(4, return_sequences=True, name="rnn_seq")(h)
    y = layers.SimpleRNN(3, go_backwards=True, name="rnn_back")(h)
    assert_passes(build(x, y))


def test_lstm_stacked_return_sequences_go_backwards():
    x = keras.Input((6, 4), name="seq")
    h = layers.LSTM(5, return_sequences=True, name="lstm_seq")(x)
    h = layers.LSTM(4, return_sequences=True, go_backwards=True, name="lstm_back")(h)
    y = layers.LSTM(3, name="lstm_last")(h)
    assert_passes(build(x, y))


def test_gru_reset_after_both_ways_and_go_backwards():
    x = keras.Input((6, 4), name="seq")
    h = layers.GRU(5, return_sequences=True, reset_after=True, name="gru_after")(x)
    h = layers.GRU(4, return_sequences=True, reset_after=False, name="gru_before")(h)
    y = layers.GRU(3, go_backwards=True, name="gru_back")(h)
    assert_passes(build(x, y))


def test_bidirectional_last_state():
    assert_passes(_bidirectional_model(), fused=("bi_gru",))


def _bidirectional_model():
    x = keras.Input((6, 4), name="seq")
    a = layers.Bidirectional(layers.GRU(3), name="bi_gru")(x)
    b = layers.Bidirectional(layers.GRU(3, reset_after=False), merge_mode="sum", name="bi_gru_sum")(x)
    c = layers.Bidirectional(layers.LSTM(3), merge_mode="ave", name="bi_lstm")(x)
    d = layers.Bidirectional(layers.SimpleRNN(3), merge_mode="mul", name="bi_rnn")(x)
    y = layers.Concatenate(name="concat")([a, b, c, d])
    return build(x, y)


def test_bidirectional_stacked_sequences():
    assert_passes(_stacked_bidirectional_model())


def _stacked_bidirectional_model():
    x = keras.Input((6, 4), name="seq")
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi_lstm_seq")(x)
    y = layers.Bidirectional(layers.GRU(3), name="bi_gru")(h)
    return build(x, y)


def test_multi_head_attention():
    x = keras.Input((5, 8), name="seq")
    c = keras.Input((3, 6), name="context")
    h = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="self_attention")(x, x)
    h = layers.Add(name="residual")([x, h])
    h = layers.LayerNormalization(name="ln")(h)
    h = layers.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=5, name="cross_attention")(h, c)
    y = layers.GlobalAveragePooling1D(name="gap")(h)
    assert_passes(build([x, c], y))
