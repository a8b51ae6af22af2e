"""xverify.explain: the hand calculation of one input, checked against TensorFlow and by hand."""

from __future__ import annotations

import csv
import functools
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from xverify.errors import InputDataError, MissingDependencyError
from xverify.explain import explain

MODELS = Path(__file__).resolve().parent.parent / "models"
SEED = MODELS / "seed_regression.keras"


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def seed(keras):
    return explain(SEED, 10)


@pytest.fixture(scope="module")
def seed_weights(keras):
    model = keras.saving.load_model(SEED, compile=False)
    return [np.asarray(w, np.float64) for w in model.get_weights()]


def test_seed_output_equals_tensorflow(seed, keras):
    model = keras.saving.load_model(SEED, compile=False)
    predicted = model.predict(np.array([[10.0]], np.float32), verbose=0)
    assert seed.output.shape == predicted.shape
    assert np.abs(seed.output - predicted).max() <= 1e-5
    assert np.abs(seed.tensorflow_output - predicted).max() <= 1e-6
    assert seed.max_abs_diff <= 1e-5
    assert abs(float(seed.output.ravel()[0]) - 25.0047) < 1e-3


def test_seed_text_shows_every_hidden_unit_and_marks_clamped(seed, seed_weights):
    text = seed.text()
    kernel, bias = seed_weights[0][0], seed_weights[1]
    z = 10 * kernel + bias
    for unit in range(16):
        line = next(row for row in text.splitlines() if row.strip().startswith(f"hidden[{unit}]:"))
        assert f"10 × {kernel[unit]:.4f}" in line
        assert ("(clamped)" in line) == (z[unit] < 0), line
        assert line.endswith("0.0000 (clamped)") or z[unit] >= 0
    assert not re.search(r"\[/?(bold|red|green|dim)", text)  # plain text: no rich markup
    assert "25.0047" in text


def test_seed_steps_rows_match_by_hand(seed, seed_weights):
    hidden = [s for s in seed.steps if s.layer == "hidden"]
    assert len(hidden) == 16 and len(seed.steps) == 17
    z = 10 * seed_weights[0][0] + seed_weights[1]
    assert np.allclose([s.z for s in hidden], z)
    assert np.allclose([s.a for s in hidden], np.maximum(z, 0))
    assert [s.changed for s in hidden] == list(z < 0)
    assert [layer.name for layer in seed.layers] == ["hidden", "output"]


def test_seed_without_activations_is_the_classic_mistake(seed, seed_weights):
    w1, b1, w2, b2 = seed_weights
    by_hand = (np.array([[10.0]]) @ w1 + b1) @ w2 + b2  # the learner's calculation, relu forgotten
    assert np.allclose(seed.output_without_activations, by_hand, atol=1e-9)
    assert abs(float(by_hand.ravel()[0]) - 25.0047) > 1
    text = seed.text()
    assert (
        f"The output would be {float(by_hand.ravel()[0]):.4f} without the activations "
        "(a = z in every hidden layer) instead of 25.0047"
    ) in text
    assert "the relu of layer 'hidden' changed" in text


