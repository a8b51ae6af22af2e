"""If, Loop and Scan against ONNX Runtime on small hand-built models, through ``check_model``."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.engine.opcheck import check_model
from xverify.engine import Interpreter
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
X = rng.standard_normal((2, 3)).astype(np.float32)
Y = rng.standard_normal((2, 3)).astype(np.float32)


def vi(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "main", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def const(name, value):
    return helper.make_tensor(
        name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape, value.flatten().tolist()
    )


# If -----------------------------------------------------------------------------------------


def if_model():
    # The branches read x and y from the enclosing scope.
    then = helper.make_graph([helper.make_node("Add", ["x", "y"], ["t"])], "then", [], [vi("t", F, [2, 3])])
    other = helper.make_graph([helper.make_node("Mul", ["x", "y"], ["e"])], "else", [], [vi("e", F, [2, 3])])
    node = helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other)
    return model([node], [vi("c", B, []), vi("x", F, [2, 3]), vi("y", F, [2, 3])], [vi("out", F, [2, 3])])


@pytest.mark.parametrize("c", [True, False])
def test_if_runs_the_chosen_branch_with_outer_scope(c):
    check_model(if_model(), {"c": np.array(c), "x": X, "y": Y}, reference=True)


# Loop ---------------------------------------------------------------------------------------


def loop_model(with_trip=True, with_cond=True):
    """acc += float(i) * x each iteration; scan output acc; stop when i >= 3 (if cond is given)."""
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=F),
            helper.make_node("Mul", ["fi", "x"], ["step"]),  # x from the outer scope
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan"]),
            helper.make_node("Less", ["i", "three"], ["cond_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2, 3])],
        [vi("cond_out", B, []), vi("acc_out", F, [2, 3]), vi("scan", F, [2, 3])],
        initializer=[const("three", np.array(3, np.int64))],
    )
    node = helper.make_node(
        "Loop", ["m" if with_trip else "", "c" if with_cond else "", "acc0"], ["acc", "scans"], body=body
    )
    inputs = [vi("x", F, [2, 3]), vi("acc0", F, [2, 3])]
    inputs += [vi("m", I64, [])] if with_trip else []
    inputs += [vi("c", B, [])] if with_cond else []
    return model([node], inputs, [vi("acc", F, [2, 3]), vi("scans", F, None)])


@pytest.mark.parametrize(
    "with_trip, with_cond, trip",
    [
        (True, True, 6),  # cond stops it after i == 3
        (True, True, 2),  # trip count stops it first
        (True, False, 6),  # body's cond still stops it without a cond input, as in ONNX Runtime
        (False, True, 0),  # while loop
        (True, True, 0),  # zero iterations: carried values pass through
    ],
)
def test_loop(with_trip, with_cond, trip):
    feeds = {"x": X, "acc0": Y}
    if with_trip:
        feeds["m"] = np.array(trip, np.int64)
    if with_cond:
        feeds["c"] = np.array(True)
    if with_trip and trip == 0:  # ONNX Runtime's empty scan output shape is not worth pinning; check acc only
        got = Interpreter(loop_model(with_trip, with_cond)).run(feeds)
        np.testing.assert_array_equal(got["acc"], Y)
        assert got["scans"].shape[0] == 0
        return
    check_model(loop_model(with_trip, with_cond), feeds)


def test_loop_without_trip_or_cond_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="Loop: neither"):
        Interpreter(loop_model(False, False)).run({"x": X, "acc0": Y})


def test_loop_compiles_its_body_once(monkeypatch):
    from xverify.engine import interpreter

    compiled = []
    original = interpreter._Program.__init__

    def counting(self, graph, *args):
        compiled.append(graph.name)
        original(self, graph, *args)

    monkeypatch.setattr(interpreter._Program, "__init__", counting)
    interp = Interpreter(loop_model(True, True))
    for _ in range(2):
        interp.run({"x": X, "acc0": Y, "m": np.array(100, np.int64), "c": np.array(True)})
    assert compiled == ["main", "body"]


def test_nested_loop_with_if_inside():
    """An outer Loop whose body runs an If reading the outer graph's x and the loop's counter."""
    then = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["t"])], "then", [], [vi("t", F, [2, 3])]
    )
    other = helper.make_graph(
        [helper.make_node("Sub", ["acc_in", "x"], ["e"])], "else", [], [vi("e", F, [2, 3])]
    )
    body = helper.make_graph(
        [
            helper.make_node("Mod", ["i", "two"], ["r"]),
            helper.make_node("Equal", ["r", "zero"], ["even"]),
            helper.make_node("If", ["even"], ["acc_out"], then_branch=then, else_branch=other),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2, 3])],
        [vi("cond_out", B, []), vi("acc_out", F, [2, 3])],
        initializer=[const("two", np.array(2, np.int64)), const("zero", np.array(0, np.int64))],
    )
    node = helper.make_node("Loop", ["m", "", "acc0"], ["acc"], body=body)
    m = model([node], [vi("x", F, [2, 3]), vi("acc0", F, [2, 3]), vi("m", I64, [])], [vi("acc", F, [2, 3])])
    check_model(m, {"x": X, "acc0": Y, "m": np.array(5, np.int64)})


# Scan ---------------------------------------------------------------------------------------


def scan_model(in_axes=None, in_dirs=None, out_axes=None, out_dirs=None, x_shape=(4, 3)):
    """Running sum s += x_t * w_t over two scan inputs; scan outputs s and x_t."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["x_t", "w_t"], ["p"]),
            helper.make_node("Add", ["s_in", "p"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
            helper.make_node("Identity", ["x_t"], ["x_copy"]),
        ],
        "body",
        [vi("s_in", F, [3]), vi("x_t", F, [3]), vi("w_t", F, [3])],
        [vi("s_out", F, [3]), vi("y_t", F, [3]), vi("x_copy", F, [3])],
    )
    attrs = {"body": body, "num_scan_inputs": 2}
    for key, value in [
        ("scan_input_axes", in_axes),
        ("scan_input_directions", in_dirs),
        ("scan_output_axes", out_axes),
        ("scan_output_directions", out_dirs),
    ]:
        if value is not None:
            attrs[key] = value
    node = helper.make_node("Scan", ["s0", "x", "w"], ["s", "ys", "xs"], **attrs)
    return model(
        [node],
        [vi("s0", F, [3]), vi("x", F, list(x_shape)), vi("w", F, [4, 3])],
        [vi("s", F, None), vi("ys", F, None), vi("xs", F, None)],
    )


@pytest.mark.parametrize(
    "attrs, x_shape",
    [
        ({}, (4, 3)),
        ({"in_dirs": [1, 0]}, (4, 3)),
        ({"in_axes": [1, 0]}, (3, 4)),
        ({"in_axes": [-1, 0], "in_dirs": [0, 1]}, (3, 4)),
        ({"out_axes": [1, -1]}, (4, 3)),
        ({"out_dirs": [1, 0], "out_axes": [0, 1]}, (4, 3)),
    ],
)
def test_scan(attrs, x_shape):
    feeds = {
        "s0": rng.standard_normal(3).astype(np.float32),
        "x": rng.standard_normal(x_shape).astype(np.float32),
        "w": rng.standard_normal((4, 3)).astype(np.float32),
    }
    check_model(scan_model(x_shape=x_shape, **attrs), feeds)
