"""``xverify weights``: each Keras layer's weights as read back from the ONNX initializers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from xverify.extract.results import LayerWeights
from xverify.load import StrPath


def load_weights(path: StrPath, unsafe: bool = False) -> Sequence[LayerWeights]:
    """Per-layer weights of a model file: matched against Keras, or read from a lone .onnx."""
    from xverify.extract import match_weights, onnx_weights
    from xverify.load import detect_format, load_keras, load_onnx

    if detect_format(path) == "onnx":
        return onnx_weights(load_onnx(path))
    from xverify.convert import convert

    keras_model = load_keras(path, unsafe=unsafe)
    return match_weights(keras_model, convert(keras_model)).layers


def _preview(values: Any, count: int) -> str:
    if values is None:
        return "-"
    flat = np.asarray(values).ravel()
    text = " ".join(f"{v:.6g}" for v in flat[:count])
    return text + (f" … (+{flat.size - count})" if flat.size > count else "")


def print_weights(layers: Sequence[LayerWeights], console: Console, verbose: bool = False) -> None:
    """Per layer, each weight in get_weights() order: shape, source initializer, transform, diff,
    and a preview of its values (Keras layout). A listing, not a table, so it reads at any width."""
    console.print(
        "[bold]Weights and biases read back from the ONNX initializers[/] (Keras layout, get_weights() order)"
    )
    for layer in layers:
        console.print(f"\n[bold]{layer.layer}[/] ({layer.layer_class})", highlight=False)
        for w in layer.weights:
            values = w.onnx_value if w.onnx_value is not None else w.keras_value
            diff = "-" if w.max_abs_diff is None else f"{w.max_abs_diff:.3g}"
            verdict = "" if w.passed else "  [bold red]FAIL[/]"
            console.print(
                f"  {escape(w.name)} {tuple(w.shape)}  {escape(f'[{w.transform}]')}  max abs diff {diff}"
                f"{verdict}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
            console.print(
                f"    from: {w.onnx_initializer or '-'}", highlight=False, style="dim", soft_wrap=True
            )
            console.print(
                f"    values: {_preview(values, 16 if verbose else 6)}", highlight=False, soft_wrap=True
            )


def save_npz(layers: Sequence[LayerWeights], path: StrPath) -> None:
    """Save every weight as ``<layer>/<weight>`` in Keras layout."""
    arrays: dict[str, np.ndarray] = {}
    for layer in layers:
        for w in layer.weights:
            values = w.onnx_value if w.onnx_value is not None else w.keras_value
            if values is not None:
                arrays[f"{w.layer}/{w.name}"] = np.asarray(values)
    # numpy's stub types savez(**kwds) beside a bool allow_pickle, so a dict of arrays reads as both
    np.savez(path, **arrays)  # type: ignore[arg-type]
