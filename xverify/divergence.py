"""The per-layer comparison: every mapped layer across every runtime pair, the first divergence,
the suspects ranked by error growth, and the float64 oracle's verdict where ONNX runtimes disagree.

Memory stays bounded: layers are compared in chunks whose tensors fit a byte budget; the NumPy engine
streams its tensors through a callback and each chunk's values are released once compared.
"""

from __future__ import annotations

import math

import numpy as np

from xverify.compare import compare
from xverify.convert import flat_layers
from xverify.layers import LayerTensor, map_layers, with_effective_inputs
from xverify.layout import readings
from xverify.report.model import LayerDiff

CHUNK_BYTES = 512 << 20  # per runtime: tapped tensors held at once (3 runtimes: ~1.5 GiB)


def _chunks(rows: list[LayerTensor], keras_model, batch: int) -> list[list[LayerTensor]]:
    by_name = {layer.name: layer for layer in flat_layers(keras_model)}
    chunks, current, size = [], [], 0
    for row in rows:
        shape = getattr(by_name[row.name], "output", None)
        shape = getattr(shape, "shape", None) or ()
        nbytes = 4 * batch * math.prod(d or 1 for d in tuple(shape)[1:])
        if current and size + nbytes > CHUNK_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += nbytes
    return chunks + ([current] if current else [])


def compare_layers(keras_model, onnx_model, feeds, runners, *, atol, rtol, oracle=None):
    """Compare every mapped layer across every pair of runtimes, chunk by chunk.

    Args:
        oracle: a float64 NumPy runtime; where the ONNX runtimes disagree at the first divergence,
            the one farthest from it is named.

    Returns:
        ``(layer_diffs, first_divergence, suspects, notes)``.
    """
    every = map_layers(keras_model, onnx_model)
    rows = with_effective_inputs(every)
    if not rows or len(runners) < 2:
        return (), None, (), []
    batch = int(next(iter(feeds.values())).shape[0])
    chunks = _chunks(rows, keras_model, batch)
    results: dict[str, LayerDiff] = {}
    notes: list[str] = []
    every_tensor = [r.tensor for r in rows]  # one ONNX Runtime session taps them all

    def finish(chunk, numpy_values):
        # TensorFlow first: its (Keras-layout) shapes settle an ONNX tensor's layout.
        values = {}
        if "tensorflow" in runners:
            names = [r.name for r in chunk]
            values["tensorflow"] = _tap(runners["tensorflow"], feeds, names, notes, fetch=names)
        shapes = {k: np.shape(v) for k, v in values.get("tensorflow", {}).items()}
        onnx_side = {
            "numpy": lambda: numpy_values,
            "onnxruntime": lambda: _tap(
                runners["onnxruntime"], feeds, every_tensor, notes, fetch=[r.tensor for r in chunk]
            ),
        }
        for name in runners:
            if name in onnx_side:
                got = onnx_side[name]()
                values[name] = {
                    r.name: readings(got[r.tensor], r.layout, shapes.get(r.name))
                    for r in chunk
                    if got.get(r.tensor) is not None
                }
        for row in chunk:
            results[row.name] = _layer_diff(row, values, atol, rtol, notes)

    if "numpy" in runners:
        _stream_numpy(runners["numpy"], feeds, chunks, finish)
    else:
        for chunk in chunks:
            finish(chunk, {})
    ordered = [results[r.name] for r in rows if r.name in results]
    growth = _growth(rows, results)
    ordered = [_with_growth(d, growth.get(d.name, 0.0)) for d in ordered]
    first = first_divergence(rows, {d.name: d for d in ordered})
    if first is not None and oracle is not None:
        _referee(first, next(r for r in rows if r.name == first["layer"]), feeds, runners, oracle)
    suspects = sorted(
        (
            {"layer": d.name, "class": d.layer_class, "growth": round(d.growth, 3)}
            for d in ordered
            if not d.passed and d.growth > 0
        ),
        key=lambda s: -s["growth"],
    )
    return tuple(ordered), first, tuple(suspects[:5]), notes


