"""Tests of xverify.extract: ONNX initializers read back as Keras weights, matched by value.

Each model is built (seeded) and converted once per module; the checks compare with ``get_weights()``
and with literal numbers from models/build.py.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from xverify.convert import convert  # noqa: E402
from xverify.extract import LayerWeights, WeightMatch, extract_weights, match_weights, onnx_weights  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"


def _load(name):
    model = keras.saving.load_model(MODELS / f"{name}.keras", compile=False)
    return model, convert(model)


def _randomize(model, seed):
    """Non-zero values everywhere (fresh biases are zeros), positive BN variances."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = [
            rng.normal(0, 0.3, w.shape) + (1.5 if "variance" in v.path else 0)
            for w, v in zip(layer.get_weights(), layer.weights)
        ]
        layer.set_weights([np.asarray(v, np.float32) for v in values])


@pytest.fixture(scope="module")
def seed():
    return _load("seed_regression")


@pytest.fixture(scope="module")
def cnn():
    return _load("small_cnn")


@pytest.fixture(scope="module")
def lstm():
    return _load("text_lstm")


@pytest.fixture(scope="module")
def convs():
    """Conv2D without bias + BatchNormalization (tf2onnx folds it), DepthwiseConv2D, SeparableConv2D,
    Conv2DTranspose, and a Dense whose bias stays all zeros."""
    keras.utils.set_random_seed(3)
    L = keras.layers
    inputs = keras.Input((8, 8, 4))
    x = L.Conv2D(6, 3, use_bias=False, name="conv_nb")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.SeparableConv2D(5, 2, name="sep")(x)
    x = L.Conv2DTranspose(3, 2, strides=2, name="tconv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, name="zero_bias")(x)
    model = keras.Model(inputs, outputs)
    _randomize(model, 3)
    dense = model.get_layer("zero_bias")
    dense.set_weights([dense.get_weights()[0], np.zeros(4, np.float32)])
    return model, convert(model)


@pytest.fixture(scope="module")
def recurrent():
    """GRU (reset_after), GRU (reset_after=False), SimpleRNN and a Bidirectional LSTM."""
    keras.utils.set_random_seed(4)
    L = keras.layers
    inputs = keras.Input((5, 4))
    x = L.GRU(6, return_sequences=True, name="gru")(inputs)
    x = L.GRU(3, return_sequences=True, reset_after=False, name="gru_rb")(x)
    x = L.SimpleRNN(5, return_sequences=True, name="rnn")(x)
    outputs = L.Bidirectional(L.LSTM(4), name="bidi")(x)
    model = keras.Model(inputs, outputs)
    _randomize(model, 4)
    return model, convert(model)


def _random_bn(layer, rng):
    c = layer.get_weights()[0].shape[0]
    layer.set_weights(
        [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c), rng.uniform(0.5, 2, c)]
    )


