"""An Explanation as plain text, as a table of units, and as CSV or Excel files."""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING

import numpy as np

from xverify.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:  # results imports this module to render itself
    from xverify.explain.results import Explanation, LayerSummary, Step

_CANDIDATES_SHOWN = 6
_TERMS_WRITTEN = 16  # a unit fed by up to this many inputs has each product written out
COLUMNS = ["layer", "unit", "inputs", "weights", "bias", "z", "activation", "a", "changed"]


def text(ex: Explanation) -> str:
    """The plain-text walk-through of ``ex`` (no markup): layer by layer, then the verdict."""
    lines = [
        f"Explaining model '{ex.model_name}' for input x = {_brief(ex.input.ravel())}",
        "Every number is recomputed with NumPy in float64 from the layers' get_weights().",
        "",
    ]
    uses: dict[str, int] = {}
    for summary in ex.layers:
        uses[summary.repeat_of or summary.name] = uses.get(summary.repeat_of or summary.name, 0) + 1
    for summary in ex.layers:
        steps = [s for s in ex.steps if s.layer == summary.name]
        lines += _layer_lines(summary, steps, uses.get(summary.name, 1))
        lines += [row for d in ex.units if d.layer == summary.name for row in unit_lines(d)] + [""]
    agree = "they agree" if ex.max_abs_diff <= 1e-5 else "they DIFFER by more than 1e-5"
    source = "NumPy, float64" if any(s.by_hand for s in ex.layers) else "Keras, nothing by hand"
    lines += [
        f"Final output ({source}):      {_vector(ex.output)}",
        f"TensorFlow's prediction (float32):  {_vector(ex.tensorflow_output)}",
        f"Difference max |NumPy − TensorFlow|: {ex.max_abs_diff:.2e} ({agree})",
    ]
    if ex.graph is not None and len(ex.graph.output_keys) > 1:
        lines.append(
            f"(The model has {len(ex.graph.output_keys)} outputs; the one shown is the "
            "first. Every layer above, on any output's path, is spelled out.)"
        )
    lines.append("")
    return "\n".join(lines + _closing(ex))


def rows(ex: Explanation) -> list[dict]:
    """The step table of ``ex``: one dict per spelled-out unit, keyed by ``COLUMNS``."""
    return [
        {
            "layer": s.layer,
            "unit": s.unit,
            "inputs": _brief(s.inputs),
            "weights": _brief(s.weights),
            "bias": "" if s.bias is None else s.bias,
            "z": s.z,
            "activation": s.activation,
            "a": s.a,
            "changed": s.changed,
        }
        for s in ex.steps
    ]


def write_csv(ex: Explanation, path: str | os.PathLike) -> None:
    """Write the step table of ``ex`` to a CSV file with a header row."""
    table = _table(ex)  # before opening: a failure leaves no half-written file
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(table)


def write_xlsx(ex: Explanation, path: str | os.PathLike) -> None:
    """Write ``ex`` as a workbook of live formulas (needs openpyxl; see ``workbook``)."""
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingDependencyError(
            "Writing .xlsx needs openpyxl, which is not installed; "
            "run `pip install 'xverify[xlsx]'` (or `pip install "
            "openpyxl`), or use --csv."
        ) from exc
    if ex.graph is None:
        raise UsageError(
            f"model '{ex.model_name}' is a subclassed model: its call() is Python "
            "code with no graph of layers to write as formulas; use --csv instead."
        )
    from xverify.explain import workbook

    workbook.write(ex, path, openpyxl.Workbook)


def _table(ex: Explanation) -> list[list]:
    """The header row, then the values of each row of ``rows(ex)`` in column order."""
    return [COLUMNS] + [[row[c] for c in COLUMNS] for row in rows(ex)]


def _fmt(v) -> str:
    v = float(v) + 0.0
    if v != 0 and (abs(v) < 1e-4 or abs(v) >= 1e6):
        return f"{v:.3e}"
    return f"{v:.4f}"


def _num(v) -> str:
    """An input value as a learner typed it: 10 rather than 10.0000."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e9 else _fmt(v)


def _brief(values) -> str:
    return ", ".join(_num(v) for v in values) if len(values) <= 4 else f"{len(values)} values"


def _vector(values, limit=8) -> str:
    flat = np.ravel(values)
    if flat.size == 1:
        return _fmt(flat[0])
    more = f", … ({flat.size} values)" if flat.size > limit else ""
    return "[" + ", ".join(_fmt(v) for v in flat[:limit]) + more + "]"


def _count(n, noun) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _unit_lines(s: Step) -> list[str]:
    """One unit's arithmetic; a sum of up to 16 terms is written out, 4 terms a line, above it."""
    head = f"  {s.layer}[{s.unit}]: "
    if s.formula:
        return [f"{head}{s.formula} = {_fmt(s.a)}"]
    if not s.weights:
        return [f"{head}{s.activation}({_fmt(s.z)}) = {_fmt(s.a)}{_mark(s)}"]
    terms = [f"{_num(x)} × {_fmt(w)}" for x, w in zip(s.inputs, s.weights)]
    above = []
    if len(terms) <= 4:
        calc = f"{' + '.join(terms)} + {_fmt(s.bias)} = {_fmt(s.z)}"
    else:
        bias = 0.0 if s.bias is None else s.bias  # a unit with weights has a bias (zeros without one)
        calc = f"x·w + b = Σ({len(s.weights)} terms) + b = {_fmt(s.z - bias)} + {_fmt(bias)} = {_fmt(s.z)}"
        if len(terms) <= _TERMS_WRITTEN:
            above = [f"{head}x·w = " + " + ".join(terms[:4])]
            above += ["      + " + " + ".join(terms[i : i + 4]) for i in range(4, len(terms), 4)]
    if s.activation.startswith("linear"):
        return above + [f"{head}{calc} ({s.activation}: a = z)"]
    return above + [f"{head}{calc} → {s.activation} → {_fmt(s.a)}{_mark(s)}"]


