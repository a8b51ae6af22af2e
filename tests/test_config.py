"""Per-output tolerances, the [tool.xverify] configuration and suggest-tolerance, on seed_regression."""

from __future__ import annotations

import pytest

import xverify
from xverify.errors import UsageError


@pytest.fixture(scope="module")
def seed(example_models):
    return example_models.keras("seed_regression"), example_models.onnx("seed_regression")


@pytest.fixture(scope="module")
def baseline(seed):
    keras_model, onnx_model = seed
    return xverify.check(keras_model, onnx=onnx_model, layers=False)


def _output(onnx_model) -> str:
    return onnx_model.graph.output[0].name


def test_report_tolerance_unchanged_without_per_output(baseline):
    assert baseline.tolerance == {"atol": 1e-4, "rtol": 1e-3}


def test_per_output_tolerance_tighter_than_observed_fails(seed, baseline):
    keras_model, onnx_model = seed
    name = _output(onnx_model)
    worst = max(d.max_abs_diff for d in baseline.comparisons if d.output == name)
    assert baseline.passed and worst > 0
    report = xverify.check(keras_model, onnx=onnx_model, layers=False, tolerances={name: (worst / 10, 0.0)})
    assert not report.passed
    assert report.tolerance["per_output"] == {name: {"atol": worst / 10, "rtol": 0.0}}
    failing = [d for d in report.comparisons if not d]
    assert failing and all(d.output == name and d.atol == worst / 10 and d.rtol == 0.0 for d in failing)
    assert {row.output for row in report.oracle if not row.passed} <= {name}
    loose = xverify.check(keras_model, onnx=onnx_model, layers=False, tolerances={name: f"{worst * 2}/0"})
    assert loose.passed


def test_unknown_output_name_names_the_outputs(seed):
    keras_model, onnx_model = seed
    with pytest.raises(UsageError, match="no output 'nope'") as caught:
        xverify.check(keras_model, onnx=onnx_model, layers=False, tolerances={"nope": (1e-5, 1e-4)})
    assert _output(onnx_model) in str(caught.value)


@pytest.mark.parametrize("bad", ["1e-5", "x/1e-4", "1e-5/-1", "nan/1"])
def test_bad_tolerance_numbers_are_usage_errors(seed, bad):
    keras_model, onnx_model = seed
    with pytest.raises(UsageError):
        xverify.check(keras_model, onnx=onnx_model, tolerances={"y": bad})


def test_cli_tolerance_flag(models_dir):
    from tests.test_cli import assert_clean_error, run

    model = models_dir / "seed_regression.keras"
    assert_clean_error(run("check", model, "--tolerance", "out"), "NAME=ATOL/RTOL")
    assert_clean_error(run("check", model, "--tolerance", "out=1e-5/abc"), "--rtol abc", "finite number")


def _write(path, text):
    path.write_text(text)
    return path


def test_pyproject_is_found_walking_up(tmp_path, monkeypatch):
    from xverify import config

    _write(tmp_path / "pyproject.toml", '[tool.xverify]\nsamples = 4\ntolerance = {out = "1e-5/1e-4"}\n')
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _write(tmp_path / "sub" / "pyproject.toml", "[tool.ruff]\nline-length = 100\n")  # skipped: no table
    monkeypatch.chdir(tmp_path / "sub" / "deeper")
    settings, path = config.load()
    assert path == tmp_path / "pyproject.toml"
    assert settings == {"samples": 4, "tolerance": {"out": (1e-5, 1e-4)}}