@pytest.fixture(scope="module", params=[False, True], ids=["sep_no_bias", "sep_bias"])
def separable_bn(request):
    """SeparableConv2D then BatchNormalization with random statistics, with and without a bias."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inputs = keras.Input((16, 16, 8))
    x = L.SeparableConv2D(16, 3, use_bias=request.param, name="sep")(inputs)
    x = L.BatchNormalization(name="sep_bn")(x)
    model = keras.Model(inputs, L.Activation("relu", name="relu")(x))
    rng = np.random.default_rng(0)
    _random_bn(model.get_layer("sep_bn"), rng)
    if request.param:  # a fresh bias is zeros: tf2onnx would drop it
        sep = model.get_layer("sep")
        sep.set_weights(sep.get_weights()[:2] + [rng.normal(0, 0.3, 16).astype("float32")])
    return model, convert(model)


@pytest.fixture(scope="module")
def normalization():
    """An adapted Normalization (variance != 1) before a Dense, and the same statistics inverted."""
    keras.utils.set_random_seed(0)
    data = np.random.default_rng(0).normal(3, 2, (100, 4)).astype("float32")
    models = []
    for invert in (False, True):
        norm = keras.layers.Normalization(invert=invert, name="norm")
        norm.adapt(data)
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(norm(inputs)))
        models.append((model, convert(model)))
    return models


def _weights(report, layer):
    return {w.name: w for w in next(lw for lw in report.layers if lw.layer == layer).weights}


def _assert_all_equal_keras(report, model):
    for lw in report.layers:
        for w, value in zip(lw.weights, model.get_layer(lw.layer).get_weights()):
            assert w.passed, w
            if w.onnx_value is not None:
                np.testing.assert_allclose(w.onnx_value, value, rtol=1e-5, atol=1e-6)


def test_seed_regression_weights_come_back_exactly(seed):
    model, onnx_model = seed
    report = match_weights(model, onnx_model)
    assert report and report.passed and report.unattributed == ()
    hidden, output = _weights(report, "hidden"), _weights(report, "output")
    assert hidden["kernel"].transform == "identity" and hidden["kernel"].max_abs_diff == 0.0
    assert hidden["kernel"].onnx_value[0, 1] == np.float32(0.48899287)
    assert hidden["kernel"].onnx_value[0, 15] == np.float32(-0.47300738)
    # The first bias has zeros in it but is not all zero: it is stored, and matched as it is.
    bias = hidden["bias"]
    assert bias.transform == "identity" and bias.onnx_initializer is not None
    assert bias.onnx_value[0] == 0.0 and bias.onnx_value[1] == np.float32(1.1705374)
    assert output["kernel"].shape == (16, 1)
    assert output["bias"].onnx_value[0] == np.float32(0.7426254)
    entry = hidden["kernel"].to_dict()
    assert list(entry) == [
        "layer",
        "name",
        "shape",
        "onnx_initializer",
        "transform",
        "max_abs_diff",
        "passed",
    ]
    assert entry["layer"] == "hidden" and entry["shape"] == [1, 16] and entry["passed"] is True


def test_all_zero_bias_is_reported_eliminated(convs):
    model, onnx_model = convs
    bias = _weights(match_weights(model, onnx_model), "zero_bias")["bias"]
    assert bias.transform == "eliminated: all zeros"
    assert bias.passed and bias.max_abs_diff == 0.0 and bias.onnx_initializer is None


def test_small_cnn_conv_kernels_transposed_and_batchnorm_as_scale_offset(cnn):
    model, onnx_model = cnn
    report = match_weights(model, onnx_model)
    assert report.passed and report.unattributed == ()
    for name in ("conv1", "conv2"):
        kernel = _weights(report, name)["kernel"]
        assert kernel.transform == "transpose HWIO->OIHW" and kernel.max_abs_diff == 0.0
        np.testing.assert_array_equal(kernel.onnx_value, model.get_layer(name).get_weights()[0])
    # conv1 has a bias, so tf2onnx 1.17 keeps bn1 as Mul(scale) and Add(offset) constants.
    bn = _weights(report, "bn1")
    assert bn["gamma"].transform.startswith("BN scale") and bn["beta"].transform.startswith("BN offset")
    assert all(w.passed and w.max_abs_diff <= 1e-5 for w in bn.values())


def test_batchnorm_folded_into_conv(convs):
    model, onnx_model = convs
    report = match_weights(model, onnx_model)
    kernel = _weights(report, "conv_nb")["kernel"]
    assert kernel.passed and kernel.max_abs_diff <= 1e-5 and "bn folded in" in kernel.transform
    np.testing.assert_allclose(
        kernel.onnx_value, model.get_layer("conv_nb").get_weights()[0], rtol=1e-5, atol=1e-6
    )
    bn = _weights(report, "bn")
    assert set(bn) == {"gamma", "beta", "moving_mean", "moving_variance"}
    for w in bn.values():
        assert w.passed and w.max_abs_diff <= 1e-5
        assert w.transform == f"folded into {w.onnx_initializer}"
    assert bn["gamma"].onnx_initializer == kernel.onnx_initializer


def test_depthwise_separable_and_transposed_convs(convs):
    model, onnx_model = convs
    report = match_weights(model, onnx_model)
    assert report.passed and report.unattributed == ()
    dw, sep = _weights(report, "dw"), _weights(report, "sep")
    assert dw["kernel"].transform.startswith("depthwise reshape")
    assert sep["depthwise_kernel"].transform.startswith("depthwise reshape")
    assert sep["pointwise_kernel"].transform == "transpose HWIO->OIHW"
    assert _weights(report, "tconv")["kernel"].transform == "transpose HWOI->IOHW"
    _assert_all_equal_keras(report, model)


def test_text_lstm_embedding_and_lstm_matched(lstm):
    model, onnx_model = lstm
    report = match_weights(model, onnx_model)
    assert report.passed and report.unattributed == ()
    assert _weights(report, "embedding")["embeddings"].transform == "identity"
    cell = _weights(report, "lstm")
    assert set(cell) == {"kernel", "recurrent_kernel", "bias"}
    assert all(w.transform.startswith("LSTM gates i,f,c,o -> i,o,f,c") for w in cell.values())
    assert all(w.max_abs_diff == 0.0 for w in cell.values())
    _assert_all_equal_keras(report, model)


def test_gru_simple_rnn_and_bidirectional_lstm(recurrent):
    model, onnx_model = recurrent
    report = match_weights(model, onnx_model)
    assert report.passed and report.unattributed == ()
    # tf2onnx 1.17 lowers Keras 3 GRU and SimpleRNN to Loop nodes fed the Keras weights as they are.
    assert all(w.transform == "identity" for w in _weights(report, "gru").values())
    assert _weights(report, "gru")["bias"].shape == (2, 6 * 3)
    assert _weights(report, "gru_rb")["bias"].shape == (9,)
    bidi = _weights(report, "bidi")
    assert set(bidi) == {
        f"{d}/{n}" for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")
    }
    assert bidi["forward/kernel"].onnx_initializer == bidi["backward/kernel"].onnx_initializer
    _assert_all_equal_keras(report, model)


def _altered(onnx_model, name, index):
    altered = copy.deepcopy(onnx_model)
    init = next(i for i in altered.graph.initializer if i.name == name)
    array = numpy_helper.to_array(init).copy()
    array[index] += 0.5
    init.CopyFrom(numpy_helper.from_array(array, name))
    return altered


def test_altered_kernel_element_fails_that_weight_only(seed):
    model, onnx_model = seed
    name = _weights(match_weights(model, onnx_model), "hidden")["kernel"].onnx_initializer
    report = match_weights(model, _altered(onnx_model, name, (0, 3)))
    assert not report
    kernel = _weights(report, "hidden")["kernel"]
    assert not kernel.passed and kernel.layer == "hidden" and kernel.onnx_initializer == name
    assert kernel.max_abs_diff == pytest.approx(0.5, abs=1e-6)
    assert kernel.onnx_value[0, 3] - kernel.keras_value[0, 3] == pytest.approx(0.5, abs=1e-6)
    others = [w for lw in report.layers for w in lw.weights if w is not kernel]
    assert all(w.passed for w in others)


def test_altered_lstm_weight_is_named(lstm):
    model, onnx_model = lstm
    name = _weights(match_weights(model, onnx_model), "lstm")["recurrent_kernel"].onnx_initializer
    cell = _weights(match_weights(model, _altered(onnx_model, name, (0, 5, 2))), "lstm")
    assert not cell["recurrent_kernel"].passed and cell["recurrent_kernel"].onnx_initializer == name
    assert cell["recurrent_kernel"].max_abs_diff == pytest.approx(0.5, abs=1e-6)
    assert cell["kernel"].passed and cell["bias"].passed


def test_weights_of_another_model_are_unmatched(seed, lstm):
    report = match_weights(seed[0], lstm[1])
    assert not report
    kernel = _weights(report, "hidden")["kernel"]
    assert not kernel and kernel.transform == "unmatched"
    assert kernel.onnx_initializer is None and kernel.max_abs_diff == float("inf")
    lstm_inits = {w.onnx_initializer for w in _weights(match_weights(*lstm), "lstm").values()}
    assert lstm_inits <= set(report.unattributed)  # LSTM W, R, B account for no seed weight


@pytest.mark.parametrize("fixture", ["seed", "lstm", "cnn"])
def test_onnx_weights_alone_in_keras_layout(fixture, request):
    model, onnx_model = request.getfixturevalue(fixture)
    layers = onnx_weights(onnx_model)
    assert all(isinstance(lw, LayerWeights) and lw.passed for lw in layers)
    by_name = {lw.layer: lw for lw in layers}
    for layer in model.layers:
        if not layer.get_weights() or layer.name.startswith("bn"):
            continue  # a BatchNormalization is stored as scale and offset, not its four weights
        found = by_name[layer.name].weights
        assert [w.shape for w in found] == [w.shape for w in layer.get_weights()]
        for w, value in zip(found, layer.get_weights()):
            assert w.max_abs_diff == 0.0 and w.passed
            np.testing.assert_array_equal(w.onnx_value, value)


def test_onnx_weights_without_metadata_uses_scopes(lstm):
    _, onnx_model = lstm
    bare = copy.deepcopy(onnx_model)
    del bare.metadata_props[:]
    names = [lw.layer for lw in onnx_weights(bare)]
    assert names == ["embedding_1", "lstm_1", "score_1"]  # TensorFlow's scopes


def test_extract_weights_accepts_keras_onnx_and_paths(seed, tmp_path):
    model, onnx_model = seed
    from_keras = extract_weights(model)
    assert [lw.layer for lw in from_keras] == ["hidden", "output"] and all(from_keras)
    path = tmp_path / "seed.onnx"
    onnx.save(onnx_model, str(path))
    from_file = extract_weights(path)
    assert [lw.layer for lw in from_file] == ["hidden", "output"]
    assert isinstance(from_file[0].weights[0], WeightMatch)
    np.testing.assert_array_equal(
        from_file[0].weights[0].onnx_value, model.get_layer("hidden").get_weights()[0]
    )
    assert [lw.layer for lw in extract_weights(MODELS / "seed_regression.keras")] == ["hidden", "output"]


def test_separable_conv_with_batchnorm(separable_bn):
    model, onnx_model = separable_bn
    report = match_weights(model, onnx_model)
    assert report.passed and report.unattributed == ()
    _assert_all_equal_keras(report, model)
    sep, bn = _weights(report, "sep"), _weights(report, "sep_bn")
    assert sep["depthwise_kernel"].transform.startswith("depthwise reshape")
    assert all(w.max_abs_diff <= 1e-5 for w in bn.values())
    if "bias" in sep:
        # With a bias of its own, tf2onnx 1.17 keeps the BatchNormalization as Mul and Add.
        assert sep["pointwise_kernel"].transform == "transpose HWIO->OIHW"
        assert bn["gamma"].transform.startswith("BN scale") and bn["beta"].transform.startswith("BN offset")
        return
    # Without: the pointwise Conv and the BatchNormalization become one Conv.
    kernel = sep["pointwise_kernel"]
    assert kernel.transform.startswith("transpose HWIO->OIHW, sep_bn folded in")
    for w in bn.values():
        assert w.transform == f"folded into {w.onnx_initializer}"
    assert bn["gamma"].onnx_initializer == bn["moving_variance"].onnx_initializer == kernel.onnx_initializer
    assert bn["beta"].onnx_initializer == bn["moving_mean"].onnx_initializer != kernel.onnx_initializer


def test_altered_folded_separable_kernel_fails(separable_bn):
    model, onnx_model = separable_bn
    report = match_weights(model, onnx_model)
    name = _weights(report, "sep")["pointwise_kernel"].onnx_initializer
    altered = _weights(match_weights(model, _altered(onnx_model, name, (3, 5, 0, 0))), "sep")
    assert not altered["pointwise_kernel"].passed
    assert altered["pointwise_kernel"].onnx_initializer == name
    assert altered["depthwise_kernel"].passed


def test_adapted_normalization_variance_as_folded_reciprocal(normalization):
    for (model, onnx_model), label in zip(
        normalization, ("1/max(sqrt(variance), eps)", "max(sqrt(variance), eps)")
    ):
        report = match_weights(model, onnx_model)
        assert report.passed and report.unattributed == ()
        norm = _weights(report, "norm")
        _mean, variance = model.get_layer("norm").get_weights()[:2]
        assert not np.allclose(variance, 1)
        assert norm["mean"].transform.startswith("identity") and norm["mean"].max_abs_diff == 0.0
        assert norm["variance"].transform.startswith(label) and norm["variance"].max_abs_diff <= 1e-5
        np.testing.assert_allclose(norm["variance"].onnx_value, variance, rtol=1e-5)
        # Keras keeps count only to load old saved models; Normalization.call never reads it.
        count = norm["count"]
        assert count.passed and count.transform == "not used at inference"
        assert count.onnx_initializer is None and count.shape == ()


def test_altered_normalization_variance_is_named(normalization):
    model, onnx_model = normalization[0]
    name = _weights(match_weights(model, onnx_model), "norm")["variance"].onnx_initializer
    variance = _weights(match_weights(model, _altered(onnx_model, name, (0, 2))), "norm")["variance"]
    assert not variance.passed and variance.onnx_initializer == name
