"""`--mine`: which common mistake turns the model's output into the number a user computed by hand.

Every expected number here is computed independently with NumPy from get_weights(), making the
mistake on purpose, and the diagnosis must name that mistake (issue 10, point 3).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import xverify
from tests.example_models import MODELS, build
from xverify.errors import InputDataError


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def learner(keras):
    model = build.learner_sequential("input_dim")
    return model, [np.asarray(w, np.float64) for w in model.get_weights()]


def _kinds(diagnosis):
    return [(m.kind, m.call) for m in diagnosis.best.mistakes]


def test_learner_relu_skipped(learner):
    model, _ = learner
    d = xverify.explain(model, 10).diagnose(20.475)
    assert _kinds(d) == [("skip_activation", 0)]
    assert f"the ReLU of the first layer ('{model.layers[0].name}') is skipped" in d.sentence
    assert d.sentence.startswith("Your 20.475 is what the model gives when")
    assert d.best.distance < 1e-4 and d


def test_decimal_comma_as_a_spreadsheet_writes_it(learner):
    d = xverify.explain(learner[0], 10).diagnose("20,475")
    assert _kinds(d) == [("skip_activation", 0)] and d.sentence.startswith("Your 20.475 ")


def test_cli_mine(keras):
    from typer.testing import CliRunner

    from xverify.cli import app

    result = CliRunner().invoke(
        app, ["explain", str(MODELS / "learner_sequential.h5"), "--input", "10", "--mine", "20.475"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "Your 20.475 is what the model gives when the ReLU of the first layer ('dense') is "
        "skipped" in result.output
    )


def test_learner_bias_left_out(learner):
    model, (w1, _b1, w2, b2) = learner
    mine = float((np.maximum(10 * w1, 0) @ w2 + b2).ravel()[0])
    d = xverify.explain(model, 10).diagnose(f"{mine:.4f}")
    assert _kinds(d) == [("no_bias", 0)], d.text()
    assert f"the bias of the first layer ('{model.layers[0].name}') is left out" in d.sentence


def test_learner_pair_relu_skipped_and_output_bias_left_out(learner):
    model, (w1, b1, w2, _b2) = learner
    mine = float(((10 * w1 + b1) @ w2).ravel()[0])
    d = xverify.explain(model, 10).diagnose(round(mine, 4))
    assert sorted(_kinds(d)) == [("no_bias", 1), ("skip_activation", 0)], d.text()
    assert " and " in d.sentence


def test_learner_units_in_reverse_order(learner):
    model, (w1, b1, w2, b2) = learner
    mine = float((np.maximum(10 * w1 + b1, 0)[:, ::-1] @ w2 + b2).ravel()[0])
    d = xverify.explain(model, 10).diagnose(f"{mine:.5f}")
    assert _kinds(d) == [("reversed_units", 0)], d.text()


@pytest.fixture(scope="module")
def square(keras):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
    return model, [np.asarray(w, np.float64) for w in model.get_weights()]


def test_weights_transposed(square):
    model, (w1, b1, w2, b2) = square
    x = np.array([[1.0, 2.0, -0.5]])
    assert not np.allclose(w1, w1.T)
    mine = float((np.maximum(x @ w1.T + b1, 0) @ w2 + b2).ravel()[0])
    d = xverify.explain(model, x).diagnose(f"{mine:.5f}")
    assert _kinds(d) == [("transposed", 0)], d.text()
    assert "read transposed" in d.sentence


@pytest.mark.parametrize("kind", ["Normalization", "Rescaling", "BatchNormalization"])
def test_normalization_or_rescaling_ignored(keras, kind):
    keras.utils.set_random_seed(8)
    inputs = keras.Input((2,))
    layer = {
        "Normalization": lambda: keras.layers.Normalization(mean=[3.0, -1.0], variance=[4.0, 0.25]),
        "Rescaling": lambda: keras.layers.Rescaling(1 / 7, offset=0.5),
        "BatchNormalization": keras.layers.BatchNormalization,
    }[kind]()
    dense, out = keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)
    model = keras.Model(inputs, out(dense(layer(inputs))))
    if kind == "BatchNormalization":
        layer.set_weights(
            [np.array([1.5, 0.5]), np.array([0.2, -0.3]), np.array([1.0, 2.0]), np.array([2.0, 0.5])]
        )
    w1, b1, w2, b2 = [np.asarray(w, np.float64) for w in dense.get_weights() + out.get_weights()]
    sample = np.array([[4.0, 1.5]])
    mine = float((np.tanh(sample @ w1 + b1) @ w2 + b2).ravel()[0])  # the layer left out
    d = xverify.explain(model, sample).diagnose(f"{mine:.5f}")
    assert _kinds(d) == [("ignored", 0)], d.text()
    assert f"the {kind} layer" in d.sentence


def test_float16_rounding(learner):
    model, weights = learner
    h = [w.astype(np.float16) for w in weights]
    x = np.array([[10.0]], np.float16)
    mine = float((np.maximum(x @ h[0] + h[1], np.float16(0)) @ h[2] + h[3]).ravel()[0])
    assert abs(mine - 25.0047) > 0.005  # float16 really changes the number
    d = xverify.explain(model, 10).diagnose(f"{mine:.2f}")
    assert _kinds(d) == [("float16", None)], d.text()
    assert "float16" in d.sentence


def test_input_scaled_differently(learner):
    model, (w1, b1, w2, b2) = learner
    mine = float((np.maximum(200 / 255 * w1 + b1, 0) @ w2 + b2).ravel()[0])
    d = xverify.explain(model, 200).diagnose(f"{mine:.4f}")
    assert _kinds(d) == [("input_scale", None)] and d.best.mistakes[0].scale == 1 / 255
    assert "the input is divided by 255 (x = 0.784314 instead of 200)" in d.sentence


def test_own_output_is_right(learner):
    model, _ = learner
    d = xverify.explain(model, 10).diagnose("25.0047")
    assert "is the model's own output" in d.sentence and d


def test_nothing_explains_and_the_first_impossible_layer(keras):
    keras.utils.set_random_seed(9)
    inputs = keras.Input((2,))
    x = keras.layers.Dense(4, activation="leaky_relu", name="first")(inputs)
    x = keras.layers.Dense(3, activation="sigmoid", name="squash")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    w3, b3 = (np.asarray(w, np.float64) for w in model.get_layer("out").get_weights())
    top = float(np.maximum(w3, 0).sum() + b3[0])  # the largest output any sigmoid values allow
    d = xverify.explain(model, [0.5, -1.0]).diagnose(round(top + 5, 3))
    assert d.best is None and not d
    assert "None of the" in d.sentence
    assert "cannot arise after layer 'squash' (layer 2)" in d.impossible
    assert f"{top:.4g}]" in d.impossible
    assert "mistakes tried" in d.text()


def test_mine_must_match_the_output_size(learner):
    with pytest.raises(InputDataError, match="1 output value"):
        xverify.explain(learner[0], 10).diagnose("1, 2")
    with pytest.raises(InputDataError, match="--mine"):
        xverify.explain(learner[0], 10).diagnose("twenty")
