"""`--unit`: one output element of a layer Keras computes, spelled out and checked against Keras.

Each layer kind is run at several elements, corners included (where 'same' padding adds zeros),
and the element recomputed from its window, statistics or gates must equal Keras' own output.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.example_models import MODELS
from xverify.explain import explain


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _layers(keras):
    L = keras.layers
    return {
        "conv2d_same_stride2": ((7, 6, 3), L.Conv2D(4, 3, strides=2, padding="same", activation="relu")),
        "conv2d_dilated": ((8, 8, 2), L.Conv2D(3, 3, dilation_rate=2, use_bias=False)),
        "conv2d_groups": ((6, 6, 4), L.Conv2D(4, 3, groups=2, padding="same")),
        "conv1d_causal": ((9, 3), L.Conv1D(2, 3, padding="causal", activation="tanh")),
        "conv3d": ((4, 4, 4, 2), L.Conv3D(2, 2, strides=(1, 2, 1))),
        "depthwise": ((6, 6, 3), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")),
        "maxpool_same": ((7, 7, 2), L.MaxPooling2D(2, padding="same")),
        "avgpool_same": ((7, 7, 2), L.AveragePooling2D(3, strides=2, padding="same")),
        "avgpool1d": ((9, 2), L.AveragePooling1D(2)),
        "global_avg": ((4, 5, 3), L.GlobalAveragePooling2D()),
        "global_max": ((6, 3), L.GlobalMaxPooling1D()),
        "batchnorm": ((4, 3), L.BatchNormalization()),
        "layernorm": ((4, 6), L.LayerNormalization()),
        "simple_rnn": ((5, 3), L.SimpleRNN(4)),
        "gru": ((5, 3), L.GRU(4, return_sequences=True)),
        "gru_before": ((5, 3), L.GRU(3, reset_after=False)),
        "lstm": ((6, 3), L.LSTM(4, return_sequences=True)),
    }


def _model(keras, shape, layer, rng):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    weights = [rng.normal(0, 0.5, w.shape) for w in layer.get_weights()]
    if type(layer).__name__ == "BatchNormalization":
        weights[3] = rng.uniform(0.5, 2.0, weights[3].shape)  # a variance is positive
    layer.set_weights([np.asarray(w, np.float32) for w in weights])
    return model


NAMES = [
    "conv2d_same_stride2",
    "conv2d_dilated",
    "conv2d_groups",
    "conv1d_causal",
    "conv3d",
    "depthwise",
    "maxpool_same",
    "avgpool_same",
    "avgpool1d",
    "global_avg",
    "global_max",
    "batchnorm",
    "layernorm",
    "simple_rnn",
    "gru",
    "gru_before",
    "lstm",
]


@pytest.mark.parametrize("name", NAMES)
def test_unit_matches_keras_at_every_corner(keras, name):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    shape, layer = _layers(keras)[name]
    model = _model(keras, shape, layer, rng)
    x = rng.normal(0, 1, shape)
    out_shape = model.outputs[0].shape[1:]
    corners = {0, int(np.prod(out_shape)) - 1, int(np.prod(out_shape)) // 2 + 1}
    for flat in sorted(corners):
        ex = explain(model, x, unit=flat)
        assert len(ex.units) == 1, (name, flat)
        d = ex.units[0]
        expected = float(model.predict(x[None].astype(np.float32), verbose=0).reshape(-1)[flat])
        assert d.keras_value == pytest.approx(expected, abs=1e-6)
        assert abs(d.value - expected) <= 1e-5, (name, flat, ex.text())
        assert d.index == tuple(int(i) for i in np.unravel_index(flat, out_shape))


def test_conv_detail_names_window_kernel_and_bias(keras):
    rng = np.random.default_rng(0)
    model = _model(keras, (5, 5, 2), keras.layers.Conv2D(3, 3, padding="same", name="c"), rng)
    x = rng.normal(0, 1, (5, 5, 2))
    ex = explain(model, x, unit=[0, 0, 1])
    rows = {r.label: r for r in ex.units[0].rows}
    window = np.array(rows["input window"].values).reshape(3, 3, 2)
    assert np.all(window[0] == 0) and np.all(window[:, 0] == 0)  # 'same' padding: zeros outside
    assert np.allclose(window[1:, 1:], x[:2, :2])
    kernel, bias = model.get_layer("c").get_weights()
    assert np.allclose(rows["kernel slice"].values, kernel[..., 1].ravel())
    assert rows["bias"].values[0] == pytest.approx(bias[1])
    text = ex.text()
    assert "element [0, 0, 1] of 'c', step by step:" in text
    assert "input window: x[-1:2, -1:2, :] (18 values, 0 outside the input)" in text


def test_lstm_gates_and_embedding_of_text_lstm(keras):
    model = keras.saving.load_model(MODELS / "text_lstm.keras", compile=False)
    tokens = np.arange(1, 13)
    ex = explain(model, tokens, unit=3)
    by_layer = {d.layer: d for d in ex.units}
    lstm = {r.label: r.values for r in by_layer["lstm"].rows}
    i, f, g, o = (lstm[k][0] for k in ("input gate i", "forget gate f", "candidate c̃", "output gate o"))
    c = f * lstm["c_10[3]"][0] + i * g
    assert lstm["c_11[3]"][0] == pytest.approx(c) and lstm["h_11[3]"][0] == pytest.approx(o * np.tanh(c))
    assert abs(by_layer["lstm"].value - by_layer["lstm"].keras_value) <= 1e-6
    table = model.get_layer("embedding").get_weights()[0]
    assert by_layer["embedding"].value == pytest.approx(table[1, 3])
    assert "forget gate f: sigmoid(" in ex.text()


def test_small_cnn_units(keras):
    model = keras.saving.load_model(MODELS / "small_cnn.keras", compile=False)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3))
    ex = explain(model, x, unit="3,4,2")
    assert {d.layer for d in ex.units} == {"conv1", "bn1", "pool1", "conv2"}
    assert all(abs(d.value - d.keras_value) <= 1e-5 for d in ex.units)


def test_cli_unit_is_checked(keras):
    from typer.testing import CliRunner

    from xverify.cli import app

    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(MODELS / "text_lstm.keras"),
            "--input",
            ",".join(map(str, range(1, 13))),
            "--unit",
            "two",
        ],
    )
    assert result.exit_code == 2 and "--unit 'two'" in result.output


def test_workbook_units_sheet_shows_the_same_numbers(keras, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    model = keras.saving.load_model(MODELS / "text_lstm.keras", compile=False)
    ex = explain(model, np.arange(1, 13), unit=3)
    ex.to_xlsx(tmp_path / "units.xlsx")
    rows = list(openpyxl.load_workbook(tmp_path / "units.xlsx")["units"].iter_rows(values_only=True))
    for d in ex.units:
        for r in d.rows:
            written = next(row for row in rows if row[0] == r.label and row[1] == r.formula)
            assert tuple(v for v in written[2:] if v is not None) == pytest.approx(r.values)


@pytest.mark.slow
def test_every_unit_of_mobilenet_v2_matches_keras(keras):
    """A model --unit was not written for: every Conv, depthwise Conv, BatchNorm and pooling."""
    keras.utils.set_random_seed(11)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=5)
    rng = np.random.default_rng(11)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.2, mean.shape),
                    rng.uniform(0.5, 2, var.shape),
                ]
            )
    ex = explain(model, rng.uniform(-1, 1, (32, 32, 3)), unit=[1, 1, 3])
    assert ex.max_abs_diff <= 1e-5
    kinds = {type(model.get_layer(d.layer)).__name__ for d in ex.units}
    assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization"} <= kinds
    for d in ex.units:
        assert abs(d.value - d.keras_value) <= 1e-5 * max(1.0, abs(d.keras_value)), d.layer