def _tap(runner, feeds, names, notes: list, **kwargs):
    """A runtime's layer tensors; a runtime that cannot tap them (a nested Keras model whose layers
    are not reachable from the outer inputs, say) is left out of the layer comparison, and the
    report says so rather than hiding it."""
    try:
        return runner.run(feeds, taps=names, **kwargs)
    except Exception as exc:
        note = (
            f"{runner.name}: layer outputs could not be tapped ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); layers compared without it"
        )
        if note not in notes:
            notes.append(note)
        return {}


def _stream_numpy(runner, feeds, chunks, finish):
    wanted = {r.tensor: i for i, chunk in enumerate(chunks) for r in chunk}
    pending = [{r.tensor for r in chunk} for chunk in chunks]
    held: dict[str, np.ndarray] = {}

    def on_tensor(name, value):
        index = wanted.get(name)
        if index is None:
            return
        held[name] = value
        pending[index].discard(name)
        if not pending[index]:
            finish(chunks[index], held)
            for r in chunks[index]:
                held.pop(r.tensor, None)

    runner.run(feeds, on_tensor=on_tensor)
    for index, chunk in enumerate(chunks):  # tensors the engine never produced: compare the rest
        if pending[index]:
            finish([r for r in chunk if r.tensor in held], held)


def layer_atol(reference: np.ndarray, atol: float, rtol: float) -> float:
    """The absolute tolerance of a hidden layer: at least ``rtol`` times the layer's largest value.

    Float32 rounding of a sum is relative to the size of its terms, not of its result: where terms
    cancel to near zero, the elementwise ``rtol * |b|`` vanishes while the rounding does not (seen on
    deep CNNs with realistic activations: runtimes of the same graph differ by 2e-4 on layers whose
    values reach 9). So a layer is judged norm-wise at its own scale. A real fault moves values by a
    sizeable fraction of that scale and still fails; the outputs keep the elementwise rule.
    """
    reference = np.asarray(reference)
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    if not np.isfinite(scale):  # rare: only then pay for a copy of the finite values
        finite = np.abs(reference[np.isfinite(reference)])
        scale = float(finite.max()) if finite.size else 0.0
    return max(float(atol), float(rtol) * scale)


def _layer_diff(row, values, atol, rtol, notes: list) -> LayerDiff:
    """Every runtime pair on one layer. An ONNX side holds a list of readings (``layers.readings``):
    one where the graph decided the layout; where it did not, each reading is compared with
    TensorFlow, the closest is kept, and a note says so (never a guess from the shape alone)."""
    diffs = {}
    names = [n for n in ("tensorflow", "onnxruntime", "numpy") if n in values]
    for i, b in enumerate(names):
        for a in names[i + 1 :]:
            va, vb = values[a].get(row.name), values[b].get(row.name)
            if va is None or vb is None:
                continue
            options = va if b == "tensorflow" else va[:1]
            reference = vb if b == "tensorflow" else vb[0]
            found = [
                compare(
                    v,
                    reference,
                    atol=layer_atol(reference, atol, rtol),
                    rtol=rtol,
                    a_name=a,
                    b_name=b,
                    output=row.name,
                )
                for v in options
            ]
            diffs[f"{a}|{b}"] = min(found, key=lambda d: (not d, d.max_abs_diff))
            if len(options) > 1:
                note = (
                    f"layer {row.name!r}: the graph does not decide how ONNX tensor "
                    f"{row.tensor!r} reads as the Keras output ({len(options)} readings fit its "
                    "shape); each was compared and the closest kept"
                )
                if note not in notes:
                    notes.append(note)
    return LayerDiff(
        row.name, row.layer_class, row.tensor, row.nodes, diffs, all(diffs.values()) if diffs else True
    )


def _error(diff: LayerDiff | None) -> float:
    """A layer's worst normalised error: max abs diff over the allowed difference."""
    if diff is None or not diff.diffs:
        return 0.0
    return max(d.max_abs_diff / (d.atol + d.rtol) for d in diff.diffs.values())


