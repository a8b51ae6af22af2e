"""The per-layer comparison: every mapped layer across every runtime pair, the first divergence,
the suspects ranked by error growth, and the float64 oracle's verdict where ONNX runtimes disagree.

Runtimes are known only by their declarations (``xverify.runtimes.RUNTIMES``): a runtime whose taps
name Keras layers gives each layer's output in Keras layout; one whose taps name ONNX tensors gives
the layer's tensor, read in the layouts the graph allows (``layout.readings``). Memory stays
bounded: layers are compared in chunks whose tensors fit a byte budget; a runtime that streams (the
NumPy engine) hands its tensors to a callback in one pass, the others are tapped chunk by chunk, and
each chunk's values are released once compared.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xverify.compare import TensorDiff, compare
from xverify.convert import flat_layers
from xverify.errors import gist
from xverify.layers import LayerTensor, map_layers, with_effective_inputs
from xverify.layout import readings
from xverify.report.model import LayerDiff
from xverify.report.records import FirstDivergence, Suspect
from xverify.runtimes import RUNTIMES, Pair, PairDiffs, Runtime, pair, rank

if TYPE_CHECKING:
    import onnx

CHUNK_BYTES = 512 << 20  # per runtime: tapped tensors held at once (3 runtimes: ~1.5 GiB)


def _chunks(rows: list[LayerTensor], keras_model, batch: int) -> list[list[LayerTensor]]:
    by_name = {layer.name: layer for layer in flat_layers(keras_model)}
    chunks: list[list[LayerTensor]] = []
    current: list[LayerTensor] = []
    size = 0
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


def compare_layers(
    keras_model: Any,
    onnx_model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    runners: Mapping[str, Runtime],
    *,
    atol: float,
    rtol: float,
    oracle: Runtime | None = None,
) -> tuple[tuple[LayerDiff, ...], FirstDivergence | None, tuple[Suspect, ...], list[str]]:
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
    names = sorted(runners, key=rank)
    keras_side = [n for n in names if RUNTIMES[n].taps == "keras"]
    streamer = next((n for n in names if RUNTIMES[n].streams), None)
    missing: dict[str, list[str]] = {}

    def finish(chunk, streamed):
        # Keras-layer runtimes first: their (Keras-layout) shapes settle an ONNX tensor's layout.
        values = {}
        for name in keras_side:
            got = _tap(runners[name], feeds, [r.name for r in chunk], notes)
            if got:
                missing.setdefault(name, []).extend(r.name for r in chunk if r.name not in got)
            values[name] = {r.name: [got[r.name]] for r in chunk if r.name in got}
        shapes = {}
        for name in reversed(keras_side):  # the best-ranked runtime's shape last, so it wins
            shapes.update((k, np.shape(v[0])) for k, v in values[name].items())
        for name in names:
            if name in keras_side:
                continue
            got = (
                streamed if name == streamer else _tap(runners[name], feeds, [r.tensor for r in chunk], notes)
            )
            values[name] = {
                r.name: readings(got[r.tensor], r.layout, shapes.get(r.name))
                for r in chunk
                if got.get(r.tensor) is not None
            }
        for row in chunk:
            results[row.name] = _layer_diff(row, values, atol, rtol, notes)

    if streamer is not None:
        _stream(runners[streamer], feeds, chunks, finish)
    else:
        for chunk in chunks:
            finish(chunk, {})
    notes.extend(_untapped_notes(missing))
    ordered = [results[r.name] for r in rows if r.name in results]
    growth = _growth(rows, results)
    ordered = [_with_growth(d, growth.get(d.name, 0.0)) for d in ordered]
    by_name = {d.name: d for d in ordered}
    first = first_divergence(rows, by_name)
    if first is not None and oracle is not None:
        row = next(r for r in rows if r.name == first.layer)
        first = _refereed(first, row, by_name[row.name], feeds, runners, oracle)
    suspects = sorted(
        (
            Suspect(d.name, d.layer_class, round(d.growth, 3))
            for d in ordered
            if not d.passed and d.growth > 0
        ),
        key=lambda s: -s.growth,
    )
    return tuple(ordered), first, tuple(suspects[:5]), notes


def _tap(runner, feeds, names, notes: list):
    """A runtime's layer tensors; a runtime that cannot tap them (a nested Keras model whose layers
    are not reachable from the outer inputs, say) is left out of the layer comparison, and the
    report says so rather than hiding it."""
    try:
        return runner.run(feeds, taps=names)
    except Exception as exc:
        note = f"{runner.name}: layer outputs could not be tapped ({gist(exc)}); layers compared without it"
        if note not in notes:
            notes.append(note)
        return {}


def _untapped_notes(missing: dict[str, list[str]]) -> list[str]:
    """A runtime of the Keras model that keeps no tensor of its own for some layers (its converter
    fused them into the next layer) is compared on the others: say which."""
    notes = []
    for name, layers in missing.items():
        if layers:
            shown = ", ".join(repr(n) for n in layers[:8]) + (
                f" (+{len(layers) - 8} more)" if len(layers) > 8 else ""
            )
            notes.append(
                f"{name}: {len(layers)} layer(s) keep no output tensor of their own there (fused by its "
                f"converter): {shown}; compared without {name}"
            )
    return notes


def _stream(runner, feeds, chunks, finish):
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

    runner.stream(feeds, on_tensor)
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
    """Every runtime pair on one layer. Each side holds a list of readings: one for a Keras-layer
    runtime, one per layout for an ONNX tensor (``layers.readings``): one where the graph decided
    the layout; where it did not, each reading is compared with the Keras-layout side, the closest
    is kept, and a note says so (never a guess from the shape alone)."""
    diffs: dict[Pair, TensorDiff] = {}
    for p in _pairs_of(values):
        va, vb = values[p.a].get(row.name), values[p.b].get(row.name)
        if va is None or vb is None:
            continue
        found = [
            compare(x, y, atol=layer_atol(y, atol, rtol), rtol=rtol, a_name=p.a, b_name=p.b, output=row.name)
            for x, y in _readings_compared(p, va, vb)
        ]
        diffs[p] = min(found, key=lambda d: (not d, d.max_abs_diff))
        if len(found) > 1:
            note = (
                f"layer {row.name!r}: the graph does not decide how ONNX tensor "
                f"{row.tensor!r} reads as the Keras output ({len(found)} readings fit its "
                "shape); each was compared and the closest kept"
            )
            if note not in notes:
                notes.append(note)
    return LayerDiff(
        row.name,
        row.layer_class,
        row.tensor,
        row.nodes,
        PairDiffs(diffs),
        all(diffs.values()) if diffs else True,
    )


def _pairs_of(values) -> list[Pair]:
    """The pairs in the order the report has always listed them: by reference, then by runtime."""
    names = sorted(values, key=rank)
    return [Pair(a, b) for i, b in enumerate(names) for a in names[i + 1 :]]


def _readings_compared(p: Pair, va: list, vb: list) -> list[tuple]:
    """An ONNX side's readings against a Keras side's value; two sides of one kind: first readings."""
    keras_a, keras_b = RUNTIMES[p.a].taps == "keras", RUNTIMES[p.b].taps == "keras"
    if keras_b and not keras_a:
        return [(x, vb[0]) for x in va]
    if keras_a and not keras_b:
        return [(va[0], y) for y in vb]
    return [(va[0], vb[0])]


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


def first_divergence(rows, diffs: dict[str, LayerDiff]) -> FirstDivergence | None:
    """The earliest failing layer all of whose inputs (nearest compared ancestors) are within
    tolerance for the same runtime pair."""
    for row in rows:
        d = diffs.get(row.name)
        if d is None or d.passed:
            continue
        for p, diff in sorted(d.diffs.items(), key=lambda kv: -kv[1].max_abs_diff):
            inputs_ok = all(p not in diffs[i].diffs or diffs[i].diffs[p] for i in row.inbound if i in diffs)
            if not diff and inputs_ok:
                return FirstDivergence(
                    layer=row.name,
                    layer_class=row.layer_class,
                    a=diff.a,
                    b=diff.b,
                    max_abs_diff=diff.max_abs_diff,
                    onnx_tensor=row.tensor,
                    onnx_nodes=tuple(row.nodes),
                    diverged=_who(d),
                    pairs={str(q): bool(x) for q, x in d.diffs.items()},
                )
    return None


def _refereed(
    first: FirstDivergence, row: LayerTensor, diff: LayerDiff, feeds, runners, oracle
) -> FirstDivergence:
    """Where runtimes of the ONNX graph disagree on a layer, say which is farther from the float64
    oracle.

    The oracle computes the ONNX graph exactly, so it arbitrates rounding between runtimes of the
    same graph; it cannot judge a conversion fault (there, the graph itself is what differs).
    """
    split = [p for p, d in diff.diffs.items() if not d and _runs_onnx(p.a) and _runs_onnx(p.b)]
    sides = [n for n in RUNTIMES if n in runners and any(n in p for p in split)]
    if len(sides) < 2:
        return first
    exact = oracle.run(feeds, taps=[row.tensor])[row.tensor]
    distances: dict[str, float] = {}
    for name in sides:
        got = runners[name].run(feeds, taps=[row.tensor]).get(row.tensor)
        if got is not None and np.shape(got) == np.shape(exact):
            distances[name] = float(np.max(np.abs(np.asarray(got, np.float64) - exact)))
    if len(distances) < 2:
        return first
    far = max(distances, key=lambda name: distances[name])
    return dataclasses.replace(
        first,
        oracle_distances=distances,
        diverged=(
            f"{far} is farther from the float64 oracle at this layer "
            f"({', '.join(f'{k} {v:.3g}' for k, v in distances.items())})"
        ),
    )


def _runs_onnx(name: str) -> bool:
    return RUNTIMES[name].runs_onnx


def _who(diff: LayerDiff) -> str:
    """Which side diverged, from which pairs agree with the reference (the best-ranked runtime).

    Runtimes of the ONNX graph that agree with each other and all differ from a reference that runs
    the Keras model: the conversion is at fault. Otherwise the runtimes of the graph that agree with
    the reference acquit themselves and blame the others; a lone runtime of the Keras model
    (TFLite) that differs from the reference while every other agrees is at fault itself."""
    ok = {p for p, d in diff.diffs.items() if d}
    names = sorted({n for p in diff.diffs for n in (p.a, p.b)}, key=rank)
    if len(names) < 2:
        return ""
    ref, others = names[0], names[1:]
    graph = sorted((n for n in others if _runs_onnx(n)), key=list(RUNTIMES).index)
    agree = [n for n in graph if pair(n, ref) in ok]
    differ = [n for n in others if pair(n, ref) in diff.diffs and pair(n, ref) not in ok]
    label = RUNTIMES[ref].label
    graph_agrees = len(graph) >= 2 and all(
        pair(x, y) in ok for i, x in enumerate(graph) for y in graph[i + 1 :]
    )
    if graph_agrees and not _runs_onnx(ref) and not agree:
        both = "both" if len(graph) == 2 else "all"
        return f"{_and(graph)} agree on the ONNX graph and {both} differ from {label}: the conversion is at fault"
    if agree and len(agree) < len(graph):
        if len(graph) == 2:
            return f"{agree[0]} agrees with {label}: the other ONNX runtime is at fault"
        faulty = [n for n in graph if n not in agree]
        verb = "agrees" if len(agree) == 1 else "agree"
        return f"{_and(agree)} {verb} with {label}: {_and(faulty)} {'is' if len(faulty) == 1 else 'are'} at fault"
    if len(differ) == 1 and len(others) > 1 and all(pair(n, ref) in ok for n in others if n != differ[0]):
        return f"{differ[0]} alone differs from {label}, which the other runtimes agree with: {differ[0]} is at fault"
    return ""


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
