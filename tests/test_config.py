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
    assert {row["output"] for row in report.oracle if not row["passed"]} <= {name}
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
