"""The --xlsx workbook holds live formulas: recomputed by an independent engine (the `formulas`
package, not xverify), it must equal TensorFlow for any x and after any weight is edited."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.example_models import MODELS, build
from xverify.explain import explain

formulas = pytest.importorskip("formulas")
openpyxl = pytest.importorskip("openpyxl")

XS = [10.0, -3.5, 0.0, 0.731, 42.0]


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _cells(path, sheet="model"):
    """(the x cells, the output cells, the cells without activations) of the model sheet."""
    rows = list(openpyxl.load_workbook(path)[sheet].iter_rows(values_only=True))
    outputs = [i + 1 for i, r in enumerate(rows) if isinstance(r[0], str) and r[0].startswith("output[")]
    xs = [i + 1 for i, r in enumerate(rows) if isinstance(r[0], str) and r[0].startswith("x[")]
    return [f"B{r}" for r in xs], [f"B{r}" for r in outputs], [f"C{r}" for r in outputs]


def _recompute(path, inputs=None, outputs=()):
    """Recompute the workbook with `formulas`; ``inputs`` maps model-sheet cells to new values."""
    name = Path(path).name

    def ref(cell, sheet="MODEL"):
        return f"'[{name}]{sheet}'!{cell}"

    model = formulas.ExcelModel().loads(str(path)).finish()
    solution = model.calculate(
        inputs={ref(c): v for c, v in (inputs or {}).items()}, outputs=[ref(c) for c in outputs]
    )
    return np.array([float(np.ravel(solution[ref(c)].value)[0]) for c in outputs])


def _predict(model, x):
    shape = (1, *model.inputs[0].shape[1:])
    return model.predict(np.asarray(x, np.float32).reshape(shape), verbose=0).ravel()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_learner_workbook_recomputes_for_five_x(keras, tmp_path, suffix):
    model = keras.saving.load_model(MODELS / f"learner_sequential{suffix}", compile=False)
    path = tmp_path / "learner.xlsx"
    explain(model, 10).to_xlsx(path)
    x_cells, out_cells, without_cells = _cells(path)
    assert len(x_cells) == 1 and len(out_cells) == 1
    first = _recompute(path, outputs=out_cells + without_cells)
    assert first[0] == pytest.approx(25.0047, abs=1e-4) and first[1] == pytest.approx(20.4750, abs=1e-4)
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.get_weights())
    for x in XS:
        got, without = _recompute(path, {x_cells[0]: x}, out_cells + without_cells)
        assert abs(got - _predict(model, [x])[0]) <= 1e-5, x
        assert without == pytest.approx(float(((x * w1 + b1) @ w2 + b2).ravel()[0]), abs=1e-9)


def test_workbook_formulas_are_readable(keras, tmp_path):
    path = tmp_path / "learner.xlsx"
    explain(MODELS / "learner_sequential.keras", 10).to_xlsx(path)
    book = openpyxl.load_workbook(path)
    sheet = book["model"]
    texts = [c.value for row in sheet.iter_rows() for c in row if isinstance(c.value, str)]
    assert any(t.startswith("=SUMPRODUCT(") and "'dense'!" in t for t in texts)
    assert sum(t.startswith("=MAX(0,") for t in texts) == 16
    kernel = book["dense"]
    assert kernel["P2"].value == pytest.approx(build.SEED_KERNEL_1[15], abs=1e-7)  # a row per input
    assert kernel["B5"].value == pytest.approx(build.SEED_BIAS_1[1], abs=1e-7)  # bias under it


def test_edited_weight_cell_matches_keras_with_that_weight(keras, tmp_path):
    model = build.learner_sequential("input_dim")
    path = tmp_path / "learner.xlsx"
    explain(model, 10).to_xlsx(path)
    book = openpyxl.load_workbook(path)
    hidden, output = (layer.name for layer in model.layers)
    book[hidden]["C2"] = 0.25  # kernel[0, 2]: unit 2 of the hidden layer, clamped at x = 10
    book[output]["A7"] = -1.5  # kernel[5, 0] of the output layer
    book.save(path)
    weights = model.get_weights()
    weights[0][0, 2], weights[2][5, 0] = 0.25, -1.5
    model.set_weights(weights)
    x_cells, out_cells, _ = _cells(path)
    for x in (10.0, 2.0):
        got = _recompute(path, {x_cells[0]: x}, out_cells)
        assert abs(got[0] - _predict(model, [x])[0]) <= 1e-5


@pytest.mark.parametrize(
    "specs",
    [
        [(4, "gelu"), (3, "softmax")],
        [(5, "relu6"), (5, "leaky_relu"), (5, "elu"), (5, "selu"), (2, None)],
        [(5, "silu"), (5, "swish"), (5, "sigmoid"), (5, "hard_sigmoid"), (5, "tanh"), (1, None)],
        [(5, "softplus"), (5, "softsign"), (5, "exponential"), (5, "hard_silu"), (5, "mish"), (2, None)],
    ],
    ids=["gelu-softmax", "relu-family", "smooth", "soft"],
)
def test_every_activation_formula_matches_tensorflow(keras, tmp_path, specs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    x = inputs
    for units, activation in specs:
        x = keras.layers.Dense(units, activation=activation)(x)
    model = keras.Model(inputs, x)
    path = tmp_path / "acts.xlsx"
    explain(model, [2.5, -3.0, 1.25]).to_xlsx(path)
    x_cells, out_cells, _ = _cells(path)
    for sample in ([2.5, -3.0, 1.25], [0.1, 4.0, -2.0]):
        got = _recompute(path, dict(zip(x_cells, sample)), out_cells)
        assert np.abs(got - _predict(model, sample)).max() <= 1e-5


def test_standalone_activation_layers_and_shared_layer(keras, tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((3,))
    shared = keras.layers.Dense(3, name="shared")
    x = keras.layers.ReLU(max_value=0.5, negative_slope=0.1)(shared(inputs))
    x = keras.layers.LeakyReLU()(shared(x))
    x = keras.layers.Dropout(0.3)(keras.layers.ELU(alpha=0.5)(x))
    x = keras.layers.Activation("gelu")(x)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(4)(x)))
    path = tmp_path / "layers.xlsx"
    explain(model, [2.5, -3.0, 1.25]).to_xlsx(path)
    assert openpyxl.load_workbook(path).sheetnames.count("shared") == 1
    x_cells, out_cells, _ = _cells(path)
    sample = [1.0, 2.0, -0.5]
    got = _recompute(path, dict(zip(x_cells, sample)), out_cells)
    assert np.abs(got - _predict(model, sample)).max() <= 1e-5


def test_conv_workbook_has_keras_values_and_live_dense(keras, tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5, 5, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    sample = np.random.default_rng(0).uniform(-1, 1, (5, 5, 1))
    path = tmp_path / "cnn.xlsx"
    explain(model, sample).to_xlsx(path)
    _, out_cells, _ = _cells(path)
    got = _recompute(path, outputs=out_cells)
    assert np.abs(got - _predict(model, sample)).max() <= 1e-5
    sheet = openpyxl.load_workbook(path)["model"]
    notes = [c.value for c in sheet["D"] if isinstance(c.value, str)]
    assert any(n.startswith("value computed by Keras: Conv2D") for n in notes)


def test_small_cnn_workbook_is_written(keras, tmp_path):
    model = keras.saving.load_model(MODELS / "small_cnn.keras", compile=False)
    ex = explain(model, np.random.default_rng(0).uniform(0, 1, (16, 16, 3)))
    ex.to_xlsx(tmp_path / "cnn.xlsx")
    book = openpyxl.load_workbook(tmp_path / "cnn.xlsx")
    assert book.sheetnames == ["model", "bn1", "classes"]
    rows = list(book["model"].iter_rows(values_only=True))
    assert next(r[1] for r in rows if r[0] == "output[0]").startswith("=$C$")  # a live formula


def test_rescaling_and_normalization_layers_stay_live(keras, tmp_path):
    """The TensorFlow regression tutorial's model: Normalization first; changing x recomputes."""
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    norm = keras.layers.Normalization()
    norm.adapt(rng.normal(5, 2, (50, 2)))
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Rescaling(0.5, offset=1.0),
            norm,
            keras.layers.Dense(4, activation="relu"),
            bn,
            keras.layers.Dense(1),
        ]
    )
    bn.set_weights(
        [rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.3, 4), rng.normal(0, 0.3, 4), rng.uniform(0.5, 2.0, 4)]
    )
    ex = explain(model, [4.0, 7.0])
    assert all(s.by_hand for s in ex.layers) and ex.max_abs_diff <= 1e-5
    assert "y = (x − mean) / √variance" in ex.text()
    path = tmp_path / "norm.xlsx"
    ex.to_xlsx(path)
    x_cells, out_cells, _ = _cells(path)
    for sample in ([4.0, 7.0], [-1.0, 12.5]):
        got = _recompute(path, dict(zip(x_cells, sample)), out_cells)
        assert abs(got[0] - _predict(model, sample)[0]) <= 1e-5


def test_missing_openpyxl_is_exit_2_with_the_fix(keras, tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from xverify.cli import app

    monkeypatch.setitem(sys.modules, "openpyxl", None)
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(MODELS / "learner_sequential.keras"),
            "--input",
            "10",
            "--xlsx",
            str(tmp_path / "o.xlsx"),
        ],
    )
    assert result.exit_code == 2
    assert "pip install 'xverify[xlsx]'" in result.output and "Traceback" not in result.output
