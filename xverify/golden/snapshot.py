"""``xverify snapshot``: check a Keras model's ONNX export, then record everything a later check
without TensorFlow needs: the inputs, every runtime's outputs, the Keras layers' outputs with the
ONNX tensor that held each one (and how it reads), the tolerances and the provenance.

Only a passing check is recorded: a golden bundle is a reference, and a failing one would gate
every later export against numbers already known to be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xverify.budget import Budget, human
from xverify.errors import MismatchError, UsageError
from xverify.golden.bundle import FORMAT, refuse_target, save_arrays, sha256_file, write_manifest

DEFAULT_MAX_SIZE = 64 << 20  # bytes of arrays a bundle holds by default


@dataclass(frozen=True)
class Snapshot:
    """What ``snapshot`` wrote: the bundle's directory, its manifest and the check it records."""

    directory: Path
    manifest: dict
    report: object  # CheckReport
    left_out: tuple[str, ...]  # layers whose outputs did not fit --max-size


def snapshot(
    model,
    output,
    *,
    onnx=None,
    inputs=None,
    samples: int = 16,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    opset: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    force: bool = False,
    cache: bool = True,
    unsafe: bool = False,
    max_memory=None,
) -> Snapshot:
    """Check ``model`` against its ONNX export and write a golden bundle into ``output``.

    Args:
        model: a ``.keras``/``.h5`` file (the TensorFlow side is the reference the bundle keeps).
        output: the bundle's directory: new or empty (``force`` writes over a bundle's files).
        onnx: an ONNX file to record instead of converting the model here.
        max_size: bytes of arrays the bundle may hold; the inputs and outputs always go in, then
            each layer's output in graph order if it still fits; the manifest lists those left out.
        Other arguments as ``xverify.check`` (``cache``: reuse a cached conversion).

    Returns:
        A Snapshot.

    Raises:
        MismatchError: the check failed (exit 1); nothing is written.
    """
    import xverify
    from xverify import load

    refuse_target(Path(output), [model, onnx, inputs], force)
    budget = Budget.parse(max_memory)
    keras_model, source = load.open_model(model, unsafe=unsafe, budget=budget)
    if source.format not in ("keras", "h5"):
        raise UsageError(
            f"{model}: is a {source.format} model; a golden bundle records a Keras model's "
            "(.keras or .h5) TensorFlow outputs and layers. Give the Keras model, and the ONNX file "
            "with --onnx."
        )
    onnx_model = _onnx_model(keras_model, source, onnx, opset, cache, budget)
    feeds, input_source = _feeds(onnx_model, inputs, samples, seed, budget)
    report = xverify.check(
        keras_model, onnx=onnx_model, inputs=feeds, atol=atol, rtol=rtol, max_memory=max_memory
    )
    if not report.passed:
        raise MismatchError(
            f"{model}: the check failed ({'; '.join(report.failures()[:3])}); a golden bundle "
            "records a passing conversion only, so nothing was written. Run `xverify check` to see why.",
            report=report,
        )
    runs, rows, taps = _record(keras_model, onnx_model, feeds)
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    from xverify.convert import save_onnx

    save_onnx(onnx_model, directory / "model.onnx", inputs=[model, onnx, inputs])
    manifest = {
        "format": FORMAT,
        "model": {"file": Path(str(model)).name, "format": source.format, "sha256": source.sha256},
        "onnx": {
            "file": "model.onnx",
            "sha256": sha256_file(directory / "model.onnx"),
            "tensors": [],
            "source": str(onnx) if onnx else "converted by xverify",
            "opset": report.model.opset,
        },
        "tolerance": dict(report.tolerance),
        "max_size": int(max_size),
        "check": {
            "passed": report.passed,
            "comparisons": [d.to_dict() for d in report.comparisons],
            "oracle": [o.to_dict() for o in report.oracle],
            "notes": list(report.notes),
        },
        "versions": dict(report.versions),
    }
    fixed = sum(v.nbytes for v in feeds.values()) + sum(v.nbytes for r in runs.values() for v in r.values())
    if fixed > max_size:
        raise UsageError(
            f"--max-size {human(max_size)}: the inputs and outputs alone take {human(fixed)}; "
            "raise --max-size or record fewer --samples."
        )
    manifest["inputs"] = save_arrays(directory, "inputs.npz", feeds) | {
        "source": input_source,
        "seed": seed if input_source == "synthetic" else None,
    }
    manifest["outputs"] = {name: save_arrays(directory, f"outputs/{name}.npz", v) for name, v in runs.items()}
    kept, left_out = _within(rows, taps, max_size - fixed)
    manifest["layers"] = _layers_entry(directory, kept, taps, left_out, max_size)
    write_manifest(directory, manifest)
    return Snapshot(directory, manifest, report, tuple(left_out))