@pytest.mark.parametrize(
    "text, needles",
    [
        ("[tool.xverify]\nsample = 4\n", ["unknown key(s) ['sample']", "'samples'", "'atol'"]),
        ("[tool.xverify]\nsamples = '4'\n", ["samples = '4'", "expected int", "found str"]),
        ("[tool.xverify]\noracle = 1\n", ["expected bool"]),
        ("[tool.xverify]\ntolerance = {out = '1e-5'}\n", ["expected ATOL/RTOL"]),
        ("[tool.xverify\n", ["is not valid TOML"]),
        ("[tool.other]\nx = 1\n", ["has no [tool.xverify] table"]),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, text, needles):
    from xverify import config

    with pytest.raises(UsageError) as caught:
        config.load(_write(tmp_path / "x.toml", text))
    for needle in needles:
        assert needle in str(caught.value)
    assert str(tmp_path / "x.toml") in str(caught.value)


def test_cli_config_precedence_and_note(models_dir, tmp_path, monkeypatch):
    """CLI flag > config > default; the report's notes name the file; the config's tolerance applies."""
    import json

    from tests.test_cli import assert_clean_error, run

    model = models_dir / "seed_regression.keras"
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "pyproject.toml", "[tool.xverify]\nsamples = 3\nseed = 5\nlayers = false\n")
    args = ["check", model, "--runtimes", "numpy,onnxruntime", "--json"]
    result = run(*args, tmp_path / "a.json", "--samples", "2")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["inputs"]["samples"] == 2 and data["inputs"]["seed"] == 5 and data["layers"] == []
    assert any(str(tmp_path / "pyproject.toml") in n for n in data["notes"])
    assert data["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}

    other = _write(tmp_path / "strict.toml", '[tool.xverify]\nsamples = 3\ntolerance = {nope = "0/0"}\n')
    assert_clean_error(
        run(*args, tmp_path / "b.json", "--config", other), "no output 'nope'", "its outputs are"
    )
    assert_clean_error(run(*args, tmp_path / "c.json", "--config", tmp_path / "missing.toml"), "no such file")


@pytest.fixture(scope="module")
def suggestion(seed):
    keras_model, onnx_model = seed
    return xverify.suggest_tolerance(keras_model, onnx=onnx_model, samples=8)


def test_suggested_tolerance_passes_on_the_same_inputs(seed, suggestion):
    keras_model, onnx_model = seed
    (one,) = suggestion.outputs
    seen = [d.max_abs_diff for d in suggestion.report.comparisons] + [
        r.max_abs_diff for r in suggestion.report.oracle if r.runtime != "tensorflow"
    ]
    assert one.atol_from.max_abs_diff == max(seen) > 0
    assert max(seen) * 10 <= one.atol < max(seen) * 20  # the factor, rounded up to one digit
    assert one.atol_from.pair in one.reason and "10 x" in one.reason
    tolerances = {one.output: (one.atol, one.rtol)}
    report = xverify.check(
        keras_model, onnx=onnx_model, samples=8, layers=False, atol=0.0, rtol=0.0, tolerances=tolerances
    )
    assert report.passed and report.tolerance["per_output"][one.output] == {
        "atol": one.atol,
        "rtol": one.rtol,
    }
    assert f'"{one.output}" = "{one.atol:g}/{one.rtol:g}"' in suggestion.toml()
    assert suggestion.flags() == [f"--tolerance {one.output}={one.atol:g}/{one.rtol:g}"]


@pytest.mark.parametrize(
    "value, expected", [(3.2e-6, 4e-6), (3e-6, 3e-6), (9.5e-5, 1e-4), (0.0, 1e-7), (1.01, 2.0)]
)
def test_round_up_to_one_significant_digit(value, expected):
    from xverify.suggest import _round_up

    assert _round_up(value) == expected and _round_up(value) >= value


def test_cli_suggest_tolerance_json(example_models, tmp_path):
    import json

    from tests.test_cli import assert_clean_error, run

    model = example_models.onnx_file("seed_regression", tmp_path)
    result = run("suggest-tolerance", model, "--samples", "4", "--runtimes", "numpy,onnxruntime", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "xverify.suggest-tolerance/1" and data["samples"] == 4
    (row,) = data["outputs"]
    assert row["atol_from"]["pair"] and row["reason"].startswith(f"atol {row['atol']:g}")
    assert data["toml"].startswith("[tool.xverify]") and data["flags"]
    assert_clean_error(run("suggest-tolerance", model, "--factor", "0.5"), "--factor 0.5", ">= 1")


def test_keras_output_names_map_to_onnx_ones_by_position():
    import types

    from onnx import TensorProto, helper

    from xverify import config

    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("Identity:0", "Identity_1:0")
    ]
    graph = helper.make_graph([], "g", [], outputs)
    keras_model = types.SimpleNamespace(output_names=["probs", "logits"])
    resolved = config.resolve({"logits": "1e-5/1e-4"}, helper.make_model(graph), keras_model)
    assert resolved == {"Identity_1:0": (1e-5, 1e-4)}
    with pytest.raises(UsageError, match=r"'Identity:0', 'Identity_1:0', 'logits', 'probs'"):
        config.resolve({"prob": "1e-5/1e-4"}, helper.make_model(graph), keras_model)
