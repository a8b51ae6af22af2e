"""The interpreter's in-place execution: a kernel may overwrite an input only nobody else can see."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from xverify.engine import Interpreter
from xverify.engine.memory import exclusive


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


X = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], dtype=np.float32)


def _addresses(interp, feeds):
    seen = {}
    interp.run(feeds, on_tensor=lambda name, v: seen.setdefault(name, v.ctypes.data))
    return seen


def test_dying_intermediate_is_reused_in_place():
    model = _model(
        [
            helper.make_node("Mul", ["x", "x"], ["m"]),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("Neg", ["r"], ["y"]),
        ],
        ["x"],
        ["y"],
    )
    seen = _addresses(Interpreter(model), {"x": X})
    assert seen["r"] == seen["m"]  # Relu wrote into Mul's output, which dies there
    np.testing.assert_array_equal(Interpreter(model).run({"x": X})["y"], -np.maximum(X * X, 0))


def test_tensor_with_two_consumers_is_not_clobbered():
    # m feeds Relu and, later, Add: Relu must not overwrite it.
    model = _model(
        [
            helper.make_node("Neg", ["x"], ["m"]),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("Add", ["r", "m"], ["y"]),
        ],
        ["x"],
        ["y"],
    )
    for dtype in ("float32", "float64"):
        y = Interpreter(model, dtype).run({"x": X})["y"]
        np.testing.assert_allclose(y, np.maximum(-X, 0) - X)


def test_graph_inputs_initializers_and_taps_are_never_modified():
    w = np.full((2, 3), 2.0, dtype=np.float32)
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Mul", ["w", "r"], ["m"]),
            helper.make_node("Clip", ["m"], ["c"]),
            helper.make_node("Add", ["c", "x"], ["y"]),
        ],
        ["x"],
        ["y"],
        [("w", w)],
    )
    interp = Interpreter(model)
    x = X.copy()
    for _ in range(2):  # a second run would see a modified initializer
        out = interp.run({"x": x}, taps=["m"])
        np.testing.assert_array_equal(x, X)
        np.testing.assert_array_equal(out["m"], 2 * np.maximum(X, 0))
        np.testing.assert_array_equal(out["y"], 2 * np.maximum(X, 0) + X)
    np.testing.assert_array_equal(interp.program.constants["w"], w)


def test_views_of_a_live_tensor_block_in_place():
    # Reshape returns a view of r; Relu of that view must not write through into r, which Add reads.
    shape = numpy_helper.from_array(np.array([3, 2], dtype=np.int64), "shape")
    back = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "back")
    model = _model(
        [
            helper.make_node("Neg", ["x"], ["r"]),
            helper.make_node("Reshape", ["r", "shape"], ["v"]),
            helper.make_node("Relu", ["v"], ["rv"]),
            helper.make_node("Reshape", ["rv", "back"], ["b"]),
            helper.make_node("Add", ["b", "r"], ["y"]),
        ],
        ["x"],
        ["y"],
    )
    model.graph.initializer.extend([shape, back])
    y = Interpreter(model).run({"x": X})["y"]
    np.testing.assert_array_equal(y, np.maximum(-X, 0) - X)


def test_values_kept_by_a_callback_are_not_overwritten():
    model = _model(
        [helper.make_node("Neg", ["x"], ["m"]), helper.make_node("Relu", ["m"], ["y"])], ["x"], ["y"]
    )
    kept = {}
    Interpreter(model).run({"x": X}, on_tensor=kept.__setitem__)
    np.testing.assert_array_equal(kept["m"], -X)


def test_exclusive_counts_references():
    a = np.zeros(4)
    holders = [a]
    assert exclusive(a, 2)  # the name `a` and the list
    view = a.reshape(2, 2)
    assert not exclusive(a, 2)  # the view holds it too
    del a, holders
    assert exclusive(view, 1)  # its base is held by the view alone
    assert not exclusive(np.broadcast_to(view, (3, 2, 2)), 1)  # read-only


def test_large_in_place_ops_split_over_the_pool_give_the_plain_result():
    # Above ~1M elements an in-place op runs in batch slices on the kernel pool; each argument
    # must line up with its slice or broadcast whole.
    r = np.random.default_rng(0)
    shape = (4, 8, 180, 180)
    per_channel = r.standard_normal((1, 8, 1, 1)).astype(np.float32)
    full = r.standard_normal(shape).astype(np.float32)
    lo, hi = np.array(-0.5, np.float32), np.array(0.5, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["n"]),
            helper.make_node("Mul", ["n", "pc"], ["m"]),
            helper.make_node("Add", ["m", "full"], ["a"]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("Sub", ["r", "x"], ["s"]),
            helper.make_node("Clip", ["s", "lo", "hi"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[
            numpy_helper.from_array(a, n)
            for n, a in [("pc", per_channel), ("full", full), ("lo", lo), ("hi", hi)]
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = r.standard_normal(shape).astype(np.float32)
    want = np.clip(np.maximum(-x * per_channel + full, 0) - x, lo, hi)
    np.testing.assert_array_equal(Interpreter(model).run({"x": x})["y"], want)
    seen = _addresses(Interpreter(model), {"x": x})
    assert seen["y"] == seen["s"] == seen["r"] == seen["a"] == seen["m"] == seen["n"]
