"""A one-command repro of the first divergence: the ONNX graph cut down to the divergent layer's
nodes, its inputs and both disagreeing runtimes' outputs in ONNX's ``test_data_set_0/`` layout, and
a short script that shows the mismatch with ONNX Runtime and NumPy alone.

The script runs ONNX Runtime on the cut model and compares it with the other runtime's saved output
(TensorFlow's layer output, put in the ONNX tensor's layout, when the pair involves TensorFlow), at
the tolerance the check judged the layer by. The repro is run here before anything is written: one
that no longer fails is refused (exit 2), never written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from xverify.compare import TensorDiff, compare
from xverify.errors import UsageError, XverifyError
from xverify.report.records import FirstDivergence

DATA_SET = "test_data_set_0"


@dataclass(frozen=True)
class Repro:
    """What a repro directory holds, and the mismatch verified on the cut model."""

    layer: str
    model: onnx.ModelProto  # the cut graph
    inputs: dict  # cut input name -> array
    output: str  # the layer's ONNX tensor
    outputs: dict  # runtime -> that runtime's value of the tensor (ONNX layout)
    expected: str  # the runtime whose output the script compares ONNX Runtime's against
    diff: TensorDiff  # ONNX Runtime on the cut model vs ``expected``


def refuse_nonempty(directory) -> None:
    """A repro is never written over existing files (the CLI checks before the work starts)."""
    if os.path.isdir(directory) and os.listdir(directory):
        raise UsageError(f"{directory}: the directory exists and is not empty; choose a new or empty one.")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{directory}: exists and is not a directory; choose a new directory.")


def cut_inputs(graph, output: str, layer_nodes) -> list[str]:
    """The tensors the layer's nodes read from outside them, walking back from ``output``.

    Initializers and Constant nodes stay inside the cut; everything else a layer node reads that
    another node (or the graph's input) makes becomes an input of the cut model."""
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {i.name for i in graph.initializer}
    nodes, inputs, seen, todo = set(layer_nodes), [], set(), [output]
    while todo:
        name = todo.pop()
        if name in seen or not name or name in initializers:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None and (node.name in nodes or node.op_type == "Constant" or name == output):
            todo.extend(node.input)
        else:
            inputs.append(name)
    return sorted(inputs)


def cut_model(onnx_model, inputs: list[str], output: str) -> onnx.ModelProto:
    """``onnx.utils.extract_model``'s cut, in memory (the full model need not be on disk). The cut's
    edges need types, which ONNX's own inference misses behind ops it cannot follow: xverify's
    (shapes.py, the same that types ONNX Runtime's taps) fills them in."""
    from onnx.utils import Extractor

    from xverify.shapes import value_infos

    typed = onnx.ModelProto()
    typed.CopyFrom(onnx_model)
    known = {v.name for v in [*typed.graph.input, *typed.graph.output, *typed.graph.value_info]}
    infos = value_infos(onnx_model)
    typed.graph.value_info.extend(infos[n] for n in [*inputs, output] if n not in known and n in infos)
    return Extractor(typed).extract_model(inputs, [output])


def to_onnx_layout(keras_value: np.ndarray, layout: str | None, like: np.ndarray) -> np.ndarray:
    """A Keras layer's value in the layout of its ONNX tensor (the inverse of ``layout.readings``);
    where the graph left the layout undecided, the reading closest to ``like`` is kept, as the
    check kept it."""
    from xverify.layout import AS_IS, CHANNELS_FIRST, PERMUTED, TIME_MAJOR

    rank = like.ndim
    perms = {AS_IS: list(range(rank))}
    if rank >= 3:
        perms[CHANNELS_FIRST] = [0, *range(2, rank), 1]
    if rank >= 2:
        perms[TIME_MAJOR] = [1, 0, *range(2, rank)]
    if layout and layout.startswith(PERMUTED):
        perms[layout] = [int(i) for i in layout[len(PERMUTED) :].split(",")]
    candidates = []
    for name, perm in perms.items():
        if (layout in perms and name != layout) or len(perm) != rank or keras_value.size != like.size:
            continue
        reading = keras_value.reshape([like.shape[i] for i in perm])
        candidates.append(np.transpose(reading, np.argsort(perm)))
    if not candidates:
        raise XverifyError(
            f"the Keras layer's output (shape {keras_value.shape}) cannot be laid out as its ONNX "
            f"tensor (shape {like.shape}); this is a bug in xverify, not a verdict on the model."
        )
    return min(candidates, key=lambda c: float(np.max(np.abs(c.astype(np.float64) - like))))


def _expected_side(a: str, b: str) -> str:
    """The side ONNX Runtime is compared against: the other runtime of the pair (the reference
    when ONNX Runtime is not in it: ONNX Runtime then stands in for the side that runs the graph)."""
    return b if a == "onnxruntime" else a if b == "onnxruntime" else b


def _layer_value(runtime, layer, output, keras_model, onnx_model, feeds, like):
    """``runtime``'s value of the layer, in the layout of its ONNX tensor (``like``)."""
    from xverify.check import _feeds_for
    from xverify.layers import map_layers
    from xverify.runtimes import RUNTIMES, Subject

    spec = RUNTIMES[runtime]
    runner = spec.build(Subject(onnx_model, keras_model))
    if spec.taps == "onnx":
        return runner.run(feeds, taps=[output])[output]
    value = runner.run(_feeds_for(runtime, feeds, runner), taps=[layer])[layer]
    row = next(r for r in map_layers(keras_model, onnx_model) if r.name == layer)
    return to_onnx_layout(np.asarray(value), row.layout, like)


def build_repro(
    first: FirstDivergence, keras_model, onnx_model, feeds: dict, *, atol: float, rtol: float
) -> Repro:
    """Cut the first divergence (``report.first_divergence``) out of ``onnx_model`` and verify it.

    Raises:
        XverifyError (exit 2): the layer has no ONNX tensor, or the cut model no longer shows the
        mismatch.
    """
    from xverify.divergence import layer_atol
    from xverify.runtimes import OnnxRuntime

    layer, output = first.layer, first.onnx_tensor
    if not output:
        raise XverifyError(f"layer {layer!r} has no ONNX tensor of its own (fused away): nothing to cut.")
    inputs = cut_inputs(onnx_model.graph, output, first.onnx_nodes)
    tapped = OnnxRuntime(onnx_model, "disabled").run(feeds, taps=[output, *inputs])
    values = {**feeds, **tapped}
    cut_feeds = {name: values[name] for name in inputs}
    outputs = {"onnxruntime": tapped[output]}
    for side in {first.a, first.b} - {"onnxruntime"}:
        outputs[side] = _layer_value(side, layer, output, keras_model, onnx_model, feeds, tapped[output])
    expected = _expected_side(first.a, first.b)
    model = cut_model(onnx_model, inputs, output)
    got = OnnxRuntime(model, "disabled").run(cut_feeds)[output]
    reference = outputs[expected]
    diff = compare(
        got,
        reference,
        atol=layer_atol(reference, atol, rtol),
        rtol=rtol,
        a_name="onnxruntime",
        b_name=expected,
        output=output,
    )
    if diff:
        raise XverifyError(
            f"layer {layer!r}: ONNX Runtime on the cut graph ({len(model.graph.node)} nodes) agrees with "
            f"{expected} (max abs diff {diff.max_abs_diff:.3g}, within atol {diff.atol:.3g}), so a repro "
            "would not show the mismatch; nothing written. The mismatch needs more of the graph than "
            "this layer (rerun `xverify check` to see the layers around it)."
        )
    return Repro(layer, model, cut_feeds, output, outputs, expected, diff)


def write_repro(repro: Repro, directory, *, atol: float, rtol: float, source: str = "") -> Path:
    """Write ``model.onnx``, ``test_data_set_0/`` (inputs, the expected output), both runtimes'
    outputs under ``outputs/`` and ``repro.py``; returns the script's path."""
    from onnx import numpy_helper

    refuse_nonempty(directory)
    root = Path(directory)
    (root / DATA_SET).mkdir(parents=True, exist_ok=True)
    (root / "outputs").mkdir(exist_ok=True)
    onnx.save(repro.model, str(root / "model.onnx"))

    def save(array, name, path):
        path.write_bytes(numpy_helper.from_array(np.ascontiguousarray(array), name).SerializeToString())

    for index, (name, value) in enumerate(repro.inputs.items()):
        save(value, name, root / DATA_SET / f"input_{index}.pb")
    save(repro.outputs[repro.expected], repro.output, root / DATA_SET / "output_0.pb")
    for runtime, value in repro.outputs.items():
        save(value, repro.output, root / "outputs" / f"{runtime}.pb")
    from xverify.repro_script import TEMPLATE

    script = TEMPLATE.format(
        layer=repro.layer,
        source=source or "the model",
        expected=repro.expected,
        atol=repr(atol),
        rtol=repr(rtol),
    )
    (root / "repro.py").write_text(script)
    return root / "repro.py"


def reproduce(
    report,
    model,
    out_dir,
    *,
    onnx=None,
    inputs=None,
    samples=16,
    seed=0,
    opset=None,
    cache=True,
    unsafe=False,
    max_memory=None,
) -> Path:
    """Write a repro of ``report``'s first divergence, rebuilding what the check ran on: the same
    model, ONNX graph (the cached conversion) and inputs.

    Returns:
        The path of ``repro.py`` in ``out_dir``.
    """
    from xverify.budget import Budget
    from xverify.check import _feeds, _load_model, _onnx_model, _Timer
    from xverify.inputs import input_specs

    first = report.first_divergence
    if not first:
        state = "passed" if report.passed else "found no first divergent layer (compare layers: --layers)"
        raise XverifyError(f"{model}: the check {state}; there is no mismatch to reproduce.")
    budget = Budget.parse(max_memory)
    keras_model, source = _load_model(model, unsafe, budget)
    onnx_model, _, _ = _onnx_model(keras_model, source, onnx, opset, cache, _Timer(), budget)
    feeds, _ = _feeds(inputs, input_specs(onnx_model), samples, seed, budget)
    atol, rtol = report.tolerance["atol"], report.tolerance["rtol"]
    repro = build_repro(first, keras_model, onnx_model, feeds, atol=atol, rtol=rtol)
    return write_repro(repro, out_dir, atol=atol, rtol=rtol, source=str(onnx or model))
