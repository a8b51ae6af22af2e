"""The runtime contract: the registry, pairs, absent runtimes, and the two runtimes added through it
(OpenVINO on the ONNX model, TFLite on the Keras model) compared with trusted references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

import xverify
from tests import faults
from xverify.cli import app
from xverify.compare import compare
from xverify.errors import MissingDependencyError
from xverify.report.model import LayerDiff
from xverify.runtimes import RUNTIMES, Pair, PairDiffs, pair, pairs, select

FIVE = "numpy,onnxruntime,tensorflow,openvino,tflite"
needs_openvino = pytest.mark.skipif(not RUNTIMES["openvino"].installed(), reason="openvino not installed")


@pytest.fixture
def openvino_absent(monkeypatch):
    """The registry as on a machine without OpenVINO (the module it needs cannot be found)."""
    absent = dataclasses.replace(RUNTIMES["openvino"], modules=("xverify_no_such_module",))
    monkeypatch.setitem(RUNTIMES, "openvino", absent)


def test_registry_declares_every_runtime_once():
    assert list(RUNTIMES) == ["numpy", "onnxruntime", "tensorflow", "openvino", "tflite"]
    assert sorted(spec.rank for spec in RUNTIMES.values()) == list(range(len(RUNTIMES)))
    assert {n for n, s in RUNTIMES.items() if s.taps == "keras"} == {"tensorflow", "tflite"}
    assert [n for n, s in RUNTIMES.items() if s.streams] == ["numpy"]
    assert xverify.check.__globals__["RUNTIME_NAMES"] == tuple(RUNTIMES)  # one registry


def test_pairs_put_the_reference_side_last():
    assert [str(p) for p in pairs(["numpy", "onnxruntime", "tensorflow"])] == [
        "onnxruntime|tensorflow",
        "numpy|tensorflow",
        "numpy|onnxruntime",
    ]
    assert pair("tensorflow", "openvino") == pair("openvino", "tensorflow") == Pair("openvino", "tensorflow")
    assert "tflite" in pair("tflite", "numpy") and pair("tflite", "numpy").b == "numpy"


def test_layer_diffs_answer_the_json_keys_in_their_order_only():
    layer = _diff("d", {"tensorflow": 1.0, "numpy": 1.0})
    assert Pair("numpy", "tensorflow") in layer.diffs and "numpy|tensorflow" in layer.diffs
    assert "tensorflow|numpy" not in layer.diffs
    assert layer.diffs["numpy|tensorflow"] is layer.diffs[Pair("numpy", "tensorflow")]
    assert list(layer.to_dict()["diffs"]) == ["numpy|tensorflow"]


def test_an_absent_runtime_is_a_note_with_all_and_an_error_when_named(openvino_absent):
    notes: list[str] = []
    assert "openvino" not in select("all", notes)
    assert notes == ['openvino skipped: not installed (pip install "xverify[openvino]")']
    with pytest.raises(MissingDependencyError, match=r'pip install "xverify\[openvino\]"'):
        select("numpy,openvino", [])


def test_cli_names_what_to_install_for_an_absent_runtime(openvino_absent, models_dir):
    result = CliRunner().invoke(
        app, ["check", str(models_dir / "seed_regression.keras"), "--runtimes", "numpy,openvino"]
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "openvino not installed" in text and 'pip install "xverify[openvino]"' in text
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_check_all_skips_an_absent_runtime_with_a_note(openvino_absent, example_models):
    report = xverify.check(example_models.keras("seed_regression"), runtimes="all", samples=4)
    assert report.passed, report.failures()
    assert any(n.startswith("openvino skipped: not installed") for n in report.notes)
    assert {"tflite", "tensorflow"} <= {d.b for d in report.comparisons} | {d.a for d in report.comparisons}
    assert "openvino" not in {d.a for d in report.comparisons}


def _diff(name: str, values: dict[str, float], reference: float = 1.0) -> LayerDiff:
    """A layer whose runtimes gave ``values`` (scalars) against each other at tolerance 1e-3."""
    diffs = {
        p: compare(
            np.float32(values[p.a]), np.float32(values[p.b]), atol=1e-3, rtol=0.0, a_name=p.a, b_name=p.b
        )
        for p in pairs(values)
    }
    return LayerDiff(name, "Dense", "t", ("n",), PairDiffs(diffs), all(diffs.values()))


@pytest.mark.parametrize(
    "values, sentence",
    [
        (
            {"tensorflow": 1.0, "onnxruntime": 2.0, "numpy": 2.0},
            "numpy and onnxruntime agree on the ONNX graph and both differ from TensorFlow: the conversion is at fault",
        ),
        (
            {"tensorflow": 1.0, "onnxruntime": 1.0, "numpy": 2.0},
            "onnxruntime agrees with TensorFlow: the other ONNX runtime is at fault",
        ),
        (
            {"tensorflow": 1.0, "onnxruntime": 1.0, "numpy": 1.0, "openvino": 2.0},
            "numpy and onnxruntime agree with TensorFlow: openvino is at fault",
        ),
        (
            {"tensorflow": 1.0, "onnxruntime": 1.0, "numpy": 1.0, "openvino": 1.0, "tflite": 2.0},
            "tflite alone differs from TensorFlow, which the other runtimes agree with: tflite is at fault",
        ),
    ],
)
def test_who_diverged_is_read_from_the_declarations(values, sentence):
    from xverify.divergence import _who

    assert _who(_diff("d", values)) == sentence


@needs_openvino
def test_openvino_taps_agree_with_the_numpy_engine(example_models, rng):
    from xverify.runtimes import NumpyRuntime, OpenVinoRuntime

    model = example_models.onnx("small_cnn")
    x = rng.standard_normal((4, 16, 16, 3)).astype(np.float32)
    tensors = [t for n in model.graph.node for t in n.output][:12]
    got = OpenVinoRuntime(model).run({"image": x}, taps=tensors)
    want = NumpyRuntime(model, "float64").run({"image": x}, taps=tensors)
    assert set(tensors) - set(got) <= {tensors[0]}  # a Transpose OpenVINO may fold into the Conv
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], atol=1e-5, rtol=1e-4, err_msg=name)


@needs_openvino
def test_a_fault_in_the_onnx_model_is_localized_by_openvino_taps(example_models):
    faulty = faults.replace_op(example_models.onnx("small_cnn"), "Relu", "Identity", "xvl2")  # relu1
    report = xverify.check(
        example_models.keras("small_cnn"),
        onnx=faulty,
        runtimes="tensorflow,openvino",
        samples=4,
        oracle=False,
        ort_optimized=False,
    )
    assert not report.passed
    first = report.first_divergence
    assert (first.layer, first.a, first.b) == ("relu1", "openvino", "tensorflow")
    assert [layer.name for layer in report.layers if layer.passed][:2] == ["conv1", "bn1"]


@pytest.mark.slow
def test_tflite_taps_the_layers_its_converter_keeps(example_models, rng):
    from xverify.runtimes import TensorflowRuntime, TfliteRuntime

    keras_model = example_models.keras("small_cnn")
    x = rng.standard_normal((3, 16, 16, 3)).astype(np.float32)
    layers = [la.name for la in keras_model.layers]
    got = TfliteRuntime(keras_model).run({"image": x}, taps=layers)
    want = TensorflowRuntime(keras_model).run({"image": x}, taps=layers)
    # Conv2D, BatchNormalization and ReLU become one CONV_2D; Dropout is gone at inference.
    assert set(got) == {"classes", "relu1", "pool1", "conv2", "pool2", "flatten"}
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], atol=1e-5, rtol=1e-4, err_msg=name)


@pytest.mark.slow
def test_tflite_runs_a_recurrent_model_converted_with_batch_one(example_models, rng):
    from xverify.runtimes import TensorflowRuntime, TfliteRuntime

    keras_model = example_models.keras("text_lstm")
    tokens = rng.integers(0, 100, (3, 12)).astype(np.int32)
    runtime = TfliteRuntime(keras_model)
    assert runtime.batch_one and "batch 1" in runtime.notes[0]
    layers = ["embedding", "lstm", "score"]
    got = runtime.run({"tokens": tokens}, taps=layers)
    want = TensorflowRuntime(keras_model).run({"tokens": tokens}, taps=layers)
    for name in layers:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-4, err_msg=name)


@needs_openvino
@pytest.mark.slow
def test_five_runtimes_agree_layer_by_layer_on_small_cnn(example_models):
    report = xverify.check(example_models.keras("small_cnn"), runtimes=FIVE, samples=8)
    assert report.passed, report.failures()
    compared = {str(p) for layer in report.layers for p in layer.diffs}
    assert {"openvino|tensorflow", "tflite|tensorflow", "openvino|tflite"} <= compared
    assert {r.runtime for r in report.oracle} >= {"openvino", "tflite"}
    assert report.versions.get("openvino")
    assert any(n.startswith("tflite: 2 layer(s) keep no output tensor") for n in report.notes)
