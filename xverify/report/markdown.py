"""The Markdown report (``--markdown FILE``, and GitHub's job summary): verdict, failing rows, first
divergence. Short on purpose: it is read on a pull request, the JSON holds everything."""

from __future__ import annotations

import os
from collections.abc import Sequence

from xverify.errors import UsageError
from xverify.load import StrPath
from xverify.report.model import CheckReport, first_divergence_lines

_ROWS = 20  # failing rows shown per table; the rest are counted


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def _cell(text: object) -> str:
    """A table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: object) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def _table(header: list[str], rows: Sequence[Sequence[object]], total: int) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows[:_ROWS]]
    if total > _ROWS:
        lines.append(f"\n…and {total - _ROWS} more (see the JSON report).")
    return lines + [""]


def _outputs(report: CheckReport) -> list[str]:
    bad = [d for d in report.comparisons if not d]
    if not bad:
        return [f"All {len(report.comparisons)} output comparisons agree within tolerance.", ""]
    rows = [
        [
            d.a,
            d.b,
            _code(d.output),
            _num(d.max_abs_diff),
            _num(d.max_rel_diff),
            f"{d.mismatch_fraction:.1%}",
            _num(d.min_atol),
        ]
        for d in bad
    ]
    return ["### Failing outputs", ""] + _table(
        ["a", "b (reference)", "output", "max abs", "max rel", "out of tol", "atol that passes"],
        rows,
        len(bad),
    )


def _weights_and_layers(report: CheckReport) -> list[str]:
    lines = []
    weights = [w for w in report.weights if not w.passed]
    if weights:
        rows = [
            [
                _code(f"{w.layer}/{w.name}"),
                str(tuple(w.shape)),
                _code(w.onnx_initializer or "-"),
                w.transform,
                _num(w.max_abs_diff),
            ]
            for w in weights
        ]
        lines += ["### Weights not found in the ONNX model", ""]
        lines += _table(
            ["weight", "shape", "closest ONNX initializer", "transform", "max abs"], rows, len(weights)
        )
    layers = [layer for layer in report.layers if not layer.passed]
    if layers:
        rows = [
            [
                _code(layer.name),
                layer.layer_class,
                ", ".join(f"{k.a} vs {k.b}: {_num(d.max_abs_diff)}" for k, d in layer.diffs.items() if not d),
            ]
            for layer in layers
        ]
        lines += [f"### Failing layers ({len(layers)} of {len(report.layers)})", ""]
        lines += _table(["layer", "class", "max abs diff (failing pairs)"], rows, len(layers))
    return lines


def _first_divergence(report: CheckReport) -> list[str]:
    if not report.first_divergence:
        return []
    return ["### First divergence", ""] + first_divergence_lines(report.first_divergence, _code) + [""]


def to_markdown(report: CheckReport) -> str:
    """The report as GitHub-flavoured Markdown."""
    model, tol = report.model, report.tolerance
    verdict = "✅ PASS: every runtime agrees within tolerance" if report.passed else "❌ MISMATCH"
    onnx = f" (ONNX: {_code(model.onnx_path)})" if model.onnx_path else ""
    lines = [
        f"## xverify check: {verdict}",
        "",
        f"{_code(model.path or 'Keras model')}{onnx}, opset {model.opset}, "
        f"{report.inputs.samples} samples from {report.inputs.source}, "
        f"atol {tol['atol']:g}, rtol {tol['rtol']:g}.",
        "",
    ]
    lines += _outputs(report) + _weights_and_layers(report) + _first_divergence(report)
    if report.ort_optimizations:
        from xverify.ort_bisect import sentence

        lines += ["### ONNX Runtime optimization to blame", "", sentence(report.ort_optimizations), ""]
    if report.notes:
        lines += ["<details><summary>Notes</summary>", ""]
        lines += [f"- {_cell(note)}" for note in report.notes] + ["", "</details>", ""]
    return "\n".join(lines)


def write_markdown(report: CheckReport, path: StrPath, append: bool = False) -> None:
    """Write (or append, as GitHub's ``$GITHUB_STEP_SUMMARY`` expects) the Markdown report."""
    try:
        with open(path, "a" if append else "w", encoding="utf-8") as handle:
            handle.write(to_markdown(report) + "\n")
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot write the Markdown report ({exc.strerror}); choose a writable path."
        ) from exc


def step_summary_path() -> str | None:
    """GitHub Actions' job summary file, when running there."""
    return os.environ.get("GITHUB_STEP_SUMMARY") or None