def _mark(s: Step) -> str:
    return " (clamped)" if s.clamped else " (changed)" if s.changed else ""


def _layer_lines(summary: LayerSummary, steps, uses: int = 1) -> list[str]:
    lines = _shared_lines(summary, uses)
    if not summary.by_hand:
        return lines + [
            f"Layer '{summary.name}' — {summary.formula}",
            f"  computed by Keras: {summary.input_shape} → {summary.output_shape}; output min "
            f"{_fmt(summary.min)}, max {_fmt(summary.max)}, mean {_fmt(summary.mean)}",
        ]
    if not summary.activation and not steps:  # Dropout, the identity
        return lines + [f"Layer '{summary.name}' — {summary.formula}"]
    shapes = (
        f"{_count(summary.input_shape[-1], 'input')} → {_count(summary.output_shape[-1], 'unit')}"
        if summary.kind == "Dense"
        else f"{summary.input_shape} → {summary.output_shape}"
    )
    lines.append(f"Layer '{summary.name}' — {summary.kind}, {shapes}: {summary.formula}")
    if summary.activation.startswith("softmax"):
        lines.append(
            "  (softmax divides exp(z) of each unit by the sum of exp(z) over all "
            f"{summary.output.size} units)"
        )
    for s in steps:
        lines += _unit_lines(s)
    if summary.output.size > summary.shown:
        lines.append(f"  ... {summary.output.size - summary.shown} more units not shown")
    lines.append(f"  output of '{summary.name}' = {_vector(summary.output)}")
    if summary.changed:
        lines.append(f"  {summary.activation} changed {summary.changed} of {summary.output.size} values")
    if summary.tf_max_abs_diff is not None:
        lines.append(f"  Keras' own output for this layer differs by at most {summary.tf_max_abs_diff:.2e}")
    return lines


def unit_lines(d) -> list[str]:
    """One output element of a layer Keras computes, quantity by quantity (``--unit``)."""
    where = ", ".join(map(str, d.index))
    lines = [f"  element [{where}] of '{d.layer}', step by step:"]
    for row in d.rows:
        lines.append(f"    {row.label}: {row.formula} = {_vector(row.values)}")
    diff = abs(d.value - d.keras_value)
    lines.append(f"    Keras' own value: {_fmt(d.keras_value)} (differs by {diff:.2e})")
    if diff > 1e-5 * max(1.0, abs(d.keras_value)):
        lines.append(
            "    (they differ: the layer uses something not spelled out here, such as a "
            "mask from mask_zero=True, so trust Keras' value)"
        )
    return lines


def _shared_lines(summary: LayerSummary, uses: int) -> list[str]:
    """Where a shared layer is used: once on its first call, and at each later call."""
    if summary.repeat_of:
        return [
            f"(the shared layer '{summary.repeat_of}' again: the same weights as above, "
            "applied to this call's input)"
        ]
    if uses > 1:
        return [f"(a shared layer: used {uses} times in this model, with the same weights)"]
    return []


def _closing(ex: Explanation) -> list[str]:
    """What the classic mistake, forgetting the activations, would have produced."""
    if np.isnan(ex.output_without_activations).any():
        return ["The output without activations could not be computed for this model."]
    kept = (
        ["(Activations inside layers computed by Keras, such as Conv2D, are kept.)"]
        if any(not s.by_hand for s in ex.layers)
        else []
    )
    if np.allclose(ex.output_without_activations, ex.tensorflow_output, rtol=0, atol=1e-6):
        return [
            f"Skipping the hidden activations spelled out here would not change the output "
            f"for this input ({_vector(ex.tensorflow_output)}): none of them changed a "
            "value."
        ] + kept
    lines = [
        f"The output would be {_vector(ex.output_without_activations)} without the "
        f"activations (a = z in every hidden layer) instead of {_vector(ex.tensorflow_output)}."
    ]
    hidden = [s for s in ex.layers[:-1] if s.by_hand and s.changed]
    if hidden:
        lines.append(
            f"Why: {'; '.join(_cause(s) for s in hidden)}; skipping it lets those values "
            "reach the next layer unchanged."
        )
    else:
        lines.append("Why: no hidden activation changed any value for this input.")
    return lines + kept


def _cause(s: LayerSummary) -> str:
    """How one hidden activation changed its layer's values, for the closing "Why:" line."""
    cause = f"the {s.activation} of layer '{s.name}' changed {s.changed} of {s.output.size} values"
    if s.clamped:
        bound = "negative z to 0" if s.activation == "relu" else "to a bound"
        cause += f" (it clamped {s.clamped} {bound})"
    return cause


def diagnosis_text(d) -> str:
    """The verdict on the user's number, then the closest candidates, one line each."""
    from xverify.explain.diagnose import describe

    ex_lines = [d.sentence]
    if d.impossible:
        ex_lines.append(d.impossible)
    shown = d.candidates[:_CANDIDATES_SHOWN]
    if shown:
        ex_lines.append(
            f"Closest of the {d.tried} mistakes tried (one at a time and in pairs), "
            f"matching within ±{d.tolerance:.1g}:"
        )
        for c in shown:
            what = " + ".join(describe(d.explanation, m) for m in c.mistakes)
            mark = "  ✓" if c.matches else ""
            ex_lines.append(f"  {_vector(c.output)} (off by {_fmt(c.distance)}){mark}: {what}")
    return "\n".join(ex_lines)
