"""`xverify repro` and `check --repro`: the first divergent layer cut out of the ONNX graph, with its
data in ONNX's test_data_set_0 layout and a script that shows the mismatch on its own."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from tests import faults
from xverify.cli import app
from xverify.errors import XverifyError
from xverify.inputs import input_specs, synthetic
from xverify.layers import map_layers
from xverify.report.records import FirstDivergence
from xverify.repro import build_repro, cut_inputs

runner = CliRunner()
STANDALONE = {"glob", "os", "sys", "numpy", "onnx", "onnxruntime"}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _tensor(path):
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


@pytest.fixture(scope="module")
def faulty_cnn(example_models, tmp_path_factory):
    """small_cnn with one weight of its second Conv (conv2, layer token xvl4) changed."""
    faulty = faults.alter_initializer(example_models.onnx("small_cnn"), "Conv", 1, "xvl4", delta=0.5)
    return faults.save(faulty, tmp_path_factory.mktemp("repro") / "faulty.onnx")


def test_repro_directory_reproduces_the_mismatch_on_its_own(models_dir, faulty_cnn, tmp_path):
    out = tmp_path / "repro"
    result = run("repro", models_dir / "small_cnn.keras", "--onnx", faulty_cnn, "-o", out, "--samples", 4)
    assert result.exit_code == 1, result.output
    assert "conv2" in result.output
    cut = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(cut)
    assert {n.op_type for n in cut.graph.node} <= {"Conv", "Relu", "Add", "Transpose", "Constant"}
    feeds = [_tensor(p) for p in sorted((out / "test_data_set_0").glob("input_*.pb"))]
    assert [name for name, _ in feeds] == [i.name for i in cut.graph.input]
    name, expected = _tensor(out / "test_data_set_0" / "output_0.pb")
    assert name == cut.graph.output[0].name
    # Both disagreeing runtimes' values; the expected one is TensorFlow's, laid out as the ONNX tensor.
    _, ort_value = _tensor(out / "outputs" / "onnxruntime.pb")
    _, tf_value = _tensor(out / "outputs" / "tensorflow.pb")
    assert np.array_equal(tf_value, expected) and tf_value.shape == ort_value.shape
    script = (out / "repro.py").read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(script))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= STANDALONE, imported
    shown = subprocess.run(
        [sys.executable, str(out / "repro.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "MISMATCH reproduced" in shown.stdout and "vs tensorflow" in shown.stdout


def test_check_writes_a_repro_when_it_fails(models_dir, faulty_cnn, tmp_path):
    out = tmp_path / "repro"
    result = run(
        "check", models_dir / "small_cnn.keras", "--onnx", faulty_cnn, "--samples", 4, "--repro", out
    )
    assert result.exit_code == 1, result.output
    assert (out / "repro.py").exists() and (out / "test_data_set_0" / "input_0.pb").exists()


def test_a_layer_that_agrees_is_refused_not_written(example_models):
    """The clean model's conv2 cut: ONNX Runtime agrees with TensorFlow (which also checks that
    TensorFlow's NHWC output was put in the ONNX tensor's NCHW layout), so no repro is made."""
    keras_model, clean = example_models.keras("small_cnn"), example_models.onnx("small_cnn")
    row = next(r for r in map_layers(keras_model, clean) if r.name == "conv2")
    first = FirstDivergence(
        layer="conv2",
        layer_class="Conv2D",
        a="onnxruntime",
        b="tensorflow",
        max_abs_diff=1.0,
        onnx_tensor=row.tensor,
        onnx_nodes=tuple(row.nodes),
        diverged="",
        pairs={},
    )
    feeds = synthetic(input_specs(clean), 4, 0)
    with pytest.raises(XverifyError, match="would not show the mismatch"):
        build_repro(first, keras_model, clean, feeds, atol=1e-4, rtol=1e-3)


def test_cut_inputs_stop_at_other_layers_and_keep_constants(example_models):
    model = example_models.onnx("small_cnn")
    row = next(r for r in map_layers(example_models.keras("small_cnn"), model) if r.name == "flatten")
    inputs = cut_inputs(model.graph, row.tensor, row.nodes)
    produced = {out for n in model.graph.node if n.name in row.nodes for out in n.output}
    assert inputs and not set(inputs) & produced
    assert not set(inputs) & {i.name for i in model.graph.initializer}


def test_a_non_empty_directory_is_refused_before_any_work(models_dir, tmp_path):
    (tmp_path / "kept.txt").write_text("mine")
    result = run("repro", models_dir / "small_cnn.keras", "-o", tmp_path)
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_nothing_is_written_without_a_divergent_layer(models_dir, faulty_cnn, tmp_path):
    """At a loose tolerance every layer agrees (only the weight table still fails): no repro."""
    out = tmp_path / "r"
    result = run("repro", models_dir / "small_cnn.keras", "--onnx", faulty_cnn, "-o", out, "--atol", 10)
    assert result.exit_code == 2 and "no mismatch to reproduce" in result.output
    assert not out.exists()


def test_repro_is_refused_with_a_golden_bundle(models_dir, tmp_path):
    """A golden check has no Keras model to recompute the layer with: said before any work."""
    result = run("check", models_dir / "small_cnn.keras", "--golden", tmp_path, "--repro", tmp_path / "r")
    assert result.exit_code == 2 and "--golden" in result.output
    assert not (tmp_path / "r").exists()


def test_an_onnx_side_divergence_compares_onnx_runtime_with_the_engine(example_models, tmp_path, monkeypatch):
    """numpy vs onnxruntime (an engine or ONNX Runtime bug): the saved expected value is the
    engine's, and the written script fails on its own. The engine's error is simulated."""
    import xverify.repro as repro

    model = example_models.onnx("small_cnn")
    row = next(r for r in map_layers(example_models.keras("small_cnn"), model) if r.name == "conv2")
    first = FirstDivergence(
        layer="conv2",
        layer_class="Conv2D",
        a="numpy",
        b="onnxruntime",
        max_abs_diff=0.5,
        onnx_tensor=row.tensor,
        onnx_nodes=tuple(row.nodes),
        diverged="",
        pairs={},
    )
    real = repro._layer_value
    monkeypatch.setattr(repro, "_layer_value", lambda *args: real(*args) + np.float32(0.5))
    made = repro.build_repro(first, None, model, synthetic(input_specs(model), 2, 0), atol=1e-4, rtol=1e-3)
    assert made.expected == "numpy" and set(made.outputs) == {"numpy", "onnxruntime"}
    script = repro.write_repro(made, tmp_path / "r", atol=1e-4, rtol=1e-3, source="small_cnn")
    shown = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 1 and "vs numpy" in shown.stdout, shown.stdout + shown.stderr
