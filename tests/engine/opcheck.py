"""One helper that runs a single ONNX node in the NumPy engine and in ONNX Runtime and compares.

Every kernel test goes through ``check_op``: it builds a one-node model, infers output types with
``onnx.shape_inference``, runs ONNX Runtime (optimizations off, CPU) as the reference and, where it
helps, ``onnx.reference.ReferenceEvaluator`` as a second one, and checks the engine in float32 (close to
ONNX Runtime) and in float64 (the oracle, close at a looser float32-rounding tolerance).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from xverify.engine import Interpreter

OPSET = 17


def make_model(op_type, inputs, attrs=None, n_outputs=1, initializers=None, opset=OPSET, domain=""):
    """A one-node model over ``inputs`` (a list of arrays or None for an omitted optional input)."""
    in_names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    out_names = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, in_names, out_names, domain=domain, **(attrs or {}))
    initializers = initializers or {}
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
        for n, a in zip(in_names, inputs)
        if a is not None and n not in initializers
    ]
    inits = [numpy_helper.from_array(np.asarray(inputs[int(n[2:])]), n) for n in initializers]
    graph = helper.make_graph(
        [node],
        "op",
        graph_inputs,
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in out_names],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def run_ort(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check_op(
    op_type,
    inputs,
    attrs=None,
    n_outputs=1,
    atol=1e-5,
    rtol=1e-5,
    const_inputs=(),
    reference=False,
    oracle_atol=None,
    opset=OPSET,
):
    """Assert the engine matches ONNX Runtime on one node; return the engine's float32 outputs.

    Args:
        const_inputs: indices of inputs to store as initializers (ops whose shapes need constants).
        reference: also compare with ``onnx.reference.ReferenceEvaluator``.
        oracle_atol: tolerance of the float64 oracle against ONNX Runtime (default 10x atol).
    """
    inputs = [None if a is None else np.asarray(a) for a in inputs]
    consts = {f"in{i}" for i in const_inputs}
    model = make_model(op_type, inputs, attrs, n_outputs, consts, opset=opset)
    feeds = {f"in{i}": a for i, a in enumerate(inputs) if a is not None and f"in{i}" not in consts}
    expected = run_ort(model, feeds)
    out_names = [o.name for o in model.graph.output]
    got = Interpreter(model, "float32").run(feeds)
    for name, want in zip(out_names, expected):
        _assert_close(
            got[name], want, atol, rtol, f"{op_type} float32 vs onnxruntime ({name})", same_dtype=True
        )
    oracle = Interpreter(model, "float64").run(feeds)
    for name, want in zip(out_names, expected):
        _assert_close(
            oracle[name],
            want,
            oracle_atol or atol * 10,
            rtol * 10,
            f"{op_type} float64 oracle vs onnxruntime ({name})",
            same_dtype=False,
        )
    if reference:
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(model).run(None, feeds)
        for name, want in zip(out_names, ref):
            _assert_close(
                got[name], want, atol, rtol, f"{op_type} vs onnx.reference ({name})", same_dtype=False
            )
    return [got[n] for n in out_names]


def check_reference_op(
    op_type, inputs, attrs=None, n_outputs=1, atol=1e-5, rtol=1e-5, oracle_atol=None, opset=OPSET
):
    """``check_op`` with ``onnx.reference.ReferenceEvaluator`` as the only reference: for op
    versions ONNX Runtime does not run, and where the engine follows ONNX's reference and node
    tests against ONNX Runtime (the caller says why). Returns the engine's float32 outputs."""
    from onnx.reference import ReferenceEvaluator

    inputs = [None if a is None else np.asarray(a) for a in inputs]
    model = make_model(op_type, inputs, attrs, n_outputs, opset=opset)
    feeds = {f"in{i}": a for i, a in enumerate(inputs) if a is not None}
    expected = ReferenceEvaluator(model).run(None, feeds)
    out_names = [o.name for o in model.graph.output]
    got = Interpreter(model, "float32").run(feeds)
    oracle = Interpreter(model, "float64").run(feeds)
    for name, want in zip(out_names, expected):
        what = f"{op_type} vs onnx.reference ({name})"
        _assert_close(got[name], want, atol, rtol, f"float32 {what}", same_dtype=True)
        _assert_close(
            oracle[name], want, oracle_atol or atol * 10, rtol * 10, f"float64 {what}", same_dtype=False
        )
    return [got[n] for n in out_names]


def _assert_close(got, want, atol, rtol, what, same_dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if same_dtype:
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(
            got.astype(np.float64),
            want.astype(np.float64),
            atol=atol,
            rtol=rtol,
            err_msg=what,
            equal_nan=True,
        )
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def check_model(model, feeds, atol=1e-5, rtol=1e-5, oracle_atol=None, reference=False):
    """Like ``check_op`` for a whole model (several nodes, subgraphs); return the float32 outputs.

    Args:
        model: an ``onnx.ModelProto`` (e.g. built with ``onnx.helper`` around a Loop/If/Scan).
        feeds: one array per graph input, by name.
    """
    expected = run_ort(model, feeds)
    out_names = [o.name for o in model.graph.output]
    got = Interpreter(model, "float32").run(feeds)
    oracle = Interpreter(model, "float64").run(feeds)
    for name, want in zip(out_names, expected):
        _assert_close(got[name], want, atol, rtol, f"float32 vs onnxruntime ({name})", same_dtype=True)
        _assert_close(
            oracle[name],
            want,
            oracle_atol or atol * 10,
            rtol * 10,
            f"float64 oracle vs onnxruntime ({name})",
            same_dtype=False,
        )
    if reference:
        from onnx.reference import ReferenceEvaluator

        for name, want in zip(out_names, ReferenceEvaluator(model).run(None, feeds)):
            _assert_close(got[name], want, atol, rtol, f"vs onnx.reference ({name})", same_dtype=False)
    return [got[n] for n in out_names]