def test_csv_round_trip(seed, tmp_path):
    path = tmp_path / "steps.csv"
    seed.to_csv(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 17
    assert [r["layer"] for r in rows] == ["hidden"] * 16 + ["output"]
    assert list(rows[0]) == ["layer", "unit", "inputs", "weights", "bias", "z", "activation", "a", "changed"]
    for row, step in zip(rows, seed.steps):
        assert int(row["unit"]) == step.unit
        assert float(row["z"]) == pytest.approx(step.z) and float(row["a"]) == pytest.approx(step.a)
        assert row["changed"] == str(step.changed)


def test_xlsx_without_openpyxl_names_the_fix(seed, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # makes `import openpyxl` raise ImportError
    with pytest.raises(MissingDependencyError, match="pip install openpyxl"):
        seed.to_xlsx(tmp_path / "steps.xlsx")


def test_wrong_number_of_values_names_expected_and_found(keras):
    with pytest.raises(InputDataError) as caught:
        explain(SEED, [1, 2])
    message = str(caught.value)
    assert "seed_regression.keras" in message
    assert re.search(r"expected 1 input value", message) and "found 2" in message
    assert "--input" in message


def test_non_numeric_and_multi_input_are_input_errors(keras):
    with pytest.raises(InputDataError, match="must be numbers"):
        explain(SEED, "ten")
    a, b = keras.Input((2,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(InputDataError, match="single-input"):
        explain(model, [1, 2, 3, 4, 5])


def test_accepts_arrays_and_strings(keras):
    assert explain(SEED, np.array([[10.0]])).max_abs_diff <= 1e-5
    assert np.allclose(explain(SEED, "10").output, explain(SEED, 10.0).output)


def _doubled(t):
    """An activation xverify does not know: the layer must become a formula layer."""
    return t * 2.0


def _dense_chain(keras, n_in, specs):
    inputs = keras.Input((n_in,))
    x = inputs
    for units, activation in specs:
        x = keras.layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, x)


def _standalone_layers(keras):
    inputs = keras.Input((3,))
    x = keras.layers.Dense(6, name="d")(inputs)
    x = keras.layers.ReLU(max_value=0.5, negative_slope=0.1, name="relu")(x)
    x = keras.layers.LeakyReLU(name="leaky")(keras.layers.Dense(6)(x))
    x = keras.layers.ELU(alpha=0.5, name="elu")(keras.layers.Dense(6)(x))
    x = keras.layers.Activation("gelu", name="act")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probs")(keras.layers.Dense(4)(x)))


@pytest.fixture(scope="module")
def activation_models(keras):
    keras.utils.set_random_seed(0)
    approx_gelu = functools.partial(keras.activations.gelu, approximate=True)
    return {
        "gelu_softmax": _dense_chain(keras, 3, [(4, "gelu"), (3, "softmax")]),
        "relu_family": _dense_chain(
            keras, 3, [(5, "relu6"), (5, "leaky_relu"), (5, "elu"), (5, "selu"), (2, None)]
        ),
        "smooth": _dense_chain(
            keras, 3, [(5, "silu"), (5, "swish"), (5, "sigmoid"), (5, "hard_sigmoid"), (5, "tanh"), (1, None)]
        ),
        "soft": _dense_chain(keras, 3, [(5, "softplus"), (5, "softsign"), (5, "exponential"), (2, "linear")]),
        "approx_gelu": _dense_chain(keras, 3, [(6, approx_gelu), (2, None)]),
        "standalone": _standalone_layers(keras),
    }


@pytest.mark.parametrize(
    "name,scale",
    [
        ("gelu_softmax", 1),
        ("relu_family", 10),
        ("smooth", 1),
        ("soft", 1),
        ("approx_gelu", 1),
        ("standalone", 1),
    ],
)
def test_activations_match_tensorflow(activation_models, name, scale):
    model = activation_models[name]
    ex = explain(model, [2.5 * scale, -3.0 * scale, 1.25 * scale])
    assert ex.max_abs_diff <= 1e-5, ex.text()
    assert all(layer.by_hand for layer in ex.layers), [layer.formula for layer in ex.layers]
    for layer in ex.layers:  # each layer by hand from the previous layer: no drift to hide
        assert layer.tf_max_abs_diff is None or layer.tf_max_abs_diff <= 1e-5, layer.name
    assert ex.steps and ex.text()
    if name == "relu_family":  # large inputs so relu6 clamps at 6 as well as at 0
        assert {s.a for s in ex.steps if s.clamped and s.activation == "relu6"} == {0.0, 6.0}


def test_standalone_layers_are_spelled_out(activation_models):
    ex = explain(activation_models["standalone"], [2.5, -3.0, 1.25])
    text = ex.text()
    assert "Dropout(rate 0.5) is the identity at inference" in text
    assert re.search(r"probs\[0\]: softmax\(", text)
    assert {s.layer for s in ex.steps} >= {"relu", "leaky", "elu", "act", "probs"}


def test_unknown_activation_becomes_a_formula_layer(keras):
    keras.utils.set_random_seed(0)
    model = _dense_chain(keras, 2, [(3, _doubled), (1, "relu")])
    ex = explain(model, [1.0, -1.0])
    assert not ex.layers[0].by_hand and "computed by Keras" in ex.layers[0].formula
    assert ex.layers[1].by_hand and ex.max_abs_diff <= 1e-5


def test_small_cnn_explains_without_failing(keras):
    model = keras.saving.load_model(MODELS / "small_cnn.keras", compile=False)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 3))
    ex = explain(model, x)
    predicted = model.predict(x[None].astype(np.float32), verbose=0)
    assert np.abs(ex.output - predicted).max() <= 1e-5
    assert np.abs(ex.tensorflow_output - predicted).max() <= 1e-6
    kinds = {layer.name: layer for layer in ex.layers}
    assert not kinds["conv1"].by_hand and "kernel[3x3x3x8]" in kinds["conv1"].formula
    assert kinds["relu1"].by_hand and kinds["classes"].by_hand
    assert kinds["conv1"].min <= kinds["conv1"].mean <= kinds["conv1"].max
    text = ex.text()
    assert "... 2043 more units not shown" in text and "... 5 more units not shown" in text
    assert "without the activations" in text
    assert np.isfinite(ex.output_without_activations).all()
