"""``xverify check MODEL.onnx --golden BUNDLE/``: an ONNX file checked against a golden bundle,
with no TensorFlow and no Keras model at hand.

The ONNX runtimes present run the bundle's inputs; their outputs are compared with each other (the
ordinary ONNX-only check) and with the TensorFlow outputs the bundle recorded; every layer whose
ONNX tensor the graph still has (a re-export or an optimizer may rename or fuse some) is compared
with TensorFlow's recorded value of that layer, read in the layout the bundle recorded. In the
report the bundle's side is named ``tensorflow``: it is TensorFlow's numbers, recorded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from xverify.compare import compare
from xverify.errors import InputDataError
from xverify.golden.bundle import Bundle, sha256_file
from xverify.layers import LayerTensor
from xverify.layout import readings
from xverify.report.model import CheckReport, LayerDiff
from xverify.report.records import InputsInfo, ModelInfo
from xverify.runtimes import Pair, PairDiffs

_ONNX_RUNTIMES = ("numpy", "onnxruntime")  # the default: the bundle stands in for TensorFlow


def check_golden(
    onnx,
    golden,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    runtimes=_ONNX_RUNTIMES,
    layers: bool = True,
    oracle: bool = True,
    ort_optimized: bool = True,
    max_memory=None,
) -> CheckReport:
    """Check an ONNX file against a golden bundle (``xverify snapshot``); TensorFlow is not needed.

    Args:
        onnx: the ONNX file to check (the bundle's own, a re-export or an optimized copy).
        golden: the bundle's directory.
        atol, rtol: tolerances; default those the bundle recorded.
        runtimes: the runtimes of the ONNX graph to run (``"all"``: every one installed); those
            of the Keras model (tensorflow, tflite) are left out: the bundle holds TensorFlow's.
        Other arguments as ``xverify.check``.

    Returns:
        A CheckReport whose comparisons and layers include each ONNX runtime against the
        bundle's TensorFlow outputs.

    Raises:
        ModelFileError: the bundle is missing files, altered, or of an unknown format (exit 2).
    """
    import time

    import xverify

    bundle = Bundle.open(golden)
    recorded = bundle.manifest["tolerance"]
    atol = recorded["atol"] if atol is None else atol
    rtol = recorded["rtol"] if rtol is None else rtol
    names = _onnx_runtimes(runtimes)
    feeds = bundle.arrays(bundle.manifest["inputs"])
    if len(names) > 1 or "numpy" in names:  # the runtimes of the graph compared among themselves
        base = xverify.check(
            onnx,
            inputs=feeds,
            atol=atol,
            rtol=rtol,
            runtimes=names,
            layers=False,
            oracle=oracle,
            ort_optimized=ort_optimized,
            max_memory=max_memory,
        )
    else:  # one runtime (an optimized graph with ops only ONNX Runtime has): the bundle is the other
        base = _alone(onnx, feeds, atol, rtol, max_memory)
    atol, rtol = base.tolerance["atol"], base.tolerance["rtol"]
    start = time.perf_counter()
    onnx_model = _load(onnx, max_memory)
    rows = _rows(bundle) if layers else []
    present = _tensors(onnx_model)
    wanted = [r.tensor for r in rows if r.tensor in present]
    runs = {name: _run(name, onnx_model, feeds, wanted) for name in names}
    reference = bundle.arrays(bundle.manifest["outputs"]["tensorflow"])
    comparisons, notes = _outputs(runs, reference, onnx_model, atol, rtol)
    layer_rows, first, missing = _layers(bundle, rows, runs, atol, rtol) if rows else ((), None, [])
    notes += _provenance(bundle, onnx, missing)
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, golden=_golden_record(bundle, onnx)),
        inputs=dataclasses.replace(
            base.inputs, source=str(Path(bundle.directory) / bundle.manifest["inputs"]["file"])
        ),
        comparisons=tuple(base.comparisons) + tuple(comparisons),
        layers=tuple(layer_rows),
        first_divergence=first,
        notes=tuple(base.notes) + tuple(notes),
        timings=base.timings | {"golden": round(time.perf_counter() - start, 4)},
    )


def _alone(onnx, feeds, atol, rtol, max_memory) -> CheckReport:
    """The report a check of one runtime starts from: the model and inputs, no comparison yet."""
    from xverify.check import _opset, _tolerance, versions
    from xverify.inputs import input_specs

    onnx_model = _load(onnx, max_memory)
    atol, rtol = _tolerance(atol, 0.0, "atol"), _tolerance(rtol, 0.0, "rtol")
    return CheckReport(
        model=ModelInfo(
            path=str(onnx),
            format="onnx",
            onnx_path=str(onnx),
            opset=_opset(onnx_model),
            sha256=sha256_file(Path(onnx)),
        ),
        inputs=InputsInfo(
            source=None,
            seed=None,
            samples=len(next(iter(feeds.values()))) if feeds else 0,
            tensors=tuple(input_specs(onnx_model)),
        ),
        tolerance={"atol": atol, "rtol": rtol},
        comparisons=(),
        versions=versions(),
    )


def _onnx_runtimes(requested) -> tuple[str, ...]:
    """The requested runtimes that run the ONNX graph; an unknown or absent one is refused as
    ``check`` refuses it (``runtimes.select``)."""
    from xverify.runtimes import ALL, RUNTIMES, select

    names = [r.strip() for r in (requested.split(",") if isinstance(requested, str) else requested)]
    if names != [ALL]:
        names = [n for n in names if n not in RUNTIMES or RUNTIMES[n].runs_onnx]
    return tuple(n for n in select(names, []) if RUNTIMES[n].runs_onnx)


def _load(onnx, max_memory):
    from xverify.budget import Budget
    from xverify.load import load_onnx

    return load_onnx(onnx, Budget.parse(max_memory))


def _rows(bundle) -> list[LayerTensor]:
    entry = bundle.manifest.get("layers") or {}
    return [
        LayerTensor(
            i,
            r["name"],
            r["class"],
            r["onnx_tensor"],
            tuple(r["onnx_nodes"]),
            r["layout"],
            tuple(r["inbound"]),
        )
        for i, r in enumerate(entry.get("rows", []))
    ]


def _tensors(onnx_model) -> set[str]:
    graph = onnx_model.graph
    return {name for node in graph.node for name in node.output} | {i.name for i in graph.input}


def _run(name, onnx_model, feeds, taps) -> dict:
    """One ONNX runtime's outputs and the layer tensors it can reach (run in the model's fixed
    batch size, as the check does, when the graph fixes one)."""
    from xverify.inputs import fixed_batch, input_specs
    from xverify.runtimes import RUNTIMES, Subject
    from xverify.runtimes.batched import Batched

    runner = RUNTIMES[name].build(Subject(onnx_model))
    batch = fixed_batch(input_specs(onnx_model))
    runner = runner if batch is None else Batched(runner, batch)
    try:
        return runner.run(feeds, taps=tuple(taps))
    except Exception:  # a runtime that cannot tap the layers still checks the outputs
        if not taps:
            raise
        return runner.run(feeds)


def _outputs(runs, reference, onnx_model, atol, rtol):
    """Each runtime's outputs against the bundle's TensorFlow outputs, matched by name (or by
    position when the new graph renamed them, with a note)."""
    names = [o.name for o in onnx_model.graph.output]
    notes = []
    if set(names) == set(reference):
        pairs = {n: n for n in names}
    elif len(names) == len(reference):
        pairs = dict(zip(names, reference))
        notes.append(
            f"the ONNX outputs {names} are not named as the bundle's {list(reference)}: matched by position"
        )
    else:
        raise InputDataError(
            f"the ONNX model has outputs {names}, the golden bundle {list(reference)}: expected the "
            "same outputs; check the ONNX file the bundle was made for."
        )
    diffs = [
        compare(
            got[mine], reference[theirs], atol=atol, rtol=rtol, a_name=name, b_name="tensorflow", output=mine
        )
        for name, got in runs.items()
        for mine, theirs in pairs.items()
    ]
    return diffs, notes


def _layers(bundle, rows, runs, atol, rtol):
    """Each recorded layer against every runtime that reached its tensor; the first divergence."""
    from xverify.divergence import first_divergence, layer_atol

    golden = bundle.arrays(bundle.manifest["layers"])
    diffs, missing = {}, []
    for row in rows:
        reference = golden[row.name]
        found = {}
        for name, got in runs.items():
            value = got.get(row.tensor)
            if value is None:
                continue
            options = [
                compare(
                    v,
                    reference,
                    atol=layer_atol(reference, atol, rtol),
                    rtol=rtol,
                    a_name=name,
                    b_name="tensorflow",
                    output=row.name,
                )
                for v in readings(np.asarray(value), row.layout, reference.shape)
            ]
            found[Pair(name, "tensorflow")] = min(options, key=lambda d: (not d, d.max_abs_diff))
        if not found:
            missing.append(row.name)
            continue
        diffs[row.name] = LayerDiff(
            row.name, row.layer_class, row.tensor, row.nodes, PairDiffs(found), all(found.values())
        )
    return [diffs[r.name] for r in rows if r.name in diffs], first_divergence(rows, diffs), missing


def _provenance(bundle, onnx, missing) -> list[str]:
    m = bundle.manifest
    versions = m.get("versions", {})
    notes = [
        f"tensorflow: the outputs and layer values recorded in the golden bundle {bundle.directory} "
        f"(TensorFlow {versions.get('tensorflow')}, model {m['model']['file']} sha256 "
        f"{m['model']['sha256'][:12]}…), not run here"
    ]
    recorded, found = m["onnx"]["sha256"], sha256_file(Path(onnx))
    if recorded == found:
        notes.append("the ONNX file is the one the golden bundle was made with (same sha256)")
    else:
        notes.append(
            f"the ONNX file differs from the one the golden bundle was made with (sha256 "
            f"{found[:12]}… against {recorded[:12]}…): checked against the recorded outputs, "
            "as a re-exported or optimized model is"
        )
    left_out = (m.get("layers") or {}).get("left_out") or []
    if missing:
        shown = ", ".join(repr(n) for n in missing[:8]) + (
            f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""
        )
        notes.append(
            f"{len(missing)} recorded layer(s) have no tensor of that name in this ONNX graph "
            f"(renamed or fused away) or none a runtime could tap: not compared: {shown}"
        )
    if left_out:
        notes.append(f"{len(left_out)} layer(s) were not recorded (the bundle's --max-size): not compared")
    return notes


def _golden_record(bundle, onnx) -> dict:
    m = bundle.manifest
    return {
        "path": str(bundle.directory),
        "format": m["format"],
        "model_sha256": m["model"]["sha256"],
        "onnx_sha256": m["onnx"]["sha256"],
        "same_onnx": m["onnx"]["sha256"] == sha256_file(Path(onnx)),
        "versions": m.get("versions", {}),
    }
