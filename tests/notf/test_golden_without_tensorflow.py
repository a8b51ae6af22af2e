"""An ONNX file checked against a golden bundle made with TensorFlow, where TensorFlow is absent.

``.ci/run`` runs this file in a second virtual environment that has no TensorFlow
(``pip install ".[test-notf]"``); the main suite runs it too, where the tests that assert
TensorFlow's absence skip. The bundle is tests/data/golden_small_cnn (``tests/data/build_golden.py``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from tests.faults import alter_initializer
from xverify.cli import app

pytestmark = pytest.mark.notf

BUNDLE = Path(__file__).resolve().parents[1] / "data" / "golden_small_cnn"
MODELS = Path(__file__).resolve().parents[2] / "models"
TENSORFLOW_PRESENT = importlib.util.find_spec("tensorflow") is not None
needs_no_tensorflow = pytest.mark.skipif(
    TENSORFLOW_PRESENT, reason="asserts TensorFlow's absence: .ci/run's TensorFlow-free venv runs it"
)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@needs_no_tensorflow
def test_tensorflow_is_not_installed_here():
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401
    import xverify

    assert xverify.check and xverify.__version__


def test_the_bundles_own_onnx_passes():
    result = run("check", BUNDLE / "model.onnx", "--golden", BUNDLE)
    assert result.exit_code == 0, result.output
    assert "same sha256" in result.output


def test_a_weight_fault_fails_at_the_layer_that_holds_it(tmp_path):
    model = onnx.load(BUNDLE / "model.onnx")
    faulty = tmp_path / "faulty.onnx"
    onnx.save(alter_initializer(model, "Conv", 1, "", delta=0.5), faulty)
    report = tmp_path / "report.json"
    result = run("check", faulty, "--golden", BUNDLE, "--json", report)
    assert result.exit_code == 1, result.output
    found = json.loads(report.read_text())
    assert found["first_divergence"]["layer"] == "conv1"
    assert found["first_divergence"]["b"] == "tensorflow"
    assert found["model"]["golden"]["same_onnx"] is False
    failing = {(c["a"], c["b"]) for c in found["comparisons"] if not c["passed"]}
    assert ("onnxruntime", "tensorflow") in failing and ("numpy", "tensorflow") in failing


def test_an_optimized_copy_passes_and_its_fused_layer_is_named(tmp_path):
    """ONNX Runtime's basic optimizations fold conv1's BatchNormalization into it: a different
    file (noted, not a failure), the fused layer's tensor gone (noted), the rest compared."""
    import onnxruntime as ort

    optimized = tmp_path / "optimized.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(BUNDLE / "model.onnx"), options, providers=["CPUExecutionProvider"])
    report = tmp_path / "report.json"
    result = run("check", optimized, "--golden", BUNDLE, "--json", report)
    assert result.exit_code == 0, result.output
    found = json.loads(report.read_text())
    assert found["model"]["golden"]["same_onnx"] is False
    assert any("not compared: 'conv1'" in n for n in found["notes"])
    assert {layer["name"] for layer in found["layers"]} >= {"bn1", "conv2", "classes"}


def test_onnx_runtime_alone_is_compared_with_the_bundle(tmp_path):
    """An extended-optimized graph holds ops only ONNX Runtime runs (com.microsoft.FusedConv):
    ONNX Runtime alone against the recorded TensorFlow outputs is still a check."""
    import onnxruntime as ort

    optimized = tmp_path / "extended.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(BUNDLE / "model.onnx"), options, providers=["CPUExecutionProvider"])
    result = run("check", optimized, "--golden", BUNDLE, "--runtimes", "onnxruntime")
    assert result.exit_code == 0, result.output
    faulty = tmp_path / "faulty.onnx"
    onnx.save(alter_initializer(onnx.load(optimized), "FusedConv", 1, "", delta=0.5), faulty)
    assert run("check", faulty, "--golden", BUNDLE, "--runtimes", "onnxruntime").exit_code == 1


@pytest.fixture
def bundle_copy(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE, copy)
    return copy


def _one_exit_2(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_an_altered_file_is_exit_2(bundle_copy):
    layers = bundle_copy / "layers" / "tensorflow.npz"
    data = bytearray(layers.read_bytes())
    data[-100] ^= 0xFF
    layers.write_bytes(bytes(data))
    _one_exit_2(run("check", BUNDLE / "model.onnx", "--golden", bundle_copy), "sha256", "altered")


def test_a_missing_file_is_exit_2(bundle_copy):
    (bundle_copy / "outputs" / "tensorflow.npz").unlink()
    _one_exit_2(run("check", BUNDLE / "model.onnx", "--golden", bundle_copy), "missing")


def test_an_unknown_format_is_exit_2(bundle_copy):
    manifest = bundle_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format"] = "xverify.golden/99"
    manifest.write_text(json.dumps(data))
    _one_exit_2(run("check", BUNDLE / "model.onnx", "--golden", bundle_copy), "xverify.golden/99", "format")


def test_a_directory_that_is_no_bundle_is_exit_2(tmp_path):
    _one_exit_2(run("check", BUNDLE / "model.onnx", "--golden", tmp_path), "manifest.json")


def test_golden_takes_an_onnx_file_and_no_other_inputs():
    _one_exit_2(run("check", MODELS / "small_cnn.keras", "--golden", BUNDLE), "checks an .onnx file")
    _one_exit_2(
        run("check", BUNDLE / "model.onnx", "--golden", BUNDLE, "--inputs", BUNDLE / "inputs.npz"),
        "drop --inputs",
    )


def test_the_library_call_needs_no_tensorflow_either():
    import xverify

    report = xverify.golden.check_golden(BUNDLE / "model.onnx", BUNDLE, layers=False, oracle=False)
    assert report and {(d.a, d.b) for d in report.comparisons} >= {("onnxruntime", "tensorflow")}


def test_an_onnx_file_alone_is_checked_without_tensorflow():
    result = run("check", BUNDLE / "model.onnx")
    assert result.exit_code == 0, result.output


@needs_no_tensorflow
def test_a_keras_model_without_tensorflow_says_what_to_install():
    _one_exit_2(run("check", MODELS / "small_cnn.keras"), "pip install 'xverify[keras]'")
