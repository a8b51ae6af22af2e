"""xverify.check end to end on the example models, with real TensorFlow, tf2onnx and ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

import xverify
from tests import faults
from xverify.errors import MismatchError, UnsupportedOpError, UsageError
from xverify.report.records import OracleDistance

EXAMPLES = ("seed_regression", "trained_regression", "small_cnn", "text_lstm")


@pytest.fixture(scope="module")
def reports(example_models):
    """One full check per example model (all three runtimes, layers, oracle)."""
    return {
        name: xverify.check(example_models.keras(name), onnx=example_models.onnx(name)) for name in EXAMPLES
    }


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_passes_with_three_runtimes(reports, name):
    report = reports[name]
    assert report.passed, report.failures()
    pairs = {(d.a, d.b) for d in report.comparisons}
    assert {
        ("onnxruntime", "tensorflow"),
        ("numpy", "tensorflow"),
        ("numpy", "onnxruntime"),
        ("onnxruntime-opt", "onnxruntime"),
    } <= pairs
    assert report.weights and all(w.passed for w in report.weights)
    assert report.layers and all(layer.passed for layer in report.layers)
    assert report.first_divergence is None
    assert {row.runtime for row in report.oracle} == {
        "numpy",
        "onnxruntime",
        "onnxruntime-opt",
        "tensorflow",
    }


def test_json_report_has_the_contract_fields(reports):
    data = json.loads(json.dumps(reports["small_cnn"].to_dict()))
    assert data["schema"] == "xverify.check/1" and data["passed"] is True
    for key in (
        "model",
        "inputs",
        "tolerance",
        "comparisons",
        "weights",
        "layers",
        "first_divergence",
        "versions",
        "timings",
    ):
        assert key in data
    (tensor,) = data["inputs"]["tensors"]
    assert {k: tensor[k] for k in ("name", "shape", "dtype")} == {
        "name": "image",
        "shape": [None, 16, 16, 3],
        "dtype": "float32",
    }
    assert tensor["dim_names"][1:] == [None, None, None]  # the batch dim's name is tf2onnx's
    assert set(data["comparisons"][0]) >= {
        "a",
        "b",
        "output",
        "max_abs_diff",
        "max_rel_diff",
        "mean_abs_diff",
        "mismatch_fraction",
        "passed",
    }
    assert set(data["weights"][0]) >= {
        "layer",
        "name",
        "shape",
        "onnx_initializer",
        "transform",
        "max_abs_diff",
        "passed",
    }
    assert data["versions"]["tensorflow"] and data["versions"]["tf2onnx"]


def test_numpy_output_matches_tensorflow_by_hand(example_models):
    """The seed model at x = 10, recomputed here from get_weights(): an independent reference."""
    keras_model = example_models.keras("seed_regression")
    w1, b1, w2, b2 = keras_model.get_weights()
    expected = np.maximum(10.0 * w1 + b1, 0) @ w2 + b2
    outs = xverify.runtimes.NumpyRuntime(example_models.onnx("seed_regression"), "float64").run(
        {"x": np.array([[10.0]], np.float32)}
    )
    np.testing.assert_allclose(outs["output"], expected, rtol=1e-6)
    assert abs(float(expected[0, 0]) - 25.0047) < 1e-3


def test_altered_weight_fails_even_when_named(example_models, tmp_path):
    faulty = faults.alter_initializer(
        example_models.onnx("seed_regression"), "MatMul", 1, "xvl0", delta=0.5, index=3
    )
    report = xverify.check(example_models.keras("seed_regression"), onnx=faulty)
    assert not report
    bad = [w for w in report.weights if not w.passed]
    assert [(w.layer, w.name) for w in bad] == [("hidden", "kernel")]
    assert bad[0].max_abs_diff == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(MismatchError, match="hidden"):
        report.raise_if_failed()


def test_weight_difference_fails_even_if_outputs_agree(example_models):
    """A kernel element of a unit that the ReLU always clamps changes no output, yet must fail."""
    faulty = faults.alter_initializer(
        example_models.onnx("seed_regression"), "MatMul", 1, "xvl1", delta=1e-2, index=0
    )  # unit 0 of the output kernel
    report = xverify.check(
        example_models.keras("seed_regression"),
        onnx=faulty,
        inputs={"x": np.full((4, 1), 5.0, np.float32)},
        layers=False,
    )
    assert all(report.comparisons) and not report.passed


def test_onnx_file_alone_compares_numpy_and_onnxruntime(example_models, onnx_dir):
    path = example_models.onnx_file("small_cnn", onnx_dir)
    report = xverify.check(path)
    assert report.passed and {d.b for d in report.comparisons} == {"onnxruntime"}
    assert any("tensorflow skipped" in n for n in report.notes)


def test_unsupported_op_is_exit_2_error(example_models):
    model = faults.replace_op(example_models.onnx("small_cnn"), "Softmax", "RandomUniformLike")
    with pytest.raises(UnsupportedOpError, match="RandomUniformLike"):
        xverify.check(example_models.keras("small_cnn"), onnx=model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"samples": 0}, "positive"),
        ({"samples": -2}, "positive"),
        ({"runtimes": "numpy,tvm"}, "tvm"),
        ({"runtimes": ["tensorflow"], "oracle": False}, "two"),
        ({"atol": -1}, ">= 0"),
    ],
)
def test_bad_arguments(example_models, kwargs, match):
    with pytest.raises(UsageError, match=match):
        xverify.check(
            example_models.keras("seed_regression"), onnx=example_models.onnx("seed_regression"), **kwargs
        )


def test_cache_hit_and_corrupt_entry_rebuilt(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("XVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    path = models_dir / "seed_regression.keras"
    first = xverify.check(path, layers=False)
    second = xverify.check(path, layers=False)
    assert "conversion cached" in first.notes and "conversion reused from cache" in second.notes
    entry = next((tmp_path / "cache").glob("*.onnx"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated: must be detected, not trusted
    third = xverify.check(path, layers=False)
    assert "conversion cached" in third.notes and third.passed
    assert xverify.check(path, layers=False, cache=False).notes == ()


@pytest.mark.slow
def test_savedmodel_directory(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="tanh")(inputs))
    model.export(str(tmp_path / "exported"), verbose=False)
    report = xverify.check(tmp_path / "exported")
    assert report.passed and report.model.format == "savedmodel"
    assert {d.b for d in report.comparisons} >= {"tensorflow"}


def test_oracle_names_the_runtime_that_drifted(example_models, monkeypatch):
    """An ONNX Runtime whose relu1 output drifts by 1e-2: the runtimes of the same graph disagree
    there, and the float64 oracle says onnxruntime is the one farther from exact arithmetic."""
    from xverify.runtimes import OnnxRuntime

    onnx_model = example_models.onnx("small_cnn")
    relu = next(n.output[0] for n in onnx_model.graph.node if n.op_type == "Relu" and "xvl2" in n.name)
    original = OnnxRuntime.run

    def drifting(self, feeds, taps=(), **kwargs):
        out = original(self, feeds, taps, **kwargs)
        if relu in out and self.optimization == "disabled":
            out[relu] = out[relu] + np.float32(1e-2)
        return out

    monkeypatch.setattr(OnnxRuntime, "run", drifting)
    report = xverify.check(example_models.keras("small_cnn"), onnx=onnx_model)
    first = report.first_divergence
    assert first.layer == "relu1"
    assert "onnxruntime is farther from the float64 oracle" in first.diverged
    assert first.oracle_distances["onnxruntime"] > 1e-3 > first.oracle_distances["numpy"]


def test_output_disagreement_names_the_runtime_farther_from_oracle():
    from xverify.check import _farther_from_oracle
    from xverify.compare import compare

    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.5])
    comparisons = [
        compare(a, b, atol=0, rtol=0, a_name="numpy", b_name="onnxruntime", output="y"),
        compare(a, b, atol=0, rtol=0, a_name="numpy", b_name="tensorflow", output="y"),
    ]
    rows = [
        OracleDistance("numpy", "y", max_abs_diff=1e-7, max_rel_diff=1e-7, mean_abs_diff=1e-7, passed=True),
        OracleDistance(
            "onnxruntime", "y", max_abs_diff=0.5, max_rel_diff=0.5, mean_abs_diff=0.25, passed=False
        ),
        OracleDistance(
            "tensorflow", "y", max_abs_diff=0.5, max_rel_diff=0.5, mean_abs_diff=0.25, passed=False
        ),
    ]
    notes = _farther_from_oracle(comparisons, rows)
    assert notes == [
        "numpy and onnxruntime disagree on 'y': onnxruntime is farther from the float64 "
        "oracle (0.5 against 1e-07 for numpy)"
    ]


def test_equal_oracle_distances_take_no_side():
    """Regression: two runtimes equally far from the oracle were reported as one being "farther"
    ("onnxruntime is farther (1.61e-07 against 1.61e-07)")."""
    from xverify.check import _farther_from_oracle
    from xverify.compare import compare

    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.0 + 3.2e-7])
    comparisons = [compare(a, b, atol=0, rtol=0, a_name="onnxruntime-opt", b_name="onnxruntime", output="y")]
    rows = [
        OracleDistance(
            "onnxruntime-opt",
            "y",
            max_abs_diff=1.61e-7,
            max_rel_diff=1.61e-7,
            mean_abs_diff=8e-8,
            passed=True,
        ),
        OracleDistance(
            "onnxruntime", "y", max_abs_diff=1.61e-7, max_rel_diff=1.61e-7, mean_abs_diff=8e-8, passed=True
        ),
    ]
    notes = _farther_from_oracle(comparisons, rows)
    assert notes == [
        "onnxruntime-opt and onnxruntime disagree on 'y': both are 1.61e-07 from the "
        "float64 oracle, which therefore takes neither side"
    ]
