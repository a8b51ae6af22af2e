"""The HTML report (``--html FILE``): one self-contained page (inline CSS and SVG, no script, no
fetches) with the verdict, the first divergence, a chart of the error along the layers for each
runtime pair (report/chart.py), and the tables: outputs, layers, weights, oracle, notes."""

from __future__ import annotations

from collections.abc import Set
from html import escape

from xverify.errors import UsageError
from xverify.load import StrPath
from xverify.report.chart import pair_points, svg_chart
from xverify.report.model import CheckReport, first_divergence_lines
from xverify.runtimes.contract import Pair

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 960px; color: #111827; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.verdict { display: inline-block; padding: 3px 10px; border-radius: 4px; color: #fff; }
.pass { background: #1a7f37; } .fail { background: #d1242f; }
.meta { color: #4b5563; font-size: 13px; }
.box { border-left: 4px solid #8250df; background: #f6f3fe; padding: 8px 12px; margin: 12px 0; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 3px 6px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecec; } code { font-size: 12px; }
figure { margin: 8px 0 12px; } figcaption { font-size: 13px; color: #4b5563; }
details summary { cursor: pointer; }
"""


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return str(value)
    return "0" if value == 0 else f"{value:.3g}"


def _table(header: list[str], rows: list[tuple[bool, list[str]]], numeric: Set[int] = frozenset()) -> str:
    """Rows are (passed, cells); failing rows are tinted. Cells are escaped here."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for passed, cells in rows:
        tds = "".join(
            f'<td class="num">{escape(str(c))}</td>' if i in numeric else f"<td>{escape(str(c))}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f'<tr class="{"" if passed else "bad"}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdict(passed: bool) -> str:
    return "pass" if passed else "FAIL"


def _header(report: CheckReport) -> str:
    model, tol, inputs = report.model, report.tolerance, report.inputs
    label = "PASS: every runtime agrees" if report.passed else "MISMATCH"
    onnx_path = model.onnx_path
    onnx = f" · ONNX {escape(str(onnx_path))}" if onnx_path and onnx_path != model.path else ""
    return (
        f'<h1>xverify check <span class="verdict {"pass" if report.passed else "fail"}">{label}</span></h1>'
        f'<p class="meta">{escape(str(model.path or "Keras model"))}{onnx} · opset '
        f"{escape(str(model.opset))} · {inputs.samples} samples from "
        f"{escape(str(inputs.source))} · atol {tol['atol']:g}, rtol {tol['rtol']:g}</p>"
    )


def _first_divergence(report: CheckReport) -> str:
    parts = []
    if report.first_divergence:
        lines = first_divergence_lines(report.first_divergence)
        parts.append(
            '<div class="box"><strong>First divergence.</strong> '
            + " ".join(escape(line) for line in lines)
            + "</div>"
        )
    if report.ort_optimizations:
        from xverify.ort_bisect import sentence

        parts.append(
            f'<div class="box"><strong>ONNX Runtime optimization to blame.</strong> '
            f"{escape(sentence(report.ort_optimizations))}</div>"
        )
    return "".join(parts)


def _charts(report: CheckReport) -> str:
    pairs = list(dict.fromkeys(pair for layer in report.layers for pair in layer.diffs))
    if not pairs:
        return ""
    parts = ["<h2>Error along the layers</h2>"]
    for pair in pairs:
        a, b = str(pair).split("|")  # a runtimes.Pair, or its "a|b" key
        points = pair_points(report.layers, pair)
        failing = [p.layer for p in points if not p.passed]
        parts.append(
            f"<figure><figcaption><strong>{escape(a)} vs {escape(b)}</strong> (reference): "
            f"{len(points)} layers, {len(failing)} out of tolerance"
            + (f", first at {escape(failing[0])}." if failing else ".")
            + f"</figcaption>{svg_chart(points, f'{a} vs {b}', _first_of_pair(report, pair, failing))}"
            "</figure>"
        )
    return "".join(parts)


def _first_of_pair(report: CheckReport, pair: Pair | str, failing: list[str]) -> str | None:
    """The report's first divergence where this pair fails there, else the pair's first failing
    layer (another pair may have diverged first; the chart still shows where this one leaves)."""
    first = report.first_divergence.layer if report.first_divergence else None
    return first if first in failing else (failing[0] if failing else None)


def _outputs(report: CheckReport) -> str:
    rows = [
        (
            d.passed,
            [
                d.a,
                d.b,
                d.output,
                _num(d.max_abs_diff),
                _num(d.max_rel_diff),
                f"{d.mismatch_fraction:.1%}",
                _num(d.min_atol),
                _verdict(d.passed) + (f" ({d.note})" if d.note else ""),
            ],
        )
        for d in report.comparisons
    ]
    header = ["a", "b (reference)", "output", "max abs", "max rel", "out of tol", "atol that passes", ""]
    return "<h2>Outputs</h2>" + _table(header, rows, {3, 4, 5, 6})


def _layers(report: CheckReport) -> str:
    if not report.layers:
        return ""
    pairs = list(dict.fromkeys(pair for layer in report.layers for pair in layer.diffs))
    rows = [
        (
            layer.passed,
            [layer.name, layer.layer_class, layer.onnx_tensor or "-"]
            + [_num(layer.diffs[p].max_abs_diff) if p in layer.diffs else "-" for p in pairs]
            + [_verdict(layer.passed)],
        )
        for layer in report.layers
    ]
    header = ["layer", "class", "ONNX tensor"] + [str(p).replace("|", " vs ") for p in pairs] + [""]
    failing = sum(not layer.passed for layer in report.layers)
    title = f"<h2>Layers ({failing} of {len(report.layers)} out of tolerance)</h2>"
    return title + _table(header, rows, set(range(3, 3 + len(pairs))))


def _weights(report: CheckReport) -> str:
    if not report.weights:
        return ""
    rows = [
        (
            w.passed,
            [f"{w.layer}/{w.name}", str(tuple(w.shape)), w.onnx_initializer or "-", w.transform]
            + [_num(w.max_abs_diff), _verdict(w.passed)],
        )
        for w in report.weights
    ]
    found = sum(w.passed for w in report.weights)
    title = f"<h2>Weights ({found} of {len(report.weights)} found in the ONNX model by value)</h2>"
    table = _table(["weight", "shape", "ONNX initializer", "transform", "max abs", ""], rows, {4})
    if report.unattributed:
        names = ", ".join(escape(n) for n in report.unattributed)
        table += f'<p class="meta">Initializers no Keras weight accounts for: {names}</p>'
    return title + table


def _oracle(report: CheckReport) -> str:
    if not report.oracle:
        return ""
    rows = [
        (
            o.passed,
            [o.runtime, o.output, _num(o.max_abs_diff), _num(o.mean_abs_diff)],
        )
        for o in report.oracle
    ]
    title = "<h2>Distance from the float64 oracle</h2>"
    return title + _table(["runtime", "output", "max abs", "mean abs"], rows, {2, 3})


def _notes(report: CheckReport) -> str:
    items = "".join(f"<li>{escape(note)}</li>" for note in report.notes)
    notes = f"<h2>Notes</h2><ul>{items}</ul>" if report.notes else ""
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in report.versions.items())
    timings = ", ".join(f"{escape(k)} {v:.2f} s" for k, v in report.timings.items())
    return notes + (
        f"<details><summary>Versions and timings</summary><p class='meta'>{versions}</p>"
        f"<p class='meta'>{timings}</p></details>"
    )


def to_html(report: CheckReport) -> str:
    """The report as one self-contained HTML page."""
    title = f"xverify check: {'pass' if report.passed else 'MISMATCH'}"
    body = (
        _header(report)
        + _first_divergence(report)
        + _charts(report)
        + _outputs(report)
        + _layers(report)
        + _weights(report)
        + _oracle(report)
        + _notes(report)
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_html(report: CheckReport, path: StrPath, verbose: bool = True) -> None:
    """Write the HTML report (``verbose`` is kept for callers; the page always holds every row)."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(to_html(report))
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot write the HTML report ({exc.strerror}); choose a writable path."
        ) from exc
