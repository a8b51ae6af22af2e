"""xverify.testing.assert_equivalent: passes silently, fails with the first divergence."""

from __future__ import annotations

import pytest

from tests import faults
from xverify.testing import NotEquivalentError, assert_equivalent


def test_a_faithful_conversion_passes_and_returns_the_report(example_models):
    report = assert_equivalent(example_models.keras("small_cnn"), samples=4)
    assert report.passed and report.layers


def test_an_altered_weight_fails_naming_the_first_divergent_layer(example_models, tmp_path):
    faulty = faults.save(
        faults.alter_initializer(example_models.onnx("small_cnn"), "MatMul", 1, "xvl8", delta=0.5),
        tmp_path / "faulty.onnx",
    )
    with pytest.raises(AssertionError) as caught:
        assert_equivalent(example_models.keras("small_cnn"), onnx=faulty, samples=4)
    message = str(caught.value)
    report = caught.value.report
    assert isinstance(caught.value, NotEquivalentError) and not report.passed
    fd = report.first_divergence
    assert fd.layer == "classes"
    assert "First divergence:" in message and f"Layer {fd.layer!r} (Dense)" in message
    assert fd.onnx_nodes[0] in message and "weight classes/kernel" in message
    assert "atol 0.0001" in message


def test_options_reach_the_check(example_models):
    report = assert_equivalent(
        example_models.keras("small_cnn"),
        samples=2,
        atol=0.5,
        rtol=0.0,
        layers=False,
        runtimes="numpy,onnxruntime",
    )
    assert report.tolerance == {"atol": 0.5, "rtol": 0.0} and report.inputs.samples == 2
    assert report.layers == () and {d.a for d in report.comparisons} <= {
        "numpy",
        "onnxruntime",
        "onnxruntime-opt",
    }
    with pytest.raises(Exception, match="samples"):
        assert_equivalent(example_models.keras("small_cnn"), samples=0)
