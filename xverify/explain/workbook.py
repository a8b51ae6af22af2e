"""The explanation as a live spreadsheet: change x or any weight and every formula recomputes.

Sheet "model": the output (and beside it the output without the hidden activations) at the top,
the input x below it, then one block per layer call with a row per unit. A Dense unit's z is
``=SUMPRODUCT(<the previous layer's cells>, <its weight column>) + <its bias>``, over the layer's own
sheet where the kernel is laid out as ``get_weights()`` prints it (a row per input, a column per
unit) and the bias in a row under it; its activation is the activation's formula of z. Layers
spelled out by hand are formulas; a layer Keras computes (Conv2D, LSTM, ...) is written as values,
with its formula in words beside them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from openpyxl.utils import get_column_letter

from xverify.explain.activations import EXCEL
from xverify.explain.formulas import formula
from xverify.explain.layers import SCALING_KINDS, activation_of, dense_weights
from xverify.explain.scaling import scaling_of

MAX_CELLS = 200_000  # a workbook is for reading by hand: refuse models whose values exceed this
_HEADERS = ["unit", "z", "a", "note", "z without activations", "a without activations"]


@dataclass(frozen=True)
class Cells:
    """A tensor's values: ``count`` consecutive cells of one column of the model sheet."""

    column: str
    first: int
    count: int

    def cell(self, i: int) -> str:
        return f"${self.column}${self.first + i}"

    @property
    def range(self) -> str:
        return f"${self.column}${self.first}:${self.column}${self.first + self.count - 1}"


def write(ex, path: str | os.PathLike, book_cls) -> None:
    """Write ``ex`` as a workbook of live formulas to ``path`` (``book_cls``: openpyxl.Workbook)."""
    book = book_cls()
    sheet = book.active
    sheet.title = "model"
    sheet["A1"] = (
        f"xverify explain: model '{ex.model_name}'. Change x (column B) or any weight on "
        "the layer sheets and every formula recomputes."
    )
    top = 3 + ex.tensorflow_output.size + 1  # the output rows come first (see _top)
    sheet.cell(top, 1, "input")
    sheet.cell(top, 2, "x")
    n = ex.input.size
    for i, value in enumerate(ex.input.ravel()):
        sheet.cell(top + 1 + i, 1, f"x[{i}]")
        sheet.cell(top + 1 + i, 2, float(value))
    x_cells = Cells("B", top + 1, n)
    state = _State(book, sheet, {ex.graph.input_key: x_cells}, {ex.graph.input_key: x_cells}, top + n + 2, {})
    skipped = {i for i, t in _skip_tweaks(ex)}
    for index, call in enumerate(ex.graph.calls):
        _block(state, ex, index, call, index in skipped)
    _top(state, ex)
    if ex.units:
        _units_sheet(book.create_sheet("units"), ex.units)
    book.save(path)


@dataclass
class _State:
    book: object
    sheet: object
    cells: dict  # tensor key -> Cells, with activations
    skip_cells: dict  # tensor key -> Cells, hidden activations skipped
    row: int  # the next free row of the model sheet
    weight_sheets: dict  # id(layer) -> sheet name (a shared layer's weights are written once)


def _skip_tweaks(ex):
    from xverify.explain.walk import skip_hidden

    return skip_hidden(ex.graph, ex.hand).tweaks if ex.skipped is not None else ()


def _block(state, ex, index, call, skip) -> None:
    summary = ex.layers[index]
    sheet, row = state.sheet, state.row
    sheet.cell(row, 1, f"Layer '{summary.name}' ({summary.kind}): {summary.formula}")
    for col, header in enumerate(_HEADERS, 1):
        sheet.cell(row + 1, col, header)
    first = row + 2
    act = activation_of(call.layer)
    if summary.by_hand and summary.kind == "Dense":
        count = _dense_rows(state, call, first, act, skip)
    elif summary.by_hand and summary.kind in SCALING_KINDS:
        count = _scaling_rows(state, call, first)
    elif summary.by_hand:
        count = _elementwise_rows(state, call, first, act if summary.activation else None, skip)
    else:
        count = _value_rows(state, ex, index, call, first)
    state.row = first + count + 1


