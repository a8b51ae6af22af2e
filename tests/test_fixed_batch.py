"""ONNX files from other exporters: fixed batch dimensions fed at their size, symbolic dims named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import xverify
from xverify.errors import InputDataError
from xverify.report.records import OracleDistance
from xverify.runtimes.batched import Batched

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def test_light_squeezenet_passes_with_oracle_agreeing():
    """light_squeezenet.onnx (opset 9, batch fixed to 1) used to fail: the synthetic batch ignored
    the fixed dim, and with --samples 1 the engine applied opset 13's Softmax and blamed ORT."""
    report = xverify.check(str(LIGHT / "light_squeezenet.onnx"), samples=3)
    assert report.passed
    assert any("3 batches of 1" in n for n in report.notes)
    assert not any("farther" in n for n in report.notes)
    assert report.inputs.samples == 3
    distance = {row.runtime: row.max_abs_diff for row in report.oracle}
    assert distance["onnxruntime"] < 1e-5
    # Its logits reach 7e9, equal in exact arithmetic: float32 rounding alone may tip the softmax
    # by 1e-3 in the engine (refereed, not a failure); opset 13's Softmax would be 0.999 away.
    assert distance["numpy"] < 1e-2
    if distance["numpy"] > 1e-4:
        assert any("float32 rounding in the NumPy engine" in n for n in report.notes)


def test_engine_rounding_alone_is_refereed_by_the_oracle_not_a_failure():
    from xverify.check import _engine_rounding
    from xverify.compare import compare

    exact = np.array([1.0, 2.0])
    d = compare(exact + [0.01, 0], exact, atol=1e-4, rtol=0, a_name="numpy", b_name="onnxruntime", output="y")
    rows = [
        OracleDistance("numpy", "y", max_abs_diff=0.01, max_rel_diff=0.01, mean_abs_diff=0.005, passed=False),
        OracleDistance(
            "onnxruntime", "y", max_abs_diff=0.0, max_rel_diff=0.0, mean_abs_diff=0.0, passed=True
        ),
    ]
    kept, notes = _engine_rounding([d], rows)
    assert kept[0].passed and "float32 rounding" in kept[0].note and len(notes) == 1
    # ONNX Runtime off the oracle as well: a real disagreement stays a failure.
    rows[1] = OracleDistance(
        "onnxruntime", "y", max_abs_diff=0.02, max_rel_diff=0.02, mean_abs_diff=0.01, passed=False
    )
    kept, notes = _engine_rounding([d], rows)
    assert not kept[0].passed and notes == []
    # TensorFlow runs the Keras model, not the graph: never refereed by the oracle.
    d_tf = compare(
        exact + [0.01, 0], exact, atol=1e-4, rtol=0, a_name="numpy", b_name="tensorflow", output="y"
    )
    rows.append(
        OracleDistance("tensorflow", "y", max_abs_diff=0.0, max_rel_diff=0.0, mean_abs_diff=0.0, passed=True)
    )
    assert not _engine_rounding([d_tf], rows)[0][0].passed


def _symbolic_model(batch_dim):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, "seq", 4])
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    graph = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_symbolic_dims_are_named_in_the_report(tmp_path):
    path = tmp_path / "symbolic.onnx"
    onnx.save(_symbolic_model("batch"), str(path))
    report = xverify.check(str(path), samples=5)
    assert report.passed
    assert report.inputs.tensors[0].dim_names == ("batch", "seq", None)
    assert any("x[0] = batch (5)" in n and "x[1] = seq (8)" in n for n in report.notes)


def test_fixed_batch_of_two_rounds_samples_up_to_whole_batches(tmp_path):
    path = tmp_path / "fixed2.onnx"
    onnx.save(_symbolic_model(2), str(path))
    report = xverify.check(str(path), samples=5)
    assert report.passed and report.inputs.samples == 6
    assert any("3 batches of 2" in n for n in report.notes)


class _Echo:
    def __init__(self):
        self.input_names = ["x"]
        self.calls = 0

    def run(self, feeds, taps=()):
        self.calls += 1
        assert len(feeds["x"]) == 2
        return {"y": feeds["x"] * 2, "n": np.array(len(feeds["x"]))}


def test_batched_runs_rows_in_order_and_joins_outputs():
    runner = Batched(_Echo(), 2)
    x = np.arange(12.0).reshape(6, 2)
    out = runner.run({"x": x})
    np.testing.assert_array_equal(out["y"], x * 2)
    np.testing.assert_array_equal(out["n"], [2, 2, 2])  # rank-0 outputs stacked
    assert runner.calls == 3 and runner.input_names == ["x"]
    with pytest.raises(InputDataError, match="multiple of 2"):
        runner.run({"x": x[:5]})


def test_batched_refuses_to_stream_over_several_batches():
    with pytest.raises(TypeError, match="on_tensor"):
        Batched(_Echo(), 2).stream({"x": np.zeros((4, 2))}, lambda name, value: None)


def test_batched_names_unequal_input_rows():
    """Inputs of different lengths are an input error naming both counts (found by mypy: the
    message sorted the counts together with None, a TypeError)."""
    feeds = {"x": np.zeros((4, 2)), "y": np.zeros((6, 2))}
    with pytest.raises(InputDataError, match=r"hold \[4, 6\] rows"):
        Batched(_Echo(), 2).run(feeds)
