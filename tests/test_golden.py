"""xverify snapshot: a golden bundle recorded with TensorFlow (checked without it in tests/notf)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from tests.data.build_golden import BUNDLE as COMMITTED
from tests.data.build_golden import SNAPSHOT_OPTIONS
from tests.faults import alter_initializer
from xverify.cli import app
from xverify.golden import FORMAT, Bundle, snapshot
from xverify.golden.bundle import sha256_file


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory, models_dir):
    """One snapshot of small_cnn with the committed fixture's options, shared by the module."""
    return snapshot(
        models_dir / "small_cnn.keras", tmp_path_factory.mktemp("g") / "bundle", **SNAPSHOT_OPTIONS
    )


def test_the_manifest_records_provenance_and_every_file(made, models_dir):
    m = made.manifest
    assert m["format"] == FORMAT
    assert m["model"]["sha256"] == sha256_file(models_dir / "small_cnn.keras")
    assert m["onnx"]["sha256"] == sha256_file(made.directory / "model.onnx") and m["onnx"]["opset"] == 17
    assert set(m["outputs"]) == {"tensorflow", "onnxruntime", "onnxruntime-opt", "numpy"}
    assert m["tolerance"] == {"atol": 1e-4, "rtol": 1e-3} and m["check"]["passed"]
    assert {r["runtime"] for r in m["check"]["oracle"]} >= {"numpy", "onnxruntime"}
    assert m["versions"]["tensorflow"] and m["versions"]["onnxruntime"] and m["versions"]["tf2onnx"]
    rows = m["layers"]["rows"]
    assert [r["name"] for r in rows][:2] == ["conv1", "bn1"] and all(r["onnx_tensor"] for r in rows)
    assert m["layers"]["left_out"] == []
    Bundle.open(made.directory)  # every sha256 verifies


def test_recorded_values_are_tensorflows(made, models_dir):
    """The recorded layers are TensorFlow's own values (Keras layout), against Keras called here."""
    import keras

    bundle = Bundle.open(made.directory)
    feeds = bundle.arrays(bundle.manifest["inputs"])
    layers = bundle.arrays(bundle.manifest["layers"])
    model = keras.saving.load_model(models_dir / "small_cnn.keras", compile=False)
    conv1 = keras.Model(model.inputs, model.get_layer("conv1").output)
    np.testing.assert_allclose(layers["conv1"], conv1(feeds), rtol=0, atol=1e-6)


def test_the_committed_fixture_is_what_the_build_script_makes(made):
    """tests/data/golden_small_cnn is regenerable: same inputs bit for bit, same numbers."""
    fresh, committed = Bundle.open(made.directory), Bundle.open(COMMITTED)
    for what in ("inputs",):
        a, b = fresh.arrays(fresh.manifest[what]), committed.arrays(committed.manifest[what])
        assert all(np.array_equal(a[k], b[k]) for k in b)
    for a, b in (
        (fresh.arrays(fresh.manifest["layers"]), committed.arrays(committed.manifest["layers"])),
        (
            fresh.arrays(fresh.manifest["outputs"]["tensorflow"]),
            committed.arrays(committed.manifest["outputs"]["tensorflow"]),
        ),
    ):
        assert a.keys() == b.keys()
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5)
    # TensorFlow numbers its name scopes per process (small_cnn_1/conv1_1, then small_cnn_2/...
    # after another conversion of the same model in this session) and tf2onnx its new nodes
    # (BiasAdd__6, or __155): compare the names unnumbered.
    assert _unnumbered(fresh.manifest["layers"]["rows"]) == _unnumbered(committed.manifest["layers"]["rows"])


def _unnumbered(rows):
    import json
    import re

    return json.loads(re.sub(r"__\d+|_\d+(?=/)", "", json.dumps(rows)))


def test_a_non_empty_directory_is_refused_before_any_work(tmp_path, models_dir):
    (tmp_path / "keep.txt").write_text("mine")
    result = run("snapshot", models_dir / "small_cnn.keras", "-o", tmp_path)
    assert result.exit_code == 2 and "--force" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_input_inside_the_directory_is_refused_even_with_force(tmp_path, models_dir):
    model = tmp_path / "small_cnn.keras"
    model.write_bytes((models_dir / "small_cnn.keras").read_bytes())
    result = run("snapshot", model, "-o", tmp_path, "--force")
    assert result.exit_code == 2 and "never written where its inputs" in result.output


def test_max_size_leaves_layers_out_and_says_which(tmp_path, models_dir, made):
    fixed = sum((made.directory / e["file"]).stat().st_size for e in [made.manifest["inputs"]])
    result = run(
        "snapshot",
        models_dir / "small_cnn.keras",
        "-o",
        tmp_path / "b",
        "--samples",
        8,
        "--max-size",
        fixed + 40_000,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    left_out = manifest["layers"]["left_out"]
    assert left_out and "left out" in result.output and left_out[0] in result.output
    kept = [r["name"] for r in manifest["layers"]["rows"]]
    every = [r["name"] for r in made.manifest["layers"]["rows"]]
    assert sorted(kept + left_out) == sorted(every) and kept == [n for n in every if n in kept]
    check = run("check", tmp_path / "b" / "model.onnx", "--golden", tmp_path / "b")
    assert check.exit_code == 0 and "not recorded" in check.output


def test_max_size_below_the_outputs_is_exit_2(tmp_path, models_dir):
    result = run("snapshot", models_dir / "small_cnn.keras", "-o", tmp_path / "b", "--max-size", "1kB")
    assert result.exit_code == 2 and "--max-size" in result.output


def test_a_failing_check_writes_no_bundle(tmp_path, models_dir, made):
    faulty = tmp_path / "faulty.onnx"
    onnx.save(alter_initializer(onnx.load(made.directory / "model.onnx"), "Conv", 1, "", delta=0.5), faulty)
    result = run(
        "snapshot", models_dir / "small_cnn.keras", "--onnx", faulty, "-o", tmp_path / "b", "--samples", 4
    )
    assert result.exit_code == 1 and "nothing was written" in result.output
    assert not (tmp_path / "b").exists()
