"""The JSON report (schema ``xverify.check/1``) held against golden files written before the report's
fields became typed: same keys, same order, same values.

Timings, versions, paths and tf2onnx's per-process name counters (``unk__54``, ``fold_opt__53``)
vary and are masked;
every float is compared within a relative 1e-4 or an absolute 1e-5 (runtimes round differently across
CPUs, and rounding-level differences are of that order), everything else exactly. Regenerate a golden file only
for a deliberate schema change: ``XVERIFY_WRITE_GOLDEN=1 pytest tests/test_report_golden.py``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import xverify
from tests import faults

GOLDEN = Path(__file__).resolve().parent / "golden"
MASKED = "<masked>"


def _masked(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data["timings"] = {k: MASKED for k in data["timings"]}
    data["versions"] = {k: MASKED for k in data["versions"]}
    for key in ("path", "onnx_path"):
        if data["model"][key] is not None:
            data["model"][key] = MASKED
    for tensor in data["inputs"]["tensors"]:
        tensor["dim_names"] = [re.sub(r"^unk__\d+$", MASKED, n) if n else n for n in tensor["dim_names"]]
    return _counters_masked(data)


def _counters_masked(value):
    """tf2onnx numbers the names it makes per process (``const_fold_opt__53``): the number goes."""
    if isinstance(value, str):
        return re.sub(r"__\d+", "__<n>", value)
    if isinstance(value, dict):
        return {_counters_masked(k): _counters_masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_counters_masked(v) for v in value]
    return value


def _floats_out(value, found: list[float]):
    """The value with every float replaced by a marker, the floats collected in order."""
    if isinstance(value, float):
        found.append(value)
        return "<float>"
    if isinstance(value, dict):
        return {k: _floats_out(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats_out(v, found) for v in value]
    return value


def _assert_matches_golden(report, name: str) -> None:
    data = _masked(report.to_dict())
    path = GOLDEN / f"{name}.json"
    if os.environ.get("XVERIFY_WRITE_GOLDEN"):
        path.write_text(json.dumps(data, indent=1) + "\n")
    expected = json.loads(path.read_text())
    got_floats: list[float] = []
    want_floats: list[float] = []
    got_shape = json.dumps(_floats_out(data, got_floats), indent=1)
    want_shape = json.dumps(_floats_out(expected, want_floats), indent=1)
    assert got_shape == want_shape
    assert got_floats == pytest.approx(want_floats, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_check_of_small_cnn_file_matches_golden_json(models_dir):
    report = xverify.check(models_dir / "small_cnn.keras", cache=False)
    assert report
    _assert_matches_golden(report, "check_small_cnn")


@pytest.mark.slow
def test_failing_check_of_small_cnn_matches_golden_json(example_models):
    """A changed conv2 kernel: first_divergence, suspects and failing rows are all filled."""
    faulty = faults.alter_initializer(example_models.onnx("small_cnn"), "Conv", 1, "xvl4", 0.5)
    report = xverify.check(example_models.keras("small_cnn"), onnx=faulty)
    assert not report and report.first_divergence is not None and report.suspects
    _assert_matches_golden(report, "check_small_cnn_conv2_fault")