def _onnx_model(keras_model, source, onnx, opset, cache, budget):
    from xverify import load

    if onnx is not None:
        return load.load_onnx(onnx, budget)
    from xverify.cache import cached_convert
    from xverify.convert import convert

    if not cache:
        return convert(keras_model, opset)
    onnx_model, _ = cached_convert(lambda: convert(keras_model, opset), source, opset)
    return onnx_model


def _feeds(onnx_model, inputs, samples, seed, budget):
    from xverify.inputs import input_specs, load_inputs, synthetic

    specs = input_specs(onnx_model)
    if inputs is None:
        return synthetic(specs, samples, seed, budget), "synthetic"
    return load_inputs(inputs, specs, budget), Path(str(inputs)).name


def _record(keras_model, onnx_model, feeds):
    """Each runtime's outputs (named as the ONNX outputs) and TensorFlow's value of every layer
    that has an ONNX tensor, with the rows that say which tensor and reading."""
    from xverify.check import _named_outputs
    from xverify.layers import map_layers, with_effective_inputs
    from xverify.runtimes import NumpyRuntime, OnnxRuntime, TensorflowRuntime

    rows = with_effective_inputs(map_layers(keras_model, onnx_model))
    tensorflow = TensorflowRuntime(keras_model)
    every = tensorflow.run(feeds, taps=[r.name for r in rows])
    runs = {"tensorflow": _named_outputs({n: every[n] for n in tensorflow.output_names}, onnx_model, "tf")}
    taps = {r.name: every[r.name] for r in rows if r.name in every}
    for name, runner in (
        ("onnxruntime", lambda: OnnxRuntime(onnx_model, "disabled")),
        ("onnxruntime-opt", lambda: OnnxRuntime(onnx_model, "all")),
        ("numpy", lambda: NumpyRuntime(onnx_model, "float32")),
    ):
        runs[name] = _named_outputs(runner().run(feeds), onnx_model, name)
    return runs, [r for r in rows if r.name in taps], taps


def _within(rows, taps, room: int):
    """The rows whose TensorFlow values fit ``room`` bytes, taken in graph order (a layer too large
    for what is left does not stop a smaller one after it); the names of the rest."""
    kept, left_out, used = [], [], 0
    for row in rows:
        size = np.asarray(taps[row.name]).nbytes
        if used + size <= room:
            kept.append(row)
            used += size
        else:
            left_out.append(row.name)
    return kept, left_out


def _layers_entry(directory, kept, taps, left_out, max_size) -> dict:
    entry = save_arrays(directory, "layers/tensorflow.npz", {r.name: taps[r.name] for r in kept})
    entry["runtime"] = "tensorflow"
    entry["rows"] = [
        {
            "name": r.name,
            "class": r.layer_class,
            "onnx_tensor": r.tensor,
            "onnx_nodes": list(r.nodes),
            "layout": r.layout,
            "inbound": list(r.inbound),
        }
        for r in kept
    ]
    entry["left_out"] = list(left_out)
    entry["note"] = (
        f"{len(left_out)} layer(s) left out to keep the bundle within --max-size {human(max_size)}: "
        + ", ".join(left_out[:8])
        + (f" (+{len(left_out) - 8} more)" if len(left_out) > 8 else "")
        if left_out
        else ""
    )
    return entry
