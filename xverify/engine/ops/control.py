"""Kernels: If, Loop and Scan, which run a subgraph through the interpreter's ``ctx.run_subgraph``.

A subgraph sees the enclosing scope (outer tensors by name), and the interpreter compiles it once,
so a Loop of many iterations pays only for running its body. Scan outputs are collected per
iteration and stacked once at the end.
"""

from __future__ import annotations

import numpy as np
import onnx

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


def _scalar_bool(value) -> bool:
    return bool(np.asarray(value).reshape(-1)[0])


def _empty_scans(body: onnx.GraphProto, first: int, ctx) -> list[np.ndarray]:
    """Scan outputs of a loop that ran zero times: empty, with the body's element type."""
    return [np.zeros((0,), dtype=ctx.np_dtype(out.type.tensor_type.elem_type)) for out in body.output[first:]]


@op("If", context=True, attributes=("then_branch", "else_branch"))
def if_(cond, *, then_branch, else_branch, ctx):
    """Run one branch; its outputs are the node's outputs."""
    branch = then_branch if _scalar_bool(cond) else else_branch
    return tuple(ctx.run_subgraph(branch, {}))


@op(
    "Loop",
    context=True,
    attributes=("body",),
    notes="trip count and/or condition; loop-carried values and scan outputs (stacked on axis 0); "
    "the body's condition always counts, as in ONNX Runtime",
)
def loop(trip_count, cond, *initial, body, ctx):
    """for i in range(M) while cond: (cond, carried..., scans...) = body(i, cond, carried...)."""
    if trip_count is None and cond is None:
        raise UnsupportedOpError(
            "Loop: neither trip count M nor cond is given, so the loop never "
            "ends; supported: at least one of them"
        )
    trip = None if trip_count is None else int(np.asarray(trip_count).reshape(-1)[0])
    going = True if cond is None else _scalar_bool(cond)
    names = [i.name for i in body.input]
    n_carried = len(initial)
    carried, scans, i = list(initial), None, 0
    while going and (trip is None or i < trip):
        feeds = {names[0]: np.array(i, dtype=np.int64), names[1]: np.array(going)}
        feeds.update(zip(names[2:], carried))
        outs = ctx.run_subgraph(body, feeds)
        # The body's condition is honoured even without a cond input, as ONNX Runtime (and
        # onnx.reference) do; the spec's pseudo-code calls it "ignored" in that case.
        going = _scalar_bool(outs[0])
        carried = outs[1 : 1 + n_carried]
        if scans is None:
            scans = [[] for _ in outs[1 + n_carried :]]
        for store, value in zip(scans, outs[1 + n_carried :]):
            store.append(value)
        i += 1
    stacked = _empty_scans(body, 1 + n_carried, ctx) if scans is None else [np.stack(s) for s in scans]
    return tuple(carried) + tuple(stacked)


@op(
    "Scan",
    context=True,
    since=9,
    attributes=(
        "body",
        "num_scan_inputs",
        "scan_input_axes",
        "scan_input_directions",
        "scan_output_axes",
        "scan_output_directions",
    ),
    notes="opset 9+ form (no batch axis, no sequence_lens); any axes, both directions",
)
def scan(
    *inputs,
    body,
    num_scan_inputs,
    scan_input_axes=None,
    scan_input_directions=None,
    scan_output_axes=None,
    scan_output_directions=None,
    ctx,
):
    """(state..., y_t...) = body(state..., x_t...) for each t along the scan axes."""
    n_state = len(inputs) - num_scan_inputs
    states, xs = list(inputs[:n_state]), inputs[n_state:]
    in_axes = list(scan_input_axes or [0] * len(xs))
    in_dirs = list(scan_input_directions or [0] * len(xs))
    # Each scan input as a (time, ...) view, reversed if its direction is 1.
    views = []
    for x, axis, reverse in zip(xs, in_axes, in_dirs):
        view = np.moveaxis(x, axis % x.ndim, 0)
        views.append(view[::-1] if reverse else view)
    lengths = {v.shape[0] for v in views}
    if len(lengths) != 1:
        raise ValueError(f"Scan: scan inputs have different lengths {sorted(lengths)}")
    names = [i.name for i in body.input]
    n_out = len(body.output) - n_state
    scans = [[] for _ in range(n_out)]
    for t in range(lengths.pop()):
        outs = ctx.run_subgraph(body, dict(zip(names, states + [v[t] for v in views])))
        states = list(outs[:n_state])
        for store, value in zip(scans, outs[n_state:]):
            store.append(value)
    out_axes = list(scan_output_axes or [0] * n_out)
    out_dirs = list(scan_output_directions or [0] * n_out)
    results = []
    for k, store in enumerate(scans):
        if not store:
            results.extend(_empty_scans(body, n_state + k, ctx)[:1])
            continue
        stacked = np.stack(store[::-1] if out_dirs[k] else store)
        results.append(np.moveaxis(stacked, 0, out_axes[k] % stacked.ndim))
    return tuple(states) + tuple(results)


@op(
    "Scan",
    context=True,
    since=8,
    until=8,
    attributes=("body", "directions", "num_scan_inputs"),
    notes="opset 8's form: axis 0 is a batch, scanned along axis 1; full-length sequences only",
)
def scan_8(sequence_lens, *inputs, body, num_scan_inputs, directions=None, ctx):
    """Opset 8's Scan: the opset-9 scan run once per batch row (axis 0), time on axis 1."""
    if sequence_lens is not None:
        lengths = np.asarray(sequence_lens).reshape(-1)
        full = inputs[-num_scan_inputs].shape[1]
        if np.any(lengths != full):
            raise UnsupportedOpError(
                "Scan (opset 8): sequence_lens shorter than the scan axis are "
                "not supported; supported: full-length sequences"
            )
    rows = []
    for b in range(inputs[0].shape[0]):
        rows.append(
            scan(
                *(x[b] for x in inputs),
                body=body,
                num_scan_inputs=num_scan_inputs,
                scan_input_directions=directions,
                ctx=ctx,
            )
        )
    return tuple(np.stack(parts) for parts in zip(*rows))
