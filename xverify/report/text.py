"""The terminal report: runtime pairs, weights, layers and the verdict, as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xverify.report.model import CheckReport


def _num(value: float) -> str:
    if value is None:
        return "-"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return "0" if value == 0 else f"{value:.3g}"


def _verdict(passed: bool) -> str:
    return "[green]pass[/]" if passed else "[bold red]FAIL[/]"


def _short(name: str) -> str:
    """A runtime's narrow column name from its declaration (``ort``, ``tf``; a variant: ``ort-opt``)."""
    from xverify.runtimes import RUNTIMES, spec_of

    spec = spec_of(name)
    if spec is None:
        return name
    return spec.short if name in RUNTIMES else name.replace(spec.name, spec.short, 1)


def comparisons_table(report: CheckReport) -> Table:
    table = Table(
        title="Outputs (a vs reference b; ort = ONNX Runtime, ort-opt = optimized)", title_justify="left"
    )
    for column in ("a", "b", "output", "max abs", "max rel", "out of tol", "verdict"):
        table.add_column(
            column, justify="right" if column[0] in "mo" and column != "output" else "left", overflow="fold"
        )
    for d in report.comparisons:
        table.add_row(
            _short(d.a),
            _short(d.b),
            d.output,
            _num(d.max_abs_diff),
            _num(d.max_rel_diff),
            f"{d.mismatch_fraction:.1%}",
            _verdict(d.passed) + (f" ({d.note})" if d.note else ""),
        )
    return table


def weights_table(report: CheckReport, verbose: bool) -> Table | str | None:
    if not report.weights:
        return None
    found = sum(w.passed for w in report.weights)
    eliminated = sum("eliminated" in w.transform for w in report.weights)
    summary = (
        f"Weights: {found}/{len(report.weights)} Keras weights found in the ONNX model by value"
        + (f" ({eliminated} zero biases eliminated by the converter)" if eliminated else "")
        + (f"; {len(report.unattributed)} initializer(s) unattributed" if report.unattributed else "")
    )
    rows = [w for w in report.weights if verbose or not w.passed]
    if not rows:
        return summary
    table = Table(title=summary, title_justify="left")
    for column in ("layer", "weight", "shape", "ONNX initializer", "transform", "max abs", "verdict"):
        table.add_column(column, overflow="fold")
    for w in rows:
        table.add_row(
            escape(w.layer),
            escape(w.name),
            str(tuple(w.shape)),
            escape(w.onnx_initializer or "-"),
            escape(w.transform),
            _num(w.max_abs_diff),
            _verdict(w.passed),
        )
    return table


def layers_table(report: CheckReport, verbose: bool) -> Table | str | None:
    if not report.layers:
        return None
    layers = list(report.layers)
    bad = {i for i, layer in enumerate(layers) if not layer.passed}
    shown = (
        set(range(len(layers)))
        if verbose
        else {j for i in bad for j in (i - 1, i, i + 1) if 0 <= j < len(layers)}
    )
    if not shown:
        return f"Layers: {len(layers)}/{len(layers)} Keras layer outputs agree within tolerance"
    pairs = sorted({k for layer in layers for k in layer.diffs}, key=str)
    narrowed = len(pairs) > 3 and not verbose  # five runtimes make ten pairs: keep those that fail
    if narrowed:
        pairs = [p for p in pairs if any(p in layer.diffs and not layer.diffs[p] for layer in layers)]
    table = Table(
        title="Layers"
        + (
            ""
            if verbose
            else f" (divergent and neighbours{', failing pairs' if narrowed else ''}; --verbose: all)"
        ),
        title_justify="left",
    )
    table.add_column("layer", overflow="fold")
    table.add_column("class", overflow="fold")
    for pair in pairs:
        table.add_column(f"{_short(pair.a)} vs {_short(pair.b)}", justify="right")
    table.add_column("verdict")
    for i in sorted(shown):
        layer = layers[i]
        table.add_row(
            layer.name,
            layer.layer_class,
            *[_num(layer.diffs[p].max_abs_diff) if p in layer.diffs else "-" for p in pairs],
            _verdict(layer.passed),
        )
    return table


def render(report: CheckReport, console: Console, verbose: bool = False) -> None:
    """Print the report: tables, then one verdict line."""
    model = report.model
    console.print(
        f"[bold]xverify check[/] {model.path or ''}"
        f"{'  onnx: ' + model.onnx_path if model.onnx_path else ''}"
        f"  (opset {model.opset}, {report.inputs.samples} samples from "
        f"{report.inputs.source}, atol {report.tolerance['atol']:g}, "
        f"rtol {report.tolerance['rtol']:g})"
    )
    console.print(comparisons_table(report))
    for table in (weights_table(report, verbose), layers_table(report, verbose)):
        if table is not None:
            console.print(table)
    if report.unattributed and verbose:
        console.print(f"Unattributed ONNX initializers: {', '.join(report.unattributed)}")
    _print_oracle(report, console)
    fd = report.first_divergence
    if fd is not None:
        console.print(
            f"[bold red]First divergence:[/] layer [bold]{escape(fd.layer)}[/] "
            f"({fd.layer_class}) — {fd.a} vs {fd.b} max abs diff "
            f"{_num(fd.max_abs_diff)}" + (f"; {fd.diverged}" if fd.diverged else "")
        )
        nodes = fd.onnx_nodes
        if nodes:
            shown = ", ".join(nodes[:4]) + (f" (+{len(nodes) - 4} more)" if len(nodes) > 4 else "")
            console.print(f"  ONNX node(s) of that layer: {escape(shown)}", highlight=False)
        if len(report.suspects) > 1:
            console.print(
                "  other suspects (error grew most across): "
                + ", ".join(
                    f"{escape(s.layer)} (x{10**s.growth:.3g})"
                    for s in report.suspects[1:4]
                    if s.growth != float("inf")
                ),
                highlight=False,
            )
    if report.ort_optimizations:
        from xverify.ort_bisect import sentence

        console.print(
            f"[bold]ONNX Runtime optimization to blame:[/] {escape(sentence(report.ort_optimizations))}",
            highlight=False,
        )
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    worst = max((d.min_atol for d in report.comparisons), default=0.0)
    worst_r = max((d.min_rtol for d in report.comparisons), default=0.0)
    console.print(
        f"[dim]smallest tolerance that passes every output: atol {_num(worst)} at rtol "
        f"{report.tolerance['rtol']:g}, or rtol {_num(worst_r)} at atol "
        f"{report.tolerance['atol']:g}[/]"
    )
    total = sum(report.timings.values())
    console.print(
        f"[dim]time {total:.2f}s: " + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()) + "[/]"
    )
    if report.passed:
        console.print("[bold green]PASS[/]: every runtime agrees within tolerance.")
    else:
        console.print("[bold red]MISMATCH[/]: " + escape("; ".join(report.failures()[:4])))


def _print_oracle(report: CheckReport, console: Console) -> None:
    if not report.oracle:
        return
    table = Table(
        title="Distance from the float64 oracle (the ONNX graph in exact arithmetic)", title_justify="left"
    )
    for column in ("runtime", "output", "max abs", "mean abs"):
        table.add_column(column)
    for row in report.oracle:
        table.add_row(row.runtime, row.output, _num(row.max_abs_diff), _num(row.mean_abs_diff))
    console.print(table)