def _dense_rows(state, call, first, act, skip) -> int:
    kernel, bias = dense_weights(call.layer)
    name = _weight_sheet(state, call.layer, kernel, bias)
    src, src_skip = state.cells[call.inputs[0]], state.skip_cells[call.inputs[0]]
    n_in, units = kernel.shape
    for j in range(units):
        col = get_column_letter(j + 1)
        weights, b = f"'{name}'!{col}$2:{col}${n_in + 1}", f"'{name}'!{col}${n_in + 4}"
        row = first + j
        state.sheet.cell(row, 1, j)
        state.sheet.cell(row, 2, f"=SUMPRODUCT({src.range},{weights})+{b}")
        state.sheet.cell(row, 5, f"=SUMPRODUCT({src_skip.range},{weights})+{b}")
    _activation_columns(state, call, first, units, act, skip)
    return units


def _scaling_rows(state, call, first) -> int:
    """y = (x − m) / d · g + b per value, over the channel's numbers on the layer's sheet."""
    src, src_skip = state.cells[call.inputs[0]], state.skip_cells[call.inputs[0]]
    shape = call.node.input_tensors[0].shape
    scaling = scaling_of(call.layer, int(shape[-1]))
    if scaling is None:  # summary.by_hand: the walk spelled it out as a Scaling
        raise AssertionError(f"layer {call.label!r} was spelled out but is not a Scaling")
    name = _params_sheet(state, call.layer, scaling)
    for j in range(src.count):
        col = get_column_letter(j % len(scaling.center) + 1)
        m, d, g, b = (f"'{name}'!${col}${row}" for row in (3, 4, 5, 6))
        state.sheet.cell(first + j, 1, j)
        state.sheet.cell(first + j, 2, f"={src.cell(j)}")
        state.sheet.cell(first + j, 3, f"=({Cells('B', first, 1).cell(j)}-{m})/{d}*{g}+{b}")
        state.sheet.cell(first + j, 5, f"={src_skip.cell(j)}")
        state.sheet.cell(first + j, 6, f"=({Cells('E', first, 1).cell(j)}-{m})/{d}*{g}+{b}")
    state.cells[call.outputs[0]] = Cells("C", first, src.count)
    state.skip_cells[call.outputs[0]] = Cells("F", first, src.count)
    return src.count


def _params_sheet(state, layer, scaling) -> str:
    """A rescaling layer's numbers per channel: a row each for m, d, g and b."""
    if id(layer) in state.weight_sheets:
        return state.weight_sheets[id(layer)]
    name = _sheet_name(layer.name, state.book.sheetnames)
    sheet = state.book.create_sheet(name)
    sheet.cell(1, 1, f"{scaling.words}: a column per channel (last axis)")
    for row, (label, values) in enumerate(
        zip(scaling.names, (scaling.center, scaling.divisor, scaling.gain, scaling.shift)), 3
    ):
        for j, value in enumerate(values):
            sheet.cell(row, j + 1, float(value))
        sheet.cell(row, len(values) + 2, label)
    state.weight_sheets[id(layer)] = name
    return name


def _elementwise_rows(state, call, first, act, skip) -> int:
    """An activation layer (z is the previous value) or Dropout/a left-out layer (a = z)."""
    src, src_skip = state.cells[call.inputs[0]], state.skip_cells[call.inputs[0]]
    for j in range(src.count):
        state.sheet.cell(first + j, 1, j)
        state.sheet.cell(first + j, 2, f"={src.cell(j)}")
        state.sheet.cell(first + j, 5, f"={src_skip.cell(j)}")
    _activation_columns(state, call, first, src.count, act or ("linear", {}), skip)
    return src.count


def _activation_columns(state, call, first, count, act, skip) -> None:
    """Column C (and F): a = activation(z), the formula of the activation the layer applies."""
    z, z_skip = Cells("B", first, count), Cells("E", first, count)
    name, params = act
    for j in range(count):
        state.sheet.cell(first + j, 3, "=" + _activation(name, params, z.cell(j), z.range))
        skipped = (
            f"={z_skip.cell(j)}" if skip else "=" + _activation(name, params, z_skip.cell(j), z_skip.range)
        )
        state.sheet.cell(first + j, 6, skipped)
    state.cells[call.outputs[0]] = Cells("C", first, count)
    state.skip_cells[call.outputs[0]] = Cells("F", first, count)


