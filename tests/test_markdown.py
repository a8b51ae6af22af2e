"""The Markdown report: --markdown FILE, GitHub's job summary, and what a reader sees in it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests import faults
from tests.test_ort_bisect import TIGHT, _check, gelu_model
from xverify.cli import app
from xverify.report.markdown import _cell, to_markdown

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_failing_check_shows_verdict_failing_rows_and_first_divergence(models_dir, example_models, tmp_path):
    faulty = faults.save(
        faults.alter_initializer(example_models.onnx("small_cnn"), "MatMul", 1, "xvl8", delta=0.5),
        tmp_path / "faulty.onnx",
    )
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = run(
        "check",
        models_dir / "small_cnn.keras",
        "--onnx",
        faulty,
        "--markdown",
        tmp_path / "r.md",
        "--json",
        tmp_path / "r.json",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 1, result.output
    text = (tmp_path / "r.md").read_text()
    data = json.loads((tmp_path / "r.json").read_text())
    assert text.startswith("## xverify check: ❌ MISMATCH")
    failing = [c for c in data["comparisons"] if not c["passed"]]
    assert failing and text.count("| ") >= len(failing)
    for c in failing:
        assert f"| {c['a']} | {c['b']} | `{c['output']}` |" in text
    bad_weight = next(w for w in data["weights"] if not w["passed"])
    assert f"`{bad_weight['layer']}/{bad_weight['name']}`" in text
    assert "### First divergence" in text and f"`{data['first_divergence']['layer']}`" in text
    passing_layers = [x["name"] for x in data["layers"] if x["passed"]]
    assert all(f"| `{name}` |" not in text for name in passing_layers)
    # Appended to the job summary, after what earlier steps wrote.
    assert summary.read_text() == "earlier step\n" + text


def test_passing_check_is_a_short_pass(models_dir, tmp_path):
    result = run(
        "check",
        models_dir / "seed_regression.keras",
        "--markdown",
        tmp_path / "r.md",
        env={"GITHUB_STEP_SUMMARY": ""},
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("## xverify check: ✅ PASS")
    assert "agree within tolerance" in text and "Failing" not in text
    assert "First divergence" not in text


def test_summary_file_given_as_markdown_too_is_written_once(models_dir, tmp_path):
    summary = tmp_path / "summary.md"
    result = run(
        "check",
        models_dir / "seed_regression.keras",
        "--no-layers",
        "--markdown",
        summary,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 0, result.output
    assert summary.read_text().count("## xverify check") == 1


def test_unwritable_markdown_path_is_exit_2(models_dir, tmp_path):
    target = tmp_path / "missing" / "r.md"
    result = run(
        "check",
        models_dir / "seed_regression.keras",
        "--no-layers",
        "--markdown",
        target,
        env={"GITHUB_STEP_SUMMARY": ""},
    )
    assert result.exit_code == 2, result.output
    assert "r.md" in result.output and "Traceback" not in result.output


def test_ort_blame_is_in_the_markdown(tmp_path):
    text = to_markdown(_check(gelu_model(), tmp_path, **TIGHT))
    assert "### ONNX Runtime optimization to blame" in text and "Gelu" in text


def test_cells_stay_in_their_column():
    assert _cell("a|b\nc") == "a\\|b c"
