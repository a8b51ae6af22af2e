"""Every form of model `xverify explain` must follow layer by layer (issue 10, point 1).

The learner's question: ``Sequential([Dense(16, activation='relu', input_dim=1), Dense(1)])``
predicting ~2x + 5 gives 25.0047 at x = 10, and 20.4750 with the ReLU left out. Before the graph
was read from Keras' nodes, this model was explained as one opaque "whole model" step.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.example_models import MODELS, build
from xverify.explain import explain


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _assert_learner_text(ex, hidden: str):
    """All 16 hidden units spelled out, 12 clamped, 25.0047 by hand and by TF, 20.4750 without."""
    text = ex.text()
    lines = [row for row in text.splitlines() if re.match(rf"\s+{re.escape(hidden)}\[\d+\]:", row)]
    assert len(lines) == 16, text
    assert sum(row.endswith("(clamped)") for row in lines) == 12
    assert "Final output (NumPy, float64):      25.0047" in text
    assert "TensorFlow's prediction (float32):  25.0047" in text
    assert "20.4750 without the activations" in text
    assert abs(float(ex.output.ravel()[0]) - 25.0047) < 1e-4
    assert abs(float(ex.output_without_activations.ravel()[0]) - 20.4750) < 1e-4
    assert ex.max_abs_diff <= 1e-5
    assert "whole model" not in text


@pytest.mark.parametrize("form", ["input_dim", "input_shape", "input", "none"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_learner_sequential_saved_both_ways(keras, tmp_path, form, suffix):
    model = build.learner_sequential(form)
    path = tmp_path / f"learner{suffix}"
    model.save(path)
    ex = explain(path, 10)
    hidden = model.layers[0].name
    _assert_learner_text(ex, hidden)
    assert [s.name for s in ex.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("form", ["input_dim", "input_shape", "input", "none"])
def test_learner_sequential_in_memory(keras, form):
    model = build.learner_sequential(form)
    _assert_learner_text(explain(model, 10), model.layers[0].name)


def test_committed_learner_files(keras):
    for suffix in (".keras", ".h5"):
        _assert_learner_text(explain(MODELS / f"learner_sequential{suffix}", 10), "dense")


def test_sequential_never_built_is_built_from_the_input(keras):
    keras.utils.set_random_seed(3)
    model = build.learner_sequential("none", build=False)
    assert not model.built
    ex = explain(model, [10])
    predicted = model.predict(np.array([[10.0]], np.float32), verbose=0)
    assert np.abs(ex.output - predicted).max() <= 1e-5
    assert len([s for s in ex.steps if s.layer == model.layers[0].name]) == 16


def _nested_models(keras):
    inner = build.learner_sequential("input_dim")
    x = keras.Input((1,), name="x")
    functional = keras.Model(x, keras.layers.Dense(2, activation="tanh", name="head")(inner(x)))
    seq_in_seq = keras.Sequential(
        [
            keras.Input((1,)),
            build.learner_sequential("input_shape"),
            keras.layers.Dense(1, activation="sigmoid", name="squash"),
        ]
    )
    return {"functional": functional, "sequential": seq_in_seq}


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_nested_models_are_flattened_into_their_layers(keras, tmp_path, kind):
    model = _nested_models(keras)[kind]
    path = tmp_path / "nested.keras"
    model.save(path)
    for source in (model, path):
        ex = explain(source, 10)
        assert all(s.by_hand for s in ex.layers), [s.formula for s in ex.layers]
        assert len(ex.layers) == 3
        inner = ex.layers[0].name
        assert "/" in inner  # "sequential_3/dense_7": the nested model's name, then the layer's
        assert len([s for s in ex.steps if s.layer == inner]) == 16
        predicted = model.predict(np.array([[10.0]], np.float32), verbose=0)
        assert np.abs(ex.output - predicted).max() <= 1e-5
        assert sum(s.clamped for s in ex.steps if s.layer == inner) == 12


def test_shared_layer_is_explained_once_and_called_out_where_reused(keras):
    keras.utils.set_random_seed(4)
    x = keras.Input((3,))
    shared = keras.layers.Dense(3, activation="relu", name="shared")
    y = keras.layers.Dense(1, name="out")(shared(shared(x)))
    model = keras.Model(x, y)
    ex = explain(model, [1.0, -2.0, 0.5])
    assert [s.name for s in ex.layers] == ["shared", "shared (call 2)", "out"]
    assert ex.layers[1].repeat_of == "shared"
    assert ex.max_abs_diff <= 1e-5
    text = ex.text()
    assert "used 2 times" in text
    assert "the shared layer 'shared' again" in text
    second = [s for s in ex.steps if s.layer == "shared (call 2)"]
    first_out = ex.layers[0].output.ravel()
    assert [s.inputs for s in second] == [tuple(first_out)] * 3


def test_shared_nested_model_gets_separate_values_per_call(keras):
    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="relu")], name="block")
    x = keras.Input((2,))
    model = keras.Model(x, inner(inner(x)))
    ex = explain(model, [1.5, -0.5])
    predicted = model.predict(np.array([[1.5, -0.5]], np.float32), verbose=0)
    assert np.abs(ex.output - predicted).max() <= 1e-5
    assert len(ex.layers) == 2 and ex.layers[1].repeat_of == ex.layers[0].name


def test_trained_model(keras):
    ex = explain(MODELS / "trained_regression.keras", 10)
    assert abs(float(ex.output.ravel()[0]) - 25) < 0.5
    assert ex.max_abs_diff <= 1e-5 and len(ex.steps) == 17


def test_subclassed_model_says_why_it_is_not_followed(keras):
    class Twice(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x) * 2

    model = Twice()
    model(np.zeros((1, 2), np.float32))
    ex = explain(model, [1.0, 2.0])
    assert "subclassed model" in ex.text()
    predicted = model.predict(np.array([[1.0, 2.0]], np.float32), verbose=0)
    assert np.abs(ex.output - predicted).max() <= 1e-6


def test_cli_on_the_learners_files(keras):
    from typer.testing import CliRunner

    from xverify.cli import app

    for suffix in (".keras", ".h5"):
        result = CliRunner().invoke(
            app, ["explain", str(MODELS / f"learner_sequential{suffix}"), "--input", "10"]
        )
        assert result.exit_code == 0, result.output
        assert "20.4750 without the activations" in result.output
        assert result.output.count("(clamped)") == 12


def test_graph_with_a_keras_ops_node_from_a_mask(keras):
    """Embedding(mask_zero=True) puts a NotEqual operation (no layer, no weights) in the graph."""
    keras.utils.set_random_seed(6)
    L = keras.layers
    model = keras.Sequential(
        [keras.Input((6,), dtype="int32"), L.Embedding(20, 4, mask_zero=True), L.LSTM(3), L.Dense(1)]
    )
    tokens = np.array([3, 5, 7, 0, 0, 0])
    ex = explain(model, tokens)
    predicted = model.predict(tokens[None].astype(np.int32), verbose=0)
    assert np.abs(ex.output - predicted).max() <= 1e-6
    assert "NotEqual" in {s.kind for s in ex.layers}
    assert ex.layers[-1].by_hand


def test_multi_output_model_says_which_output(keras):
    keras.utils.set_random_seed(6)
    x = keras.Input((2,))
    h = keras.layers.Dense(3, activation="relu")(x)
    model = keras.Model(x, [keras.layers.Dense(1, name="a")(h), keras.layers.Dense(2, name="b")(h)])
    ex = explain(model, [1.0, 2.0])
    assert np.abs(ex.output - model.predict(np.array([[1.0, 2.0]]), verbose=0)[0]).max() <= 1e-6
    assert "The model has 2 outputs; the one shown is the first" in ex.text()
    assert sorted(s.name for s in ex.layers[1:]) == ["a", "b"]