def _growth(rows, results) -> dict[str, float]:
    """How sharply the error grows across each layer: log10 of output error over input error
    (errors in units of the tolerance, floored at 1e-3 so exact agreement is not a zero)."""
    growth = {}
    for row in rows:
        err_in = max((_error(results.get(n)) for n in row.inbound), default=0.0)
        err_out = _error(results.get(row.name))
        if not math.isfinite(err_out):
            growth[row.name] = 0.0 if not math.isfinite(err_in) else float("inf")
        elif not math.isfinite(err_in):
            growth[row.name] = float("-inf")
        else:
            growth[row.name] = math.log10((err_out + 1e-3) / (err_in + 1e-3))
    return growth


def _with_growth(diff: LayerDiff, growth: float) -> LayerDiff:
    return LayerDiff(
        diff.name, diff.layer_class, diff.onnx_tensor, diff.onnx_nodes, diff.diffs, diff.passed, growth
    )


def first_divergence(rows, diffs: dict[str, LayerDiff]) -> dict | None:
    """The earliest failing layer all of whose inputs (nearest compared ancestors) are within
    tolerance for the same runtime pair."""
    for row in rows:
        d = diffs.get(row.name)
        if d is None or d.passed:
            continue
        for pair, diff in sorted(d.diffs.items(), key=lambda kv: -kv[1].max_abs_diff):
            inputs_ok = all(
                pair not in diffs[p].diffs or diffs[p].diffs[pair] for p in row.inbound if p in diffs
            )
            if not diff and inputs_ok:
                return {
                    "layer": row.name,
                    "class": row.layer_class,
                    "a": diff.a,
                    "b": diff.b,
                    "max_abs_diff": diff.max_abs_diff,
                    "onnx_tensor": row.tensor,
                    "onnx_nodes": list(row.nodes),
                    "diverged": _who(d),
                    "pairs": {p: bool(x) for p, x in d.diffs.items()},
                }
    return None


def _referee(first: dict, row: LayerTensor, feeds, runners, oracle) -> None:
    """Where the ONNX runtimes disagree on a layer, say which is farther from the float64 oracle.

    The oracle computes the ONNX graph exactly, so it arbitrates rounding between runtimes of the
    same graph; it cannot judge a conversion fault (there, the graph itself is what differs).
    """
    onnx_sides = [n for n in ("numpy", "onnxruntime") if n in runners]
    pair = "numpy|onnxruntime"  # the key _layer_diff gives this pair (reference side last)
    if len(onnx_sides) < 2 or first["pairs"].get(pair, True):
        return
    exact = oracle.run(feeds, taps=[row.tensor])[row.tensor]
    distances = {}
    for name in onnx_sides:
        got = runners[name].run(feeds, taps=[row.tensor]).get(row.tensor)
        if got is not None and np.shape(got) == np.shape(exact):
            distances[name] = float(np.max(np.abs(np.asarray(got, np.float64) - exact)))
    if len(distances) == 2:
        far = max(distances, key=distances.get)
        first["oracle_distances"] = distances
        first["diverged"] = (
            f"{far} is farther from the float64 oracle at this layer "
            f"({', '.join(f'{k} {v:.3g}' for k, v in distances.items())})"
        )


def _who(diff: LayerDiff) -> str:
    """Which side diverged, from which pairs agree."""
    ok = {pair for pair, d in diff.diffs.items() if d}
    if "onnxruntime|numpy" in ok or "numpy|onnxruntime" in ok:
        return (
            "numpy and onnxruntime agree on the ONNX graph and both differ from TensorFlow: "
            "the conversion is at fault"
        )
    for pair in ok:
        sides = pair.split("|")
        if "tensorflow" in sides:
            agree = next(side for side in sides if side != "tensorflow")
            return f"{agree} agrees with TensorFlow: the other ONNX runtime is at fault"
    return ""