def _activation(name, params, z, zs) -> str:
    if name == "softmax":
        return EXCEL[name](z, zs, **params)
    return EXCEL[name](z, **params)


def _value_rows(state, ex, index, call, first) -> int:
    """A layer Keras computes: its values (with activations and without), its formula beside."""
    row = first
    skipped = ex.skipped.values if ex.skipped is not None else ex.hand.values
    for key in call.outputs:
        values, without = ex.hand.values[key].ravel(), skipped[key].ravel()
        if row + values.size > MAX_CELLS:
            from xverify.errors import UsageError

            raise UsageError(
                f"the workbook would hold more than {MAX_CELLS} rows (layer "
                f"'{call.label}' alone has {values.size} values); --xlsx is meant for "
                "small models: use --csv or the text for this one."
            )
        for j, (v, w) in enumerate(zip(values, without)):
            state.sheet.cell(row + j, 1, j)
            state.sheet.cell(row + j, 3, float(v))
            state.sheet.cell(row + j, 6, float(w))
        state.sheet.cell(row, 4, f"value computed by Keras: {formula(call.layer)}")
        state.cells[key], state.skip_cells[key] = Cells("C", row, values.size), Cells("F", row, values.size)
        row += values.size
    return row - first


def _weight_sheet(state, layer, kernel, bias) -> str:
    """The layer's weights on their own sheet, laid out as get_weights() prints them."""
    if id(layer) in state.weight_sheets:
        return state.weight_sheets[id(layer)]
    name = _sheet_name(layer.name, state.book.sheetnames)
    sheet = state.book.create_sheet(name)
    n_in = kernel.shape[0]
    sheet.cell(1, 1, f"kernel = get_weights()[0], shape {kernel.shape}: a row per input, a column per unit")
    for i in range(n_in):
        for j in range(kernel.shape[1]):
            sheet.cell(i + 2, j + 1, float(kernel[i, j]))
    sheet.cell(n_in + 3, 1, f"bias = get_weights()[1], shape {bias.shape}")
    for j, value in enumerate(bias):
        sheet.cell(n_in + 4, j + 1, float(value))
    state.weight_sheets[id(layer)] = name
    return name


def _sheet_name(label: str, taken) -> str:
    base = re.sub(r"[\[\]:*?/\\']", "_", label)[:28] or "layer"
    name, n = base, 2
    while name.lower() in {t.lower() for t in taken} or name.lower() == "model":
        name, n = f"{base}_{n}", n + 1
    return name


OUTPUT_COLUMN, WITHOUT_COLUMN, TF_COLUMN = "B", "C", "D"  # of the rows from 3 on, a row per value


def _top(state, ex) -> None:
    """From row 3: each output cell, beside it the output without activations, and TensorFlow's."""
    sheet = state.sheet
    out, out_skip = state.cells[ex.graph.output_keys[0]], state.skip_cells[ex.graph.output_keys[0]]
    for col, header in enumerate(
        [
            "",
            "output",
            "output without the activations",
            "TensorFlow's prediction (float32; fixed, not a formula)",
        ],
        1,
    ):
        sheet.cell(2, col, header)
    for j, value in enumerate(ex.tensorflow_output.ravel()):
        sheet.cell(3 + j, 1, f"output[{j}]")
        sheet.cell(3 + j, 2, f"={out.cell(j)}")
        sheet.cell(3 + j, 3, f"={out_skip.cell(j)}")
        sheet.cell(3 + j, 4, float(value))


def _units_sheet(sheet, details) -> None:
    """--unit: each element's quantities as values, with how each is obtained beside it."""
    sheet.cell(
        1,
        1,
        "One output element of each layer Keras computes (values; the formula of each is written beside it)",
    )
    row = 3
    for d in details:
        sheet.cell(row, 1, f"element [{', '.join(map(str, d.index))}] of '{d.layer}'")
        for r in d.rows:
            row += 1
            sheet.cell(row, 1, r.label)
            sheet.cell(row, 2, r.formula)
            for j, value in enumerate(r.values):
                sheet.cell(row, 3 + j, float(value))
        sheet.cell(row + 1, 1, "Keras' own value")
        sheet.cell(row + 1, 3, d.keras_value)
        row += 3
