"""The CLI through typer's CliRunner: exit codes 0/1/2, reports, and one clear message per bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from tests import faults
from xverify.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *needles):
    """Exit 2, one message naming what matters, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert str(needle) in text, (needle, result.output)


@pytest.mark.parametrize("name", ["seed_regression", "trained_regression", "small_cnn", "text_lstm"])
def test_check_passes_on_every_example_model(models_dir, tmp_path, name):
    result = run("check", models_dir / f"{name}.keras", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] and {c["a"] for c in data["comparisons"]} >= {"numpy", "onnxruntime"}
    assert {c["b"] for c in data["comparisons"]} >= {"tensorflow"}


def test_altered_weight_exits_1_with_reports(models_dir, example_models, tmp_path):
    faulty = faults.save(
        faults.alter_initializer(example_models.onnx("small_cnn"), "MatMul", 1, "xvl8", delta=0.5),
        tmp_path / "faulty.onnx",
    )
    result = run(
        "check",
        models_dir / "small_cnn.keras",
        "--onnx",
        faulty,
        "--json",
        tmp_path / "r.json",
        "--junit",
        tmp_path / "j.xml",
        "--html",
        tmp_path / "r.html",
    )
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.output and "classes" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert not data["passed"]
    assert [w["layer"] for w in data["weights"] if not w["passed"]] == ["classes"]
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert int(suite.get("failures")) >= 1
    assert "MISMATCH" in (tmp_path / "r.html").read_text()


def test_explain_seed_model_at_10(models_dir, tmp_path):
    result = run(
        "explain", models_dir / "seed_regression.keras", "--input", "10", "--csv", tmp_path / "steps.csv"
    )
    assert result.exit_code == 0, result.output
    for unit in range(16):
        assert f"hidden[{unit}]" in result.output
    assert "25.0047" in result.output and "clamped" in result.output
    assert (tmp_path / "steps.csv").read_text().count("\n") >= 18


def test_convert_weights_and_ops(models_dir, tmp_path):
    out = tmp_path / "cnn.onnx"
    result = run("convert", models_dir / "small_cnn.keras", "-o", out, "--opset", "13")
    assert result.exit_code == 0 and out.exists(), result.output
    import onnx

    assert {o.version for o in onnx.load(str(out)).opset_import if o.domain == ""} == {13}
    result = run("weights", out)
    assert result.exit_code == 0 and "conv1" in result.output, result.output
    result = run("weights", models_dir / "seed_regression.keras", "--npz", tmp_path / "w.npz")
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "w.npz")
    assert saved["hidden/kernel"][0, 1] == np.float32(0.48899287)
    result = run("ops")
    assert result.exit_code == 0 and "Conv" in result.output and "LSTM" in result.output
    import xverify

    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"xverify {xverify.__version__}"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, example_models):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.keras").write_bytes(b"")
    (d / "random.keras").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    (d / "text.h5").write_text("weights: none\n")
    good = example_models.onnx("seed_regression").SerializeToString()
    (d / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (d / "garbage.onnx").write_bytes(b"not a protobuf at all" * 10)
    np.savez(d / "wrong_name.npz", y=np.zeros((3, 1), np.float32))
    np.savez(d / "wrong_shape.npz", x=np.zeros((3, 2), np.float32))
    np.save(d / "pickled.npy", np.array([object()], dtype=object), allow_pickle=True)
    faults.save(
        faults.replace_op(example_models.onnx("seed_regression"), "Relu", "RandomUniformLike"),
        d / "hardmax.onnx",
    )
    return d


@pytest.mark.parametrize(
    "args, needles",
    [
        (["check", "{d}/missing.keras"], ["missing.keras", "no such file"]),
        (["check", "{d}/empty.keras"], ["empty.keras", "empty"]),
        (["check", "{d}/random.keras"], ["random.keras", "expected a .keras zip archive"]),
        (["check", "{d}/text.h5"], ["text.h5", "expected an HDF5 file"]),
        (["check", "{m}", "--onnx", "{d}/truncated.onnx"], ["truncated.onnx", "ONNX"]),
        (["check", "{m}", "--onnx", "{d}/garbage.onnx"], ["garbage.onnx", "ONNX"]),
        (["check", "{m}", "--inputs", "{d}/wrong_name.npz"], ["wrong_name.npz", "expects ['x']"]),
        (["check", "{m}", "--inputs", "{d}/wrong_shape.npz"], ["wrong_shape.npz", "(3, 2)", "('N', 1)"]),
        (["check", "{m}", "--inputs", "{d}/pickled.npy"], ["pickled.npy", "pickled"]),
        (["check", "{m}", "--samples", "0"], ["--samples 0", "positive"]),
        (["check", "{m}", "--samples", "-4"], ["--samples -4", "positive"]),
        (["check", "{m}", "--runtimes", "numpy,pytorch"], ["pytorch", "numpy,onnxruntime,tensorflow"]),
        (["check", "{m}", "--onnx", "{d}/hardmax.onnx"], ["RandomUniformLike", "xverify ops"]),
        (["check", "{m}", "--opset", "21"], ["--opset 21", "13 to 18"]),
        (
            ["explain", "{m}", "--input", "1,2"],
            ["seed_regression.keras", "expected 1 input value", "found 2"],
        ),
        (["explain", "{m}", "--input", "ten"], ["ten", "numbers"]),
        (["convert", "{m}", "-o", "{m}"], ["refusing to overwrite"]),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(bad_files, models_dir, args, needles):
    model = models_dir / "seed_regression.keras"
    result = run(*[a.format(d=bad_files, m=model) for a in args])
    assert_clean_error(result, *needles)


def test_debug_shows_the_traceback(bad_files):
    result = run("check", bad_files / "empty.keras", "--debug")
    assert result.exit_code != 0 and result.exception is not None


def test_inputs_file_used(models_dir, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.arange(10, dtype=np.float32).reshape(-1, 1))
    result = run(
        "check",
        models_dir / "trained_regression.keras",
        "--inputs",
        tmp_path / "x.npz",
        "--json",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["inputs"]["samples"] == 10 and data["inputs"]["source"].endswith("x.npz")


def test_internal_error_exits_2_not_1(models_dir, monkeypatch):
    """A bug must never look like a verdict: exit 1 means "mismatch" to a CI gate."""
    import sys

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sys.modules["xverify.check"], "_compare_outputs", boom)
    result = run("check", models_dir / "seed_regression.keras", "--no-layers")
    assert result.exit_code == 2
    assert "internal error" in result.output and "not a verdict" in result.output
    assert "Traceback" not in result.output


def test_inputs_image_folder(example_models, tmp_path, rng):
    image_module = pytest.importorskip("PIL.Image")
    model = example_models.onnx_file("small_cnn", tmp_path)
    (tmp_path / "imgs").mkdir()
    for i in range(5):
        pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        image_module.fromarray(pixels).save(tmp_path / "imgs" / f"{i}.png")
    args = ["check", model, "--inputs", tmp_path / "imgs", "--runtimes", "numpy,onnxruntime", "--no-layers"]
    result = run(*args, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["inputs"]["samples"] == 5 and data["inputs"]["source"].endswith("imgs")
    (tmp_path / "imgs" / "3.png").write_bytes(b"\x89PNG broken")
    assert_clean_error(run(*args), "3.png", "cannot decode it as an image")
