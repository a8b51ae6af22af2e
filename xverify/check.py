"""Orchestration of ``xverify.check``: load, convert, run every runtime on the same inputs, compare.

No numerics live here: conversion is convert.py, weights extract/, kernels engine/, metrics
compare.py, the layer map layers.py, the per-layer comparison divergence.py. This module only
sequences them and times each stage.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xverify.budget import Budget, require_graph
from xverify.compare import DEFAULT_ATOL, DEFAULT_RTOL, TensorDiff, compare
from xverify.errors import ConversionError, InputDataError, UsageError, XverifyError
from xverify.inputs import dims_note, fit_inputs, fixed_batch, input_specs, load_inputs, synthetic
from xverify.report.model import CheckReport, LayerDiff
from xverify.report.records import FirstDivergence, InputsInfo, ModelInfo, OracleDistance, Suspect
from xverify.runtimes import (
    DEFAULT_RUNTIMES,
    RUNTIMES,
    Runtime,
    RuntimeUnavailable,
    Subject,
    pairs,
    select,
    spec_of,
)

if TYPE_CHECKING:
    import onnx

    from xverify.extract.results import WeightMatch
    from xverify.inputs import InputSpec
    from xverify.load import ModelSource

Arrays = dict[str, np.ndarray]  # tensor name -> value
Runtimes = str | Iterable[str]  # "numpy,onnxruntime", a sequence of names, or "all"
PerOutput = Mapping[str, tuple[float, float]] | None  # output name -> (atol, rtol) of its own

RUNTIME_NAMES = tuple(RUNTIMES)  # the registry's names (xverify.runtimes.RUNTIMES)


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def parse_runtimes(runtimes: Runtimes, notes: list[str] | None = None) -> tuple[str, ...]:
    """Normalise ``"numpy,onnxruntime"``, a sequence or ``"all"`` (``xverify.runtimes.select``)."""
    return select(runtimes, [] if notes is None else notes)


def check(
    model: Any,
    *,
    onnx: Any = None,
    inputs: Any = None,
    samples: int = 16,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    runtimes: Runtimes = DEFAULT_RUNTIMES,
    layers: bool = True,
    opset: int | None = None,
    oracle: bool = True,
    ort_optimized: bool = True,
    cache: bool = True,
    unsafe: bool = False,
    max_memory: int | str | None = None,
    tolerances: Mapping[str, tuple[float, float] | str] | None = None,
) -> CheckReport:
    """Check that the ONNX export of a model computes what the model computes.

    Args:
        model: path to a ``.keras``/``.h5``/SavedModel/``.onnx`` file, or a Keras model object.
        onnx: an ONNX file (or ModelProto) to check instead of converting the model here.
        inputs: a ``.npz``/``.npy``/``.csv`` path or a dict of arrays; None for seeded synthetic data.
        samples, seed: size and seed of the synthetic inputs.
        atol, rtol: tolerance of every comparison (defaults in ``xverify.compare``).
        runtimes: which registered runtimes to run (``xverify.runtimes.RUNTIMES``: numpy,
            onnxruntime, tensorflow, openvino, tflite), or "all" (those installed; a note names the
            others).
        layers: compare every layer's output and name the first divergence.
        opset: ONNX opset for the conversion (13..18).
        oracle: also run the NumPy engine in float64 and report each runtime's distance from it.
        ort_optimized: also compare ONNX Runtime with graph optimizations on against off.
        cache: reuse a cached conversion of an unchanged model file.
        unsafe: allow Keras to run code stored in the model file (Lambda layers).
        max_memory: the memory budget (bytes, or text such as ``"6GiB"``; default a quarter of the
            machine's): a file, input batch or tensor declaring more is refused before it is read
            or allocated.
        tolerances: per-output (atol, rtol), e.g. ``{"probs": (1e-5, 1e-4)}`` (or ``"1e-5/1e-4"``),
            for that output's comparisons and oracle rows; names are ONNX or Keras output names.

    Returns:
        A CheckReport; ``bool(report)`` is True when everything agreed within tolerance.
    """
    timer = _Timer()
    from xverify import config

    atol, rtol = _tolerance(atol, DEFAULT_ATOL, "atol"), _tolerance(rtol, DEFAULT_RTOL, "rtol")
    config.normalise(tolerances)  # bad numbers fail before anything is loaded
    absent: list[str] = []
    names = _validate(_for_model_file(model, runtimes, absent), inputs, samples, absent)
    budget = Budget.parse(max_memory)
    with timer.stage("load"):
        keras_model, source = _load_model(model, unsafe, budget)
    onnx_model, onnx_path, notes = _onnx_model(keras_model, source, onnx, opset, cache, timer, budget)
    notes.extend(absent)
    names = _usable_runtimes(names, keras_model, notes)
    _check_enough(names, oracle)
    per_output = config.resolve(tolerances, onnx_model, keras_model)
    specs = input_specs(onnx_model)
    with timer.stage("inputs"):
        feeds, input_source = _feeds(inputs, specs, samples, seed, budget)
        require_graph(onnx_model, int(next(iter(feeds.values())).shape[0]) if feeds else 1, budget)
        notes.extend(_non_finite_inputs(feeds))
    # before any runtime holds its copy of the weights: matching makes several of its own
    weights, unattributed = _weights(keras_model, onnx_model, notes, timer)

    # Fixed batches are split for ONNX files alone: layer comparisons stream whole tensors.
    batch = fixed_batch(specs) if not _is_keras(keras_model) else None
    sample_count = len(next(iter(feeds.values()))) if feeds else 0
    notes.extend(n for n in [dims_note(specs, sample_count), _batch_note(batch, sample_count)] if n)
    subject = Subject(onnx_model, keras_model, _is_saved_model(keras_model))
    runners = _build_runtimes(names, subject, timer, batch, notes)
    _check_enough(tuple(runners), oracle)
    outputs, failed = {}, {}
    for name, runner in runners.items():
        with timer.stage(f"run_{name}"):
            try:
                outputs[name] = _named_outputs(runner.run(_feeds_for(name, feeds, runner)), onnx_model, name)
            except XverifyError:
                raise
            except Exception as exc:  # judged below, once every runtime has tried
                failed[name] = exc
    _graph_runs(failed, tuple(runners), onnx_path or (source.path if source else None))
    extra, variant_outputs, variant_blame = _variant_runs(
        tuple(runners), subject, feeds, outputs, ort_optimized, atol, rtol, timer, batch, per_output
    )
    oracle_rows, referee = _oracle_runs(
        tuple(runners),
        subject,
        feeds,
        {**outputs, **variant_outputs},
        oracle,
        atol,
        rtol,
        timer,
        batch,
        per_output,
    )
    with timer.stage("compare"):
        comparisons = _compare_outputs(outputs, atol, rtol, per_output) + extra
        comparisons, refereed = _engine_rounding(comparisons, oracle_rows)
        notes.extend(refereed + _farther_from_oracle(comparisons, oracle_rows))
    layer_rows: tuple[LayerDiff, ...] = ()
    first: FirstDivergence | None = None
    suspects: tuple[Suspect, ...] = ()
    if layers and _is_keras(keras_model):
        with timer.stage("layers"):
            from xverify.divergence import compare_layers

            layer_rows, first, suspects, layer_notes = compare_layers(
                keras_model, onnx_model, feeds, runners, atol=atol, rtol=rtol, oracle=referee
            )
            notes.extend(layer_notes)
    return CheckReport(
        model=ModelInfo(
            path=source.path if source else None,
            format=source.format if source else "keras-object",
            onnx_path=onnx_path,
            opset=_opset(onnx_model),
            sha256=source.sha256 if source else None,
        ),
        inputs=InputsInfo(
            source=input_source,
            seed=seed if input_source == "synthetic" else None,
            samples=int(next(iter(feeds.values())).shape[0]) if feeds else 0,
            tensors=tuple(specs),
        ),
        tolerance=config.report_field(atol, rtol, per_output),
        comparisons=tuple(comparisons),
        weights=weights,
        unattributed=unattributed,
        layers=tuple(layer_rows),
        first_divergence=first,
        suspects=tuple(suspects),
        oracle=tuple(oracle_rows),
        versions=_with_runtime_versions(versions(), runners),
        timings=timer.timings,
        notes=tuple(notes),
        ort_optimizations=variant_blame,
    )


def _tolerance(value: float | str | None, default: float, name: str) -> float:
    """A tolerance must be a finite number >= 0 (NaN would pass or fail everything silently)."""
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"--{name} {value}: expected a finite number >= 0 (default {default}).")
    return number


def _non_finite_inputs(feeds: Arrays) -> list[str]:
    """A note naming the inputs that hold NaN or infinities (compared position by position)."""
    found = []
    for name, array in feeds.items():
        if array.dtype.kind != "f":
            continue
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            found.append(f"{name!r} {nan} NaN and {inf} infinite value(s)")
    if not found:
        return []
    return [
        f"the inputs hold non-finite values ({'; '.join(found)}): outputs are compared "
        "position by position, where NaN on both sides at the same place agrees, NaN on one "
        "side only is a mismatch, and equal infinities agree"
    ]


def _validate(runtimes: Runtimes, inputs: object, samples: int, notes: list[str]) -> tuple[str, ...]:
    """Argument checks that need no file: runtime names (installed), sample count."""
    names = parse_runtimes(runtimes, notes)
    if inputs is None and int(samples) < 1:
        raise UsageError(f"--samples {samples}: expected a positive number of samples (default 16).")
    return names


def _for_model_file(model: object, runtimes: Runtimes, notes: list[str]) -> Runtimes:
    """What the model file settles before any runtime's installation is checked: a Keras file
    needs the ``keras`` extra (one message saying so), and an ONNX file has no Keras model to
    run, so the runtimes of one are skipped (noted) and need not be installed."""
    from xverify.load import KERAS_FORMATS, detect_format, require_tensorflow
    from xverify.runtimes import ALL

    if not isinstance(model, (str, Path)) or not Path(model).is_file():
        return runtimes
    fmt = detect_format(model)
    if fmt in KERAS_FORMATS:
        require_tensorflow(model)
    requested = [r.strip() for r in (runtimes.split(",") if isinstance(runtimes, str) else runtimes)]
    if fmt != "onnx" or requested == [ALL]:
        return runtimes
    skipped = [n for n in requested if n in RUNTIMES and RUNTIMES[n].taps == "keras"]
    if len(skipped) == len(requested):  # nothing left: the usual refusal says why
        return runtimes
    notes.extend(f"{n} skipped: the model is an ONNX file, not a Keras model" for n in skipped)
    return [n for n in requested if n not in skipped]


def _usable_runtimes(names: tuple[str, ...], keras_model: Any, notes: list[str]) -> tuple[str, ...]:
    """A runtime of the Keras model needs one (the model may be an ONNX file)."""
    if keras_model is not None:
        return names
    skipped = [n for n in names if RUNTIMES[n].taps == "keras"]
    notes.extend(f"{n} skipped: the model is an ONNX file, not a Keras model" for n in skipped)
    return tuple(n for n in names if n not in skipped)


def _check_enough(names: tuple[str, ...], oracle: bool) -> None:
    """A check needs two witnesses (or one that brings its float64 oracle)."""
    if len(names) < 2 and not (oracle and any(RUNTIMES[n].oracle for n in names)):
        raise UsageError(f"runtimes {list(names)}: a check needs at least two runtimes to compare.")


def _is_keras(model: Any) -> bool:
    return model is not None and not _is_saved_model(model)


def _weights(
    keras_model: Any, onnx_model: onnx.ModelProto, notes: list[str], timer: _Timer
) -> tuple[tuple[WeightMatch, ...], tuple[str, ...]]:
    """Every Keras weight matched to the ONNX initializers (a SavedModel has none to match)."""
    if _is_saved_model(keras_model):
        notes.append("weights and layers not compared: a SavedModel has no Keras layers")
    if not _is_keras(keras_model):
        return (), ()
    with timer.stage("weights"):
        from xverify.extract import match_weights

        report = match_weights(keras_model, onnx_model)
    # the report keeps the figures, not each weight's two arrays (a second copy of the model)
    weights = tuple(
        dataclasses.replace(w, keras_value=None, onnx_value=None)
        for layer in report.layers
        for w in layer.weights
    )
    return weights, tuple(report.unattributed)


def _load_model(model: Any, unsafe: bool, budget: Budget) -> tuple[Any, ModelSource | None]:
    from xverify import load

    if isinstance(model, (str, Path)):
        loaded, source = load.open_model(model, unsafe=unsafe, budget=budget)
        if source.format == "onnx":
            return None, source
        return loaded, source
    if model is None:
        raise UsageError(
            "model None: expected a model file path or a Keras model object (xverify.check('model.keras'))."
        )
    return model, None


def _onnx_model(
    keras_model: Any,
    source: ModelSource | None,
    onnx: Any,
    opset: int | None,
    cache: bool,
    timer: _Timer,
    budget: Budget,
) -> tuple[onnx.ModelProto, str | None, list[str]]:
    from xverify import load

    notes: list[str] = []
    if onnx is not None:
        with timer.stage("load_onnx"):
            if isinstance(onnx, (str, Path)):
                return load.load_onnx(onnx, budget), str(onnx), notes
            load.check_initializers(onnx, "the ONNX model")
            return onnx, None, notes
    if keras_model is None and source is not None:  # the model itself is an ONNX file
        with timer.stage("load_onnx"):
            return load.load_onnx(source.path, budget), source.path, notes
    onnx_model = _converted(keras_model, source, opset, cache, timer, notes)
    load.check_initializers(onnx_model, source.path if source else "the Keras model")
    return onnx_model, None, notes


def _converted(
    keras_model: Any,
    source: ModelSource | None,
    opset: int | None,
    cache: bool,
    timer: _Timer,
    notes: list[str],
) -> onnx.ModelProto:
    """The Keras model (or SavedModel) converted here, or its cached conversion."""
    from xverify.convert import convert, convert_saved_model

    converter: Callable[[], onnx.ModelProto] = (
        functools.partial(convert_saved_model, source.path, opset)
        if source is not None and source.format == "savedmodel"
        else functools.partial(convert, keras_model, opset)
    )
    with timer.stage("convert"):
        if cache and source is not None:
            from xverify.cache import cached_convert

            onnx_model, hit = cached_convert(converter, source, opset)
            notes.append("conversion reused from cache" if hit else "conversion cached")
        else:
            onnx_model = converter()
    return onnx_model


def _feeds(
    inputs: Any, specs: list[InputSpec], samples: int, seed: int, budget: Budget
) -> tuple[Arrays, str]:
    if inputs is None:
        return synthetic(specs, samples, seed, budget), "synthetic"
    if isinstance(inputs, dict):
        return fit_inputs(inputs, specs, "inputs"), "dict"
    return load_inputs(inputs, specs, budget), str(inputs)


def _batched(runner: Runtime, batch: int | None) -> Runtime:
    from xverify.runtimes.batched import Batched

    return runner if batch is None else Batched(runner, batch)


def _batch_note(batch: int | None, samples: int) -> str | None:
    if batch is None or samples == batch:
        return None
    return (
        f"the model's inputs fix their first dimension to {batch}: the {samples} samples ran "
        f"as {samples // batch} batches of {batch} in every runtime"
    )


def _build_runtimes(
    names: tuple[str, ...], subject: Subject, timer: _Timer, batch: int | None, notes: list[str]
) -> dict[str, Runtime]:
    """Each runtime built from the registry; one that cannot take this model is a note.

    A runtime of the Keras model is not batched: fixed batches are an ONNX file's."""
    runners: dict[str, Runtime] = {}
    for name in names:
        spec = RUNTIMES[name]
        with timer.stage(f"init_{name}"):
            try:
                runner = spec.build(subject)
            except RuntimeUnavailable as exc:
                notes.append(f"{name} skipped: {exc}")
                continue
        notes.extend(getattr(runner, "notes", ()))
        runners[name] = _batched(runner, None if spec.taps == "keras" else batch)
    return runners


def _is_saved_model(model: Any) -> bool:
    """A SavedModel handle (tf.saved_model.load) rather than a Keras model: no layers, no weights."""
    return model is not None and hasattr(model, "signatures") and not hasattr(model, "layers")


def _feeds_for(name: str, feeds: Arrays, runner: Any) -> Arrays:
    """A runtime of the Keras model takes Keras input names; a foreign ONNX file may name its inputs
    otherwise."""
    if RUNTIMES[name].taps != "keras" or set(runner.input_names) == set(feeds):
        return feeds
    if len(runner.input_names) != len(feeds):
        raise InputDataError(
            f"the ONNX model has inputs {list(feeds)} but the Keras model has "
            f"{runner.input_names}: they do not correspond."
        )
    return dict(zip(runner.input_names, feeds.values()))


def _named_outputs(result: Mapping[str, np.ndarray], onnx_model: onnx.ModelProto, runtime: str) -> Arrays:
    """Key every runtime's outputs by the ONNX output names (positionally if names differ)."""
    onnx_names = [o.name for o in onnx_model.graph.output]
    if all(n in result for n in onnx_names):
        return {n: result[n] for n in onnx_names}
    values = list(result.values())[: len(onnx_names)]
    if len(values) != len(onnx_names):
        raise InputDataError(
            f"{runtime} returned {len(result)} output(s) but the ONNX model has "
            f"{len(onnx_names)} ({onnx_names})."
        )
    return dict(zip(onnx_names, values))


def _compare_outputs(
    outputs: dict[str, Arrays], atol: float, rtol: float, per_output: PerOutput = None
) -> list[TensorDiff]:
    diffs = []
    for pair in pairs(list(outputs)):
        a, b = pair.a, pair.b
        for name in outputs[b]:
            at, rt = _tolerance_of(name, atol, rtol, per_output)
            diffs.append(
                compare(outputs[a][name], outputs[b][name], atol=at, rtol=rt, a_name=a, b_name=b, output=name)
            )
    return diffs


def _tolerance_of(output: str, atol: float, rtol: float, per_output: PerOutput) -> tuple[float, float]:
    """``(atol, rtol)`` for one output: its own from ``--tolerance``, else the check's."""
    return (per_output or {}).get(output, (atol, rtol))


def _variant_runs(
    names: tuple[str, ...],
    subject: Subject,
    feeds: Arrays,
    outputs: dict[str, Arrays],
    enabled: bool,
    atol: float,
    rtol: float,
    timer: _Timer,
    batch: int | None = None,
    per_output: PerOutput = None,
) -> tuple[list[TensorDiff], dict[str, Arrays], dict[str, Any] | None]:
    """Each runtime's declared variant (ONNX Runtime optimized) compared against it, and, where
    they disagree, the variant's explanation (``ort_optimizations``). Returns the comparisons, the
    variants' outputs (for the oracle distances) and the explanation; each variant's runtime is
    dropped before anything else is built."""
    from xverify.budget import release_freed_memory

    extra: list[TensorDiff] = []
    runs: dict[str, Arrays] = {}
    explained: dict[str, Any] | None = None
    for name in names if enabled else ():
        variant = RUNTIMES[name].variant
        if variant is None:
            continue
        with timer.stage(f"run_{variant.name}"):
            runner = _batched(variant.build(subject), batch)
            runs[variant.name] = _named_outputs(runner.run(feeds), subject.onnx_model, variant.name)
            del runner
            release_freed_memory()
        diffs = [
            compare(
                value,
                outputs[name][output],
                atol=_tolerance_of(output, atol, rtol, per_output)[0],
                rtol=_tolerance_of(output, atol, rtol, per_output)[1],
                a_name=variant.name,
                b_name=name,
                output=output,
            )
            for output, value in runs[variant.name].items()
        ]
        extra.extend(diffs)
        bad = [d.output for d in diffs if not d]
        if bad and variant.explain is not None and explained is None:
            with timer.stage(f"explain_{variant.name}"):
                explained = variant.explain(subject, feeds, outputs[name], bad, atol, rtol, batch)
    return extra, runs, explained


def _oracle_runs(
    names: tuple[str, ...],
    subject: Subject,
    feeds: Arrays,
    outputs: dict[str, Arrays],
    enabled: bool,
    atol: float,
    rtol: float,
    timer: _Timer,
    batch: int | None = None,
    per_output: PerOutput = None,
) -> tuple[list[OracleDistance], Runtime | None]:
    """Every run's distance from the float64 oracle, when a runtime brings one. Returns the rows
    and the oracle runtime (None when off), which the per-layer comparison uses as referee."""
    build = next((RUNTIMES[n].oracle for n in names if RUNTIMES[n].oracle), None) if enabled else None
    if build is None:
        return [], None
    with timer.stage("init_oracle"):
        referee = _batched(build(subject), batch)
    with timer.stage("run_oracle"):
        exact = _named_outputs(referee.run(feeds), subject.onnx_model, "oracle")
    rows: list[OracleDistance] = []
    for runtime, outs in outputs.items():
        for name, value in outs.items():
            at, rt = _tolerance_of(name, atol, rtol, per_output)
            d = compare(value, exact[name], atol=at, rtol=rt, a_name=runtime, b_name="oracle", output=name)
            rows.append(
                OracleDistance(runtime, name, d.max_abs_diff, d.max_rel_diff, d.mean_abs_diff, d.passed)
            )
    return rows, referee


def _farther_from_oracle(
    comparisons: Sequence[TensorDiff], oracle_rows: Sequence[OracleDistance]
) -> list[str]:
    """For ONNX runtimes that disagree on an output, which is farther from exact arithmetic.

    A runtime of the Keras model (TensorFlow, TFLite) does not run the ONNX graph, so its distance
    from the oracle mixes rounding with conversion faults: it is not refereed here."""
    distance = {(r.runtime, r.output): r.max_abs_diff for r in oracle_rows}
    notes = []
    for d in comparisons:
        a, b = distance.get((d.a, d.output)), distance.get((d.b, d.output))
        if d or not _runs_onnx(d.a) or not _runs_onnx(d.b) or a is None or b is None:
            continue
        if np.isclose(a, b, rtol=1e-3, atol=0.0):  # as printed: no side to take
            notes.append(
                f"{d.a} and {d.b} disagree on {d.output!r}: both are {a:.3g} from the "
                "float64 oracle, which therefore takes neither side"
            )
            continue
        far, near = (d.a, d.b) if a > b else (d.b, d.a)
        notes.append(
            f"{d.a} and {d.b} disagree on {d.output!r}: {far} is farther from the float64 "
            f"oracle ({max(a, b):.3g} against {min(a, b):.3g} for {near})"
        )
    return notes


def _graph_runs(failed: dict[str, Exception], names: tuple[str, ...], where: str | None) -> None:
    """An ONNX graph that a runtime of the graph (ONNX Runtime, OpenVINO) cannot run is a finding
    about the graph (the engine failing too says the graph itself is invalid, as tf2onnx can write
    a Reshape with a batch size baked in): one exit-2 message with each runtime's error. The engine
    (the runtime that brings the oracle) failing alone is xverify's bug."""
    if not failed:
        return
    graph = [n for n in failed if RUNTIMES[n].runs_onnx and not RUNTIMES[n].oracle]
    if not graph:
        raise next(iter(failed.values()))
    said = []
    for name, exc in failed.items():
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        notes = [n for n in getattr(exc, "__notes__", ()) if n.startswith("in node")]
        said.append(f"{name}: {type(exc).__name__}: {' '.join(lines)[:400]}{' ' + notes[0] if notes else ''}")
    engine = next(s for s in RUNTIMES.values() if s.oracle)
    verdict = (
        f"{engine.label} fails as well, so the graph itself is invalid"
        if engine.name in failed
        else f"{engine.label} runs it"
        if engine.name in names
        else f"{engine.label} was not asked"
    )
    raise ConversionError(
        f"{where or 'the ONNX model'}: {' and '.join(RUNTIMES[n].label for n in graph)} cannot run the "
        f"ONNX graph on the check's inputs ({verdict}). {' | '.join(said)}. Expected a graph that "
        "runs; if xverify converted it, this is a converter fault: try another --opset, or report it "
        "to tf2onnx with the ONNX file (xverify convert MODEL -o model.onnx)."
    )


def _engine_rounding(
    comparisons: Sequence[TensorDiff], oracle_rows: Sequence[OracleDistance]
) -> tuple[list[TensorDiff], list[str]]:
    """The NumPy engine (the runtime that brings the oracle) is xverify's witness, not the product:
    where it alone leaves the float64 oracle's tolerance and the ONNX runtime it disagrees with
    stays within it, the gap is the engine's float32 rounding on an ill-conditioned output (a
    softmax over logits of 1e9), not a fault of the conversion. That comparison passes, and a note
    gives both distances."""
    within: dict[tuple[str | None, str], tuple[bool, float]] = {
        (r.runtime, r.output): (r.passed, r.max_abs_diff) for r in oracle_rows
    }
    kept, notes = [], []
    for d in comparisons:
        engine = next((n for n in (d.a, d.b) if n in RUNTIMES and RUNTIMES[n].oracle), None)
        other = d.b if d.a == engine else d.a if d.b == engine else None
        mine, theirs = within.get((engine, d.output)), within.get((other, d.output))
        if (
            d
            or other is None
            or not _runs_onnx(other)
            or mine is None
            or theirs is None
            or mine[0]
            or not theirs[0]
        ):
            kept.append(d)
            continue
        why = (
            f"float32 rounding in the NumPy engine: {other} is within tolerance of the float64 "
            f"oracle ({theirs[1]:.3g}) and the engine is not ({mine[1]:.3g})"
        )
        kept.append(dataclasses.replace(d, passed=True, note=why))
        notes.append(
            f"{engine} and {other} disagree on {d.output!r} by {d.max_abs_diff:.3g}, which is {why}; "
            "the output is that sensitive to rounding, so it is not counted against the conversion"
        )
    return kept, notes


def _runs_onnx(name: str) -> bool:
    spec = spec_of(name)
    return spec is not None and spec.runs_onnx


def _with_runtime_versions(found: dict[str, str | None], runners: Iterable[str]) -> dict[str, str | None]:
    """The report's versions, plus those of the runtimes that brought their own library."""
    import importlib.metadata as md

    for name in runners:
        dist = RUNTIMES[name].dist
        if dist and dist not in found:
            try:
                found[dist] = md.version(dist)
            except md.PackageNotFoundError:
                found[dist] = None
    return found


def _opset(onnx_model: onnx.ModelProto) -> int | None:
    return next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)


def versions() -> dict[str, str | None]:
    """Versions of everything that took part, for the report."""
    import importlib.metadata as md

    import xverify

    out = {"xverify": xverify.__version__, "python": platform.python_version(), "numpy": np.__version__}
    for dist, key in (
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("tensorflow-cpu", "tensorflow"),
        ("tensorflow", "tensorflow"),
        ("tf2onnx", "tf2onnx"),
        ("keras", "keras"),
    ):
        if out.get(key):
            continue
        try:
            out[key] = md.version(dist)
        except md.PackageNotFoundError:
            out.setdefault(key, None)
    return out
