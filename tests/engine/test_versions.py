"""Versioned kernels: the interpreter runs each op with the kernel of the model's opset."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.engine.opcheck import check_op, make_model
from xverify.engine import Interpreter
from xverify.engine.registry import op, resolve, supported_versions
from xverify.errors import UnsupportedOpError

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset, axis", [(9, None), (11, 1), (11, 0), (12, -1), (13, 1), (17, None)])
def test_softmax_family_follows_the_opset(op_type, opset, axis):
    """Before opset 13 these flatten x from ``axis`` (default 1) into 2-D; light_squeezenet.onnx
    (opset 9) was run with opset 13's semantics and ONNX Runtime blamed for the difference.
    (onnx.reference applies opset 13's semantics at every opset: compared from 13 only.)"""
    attrs = {} if axis is None else {"axis": axis}
    check_op(op_type, [X], attrs, opset=opset, reference=opset >= 13)


def test_opset_9_softmax_normalizes_the_flattened_row():
    model = make_model("Softmax", [X], opset=9)
    out = Interpreter(model).run({"in0": X})["out0"]
    np.testing.assert_allclose(out.reshape(2, -1).sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater"])
def test_opset_6_broadcast_axis(op_type):
    """Opset 1-6 binary ops: broadcast=1 with axis aligns B's dimensions from ``axis`` on."""
    a = rng.uniform(1, 2, (2, 3, 4)).astype(np.float32)
    b = rng.uniform(1, 2, (3,)).astype(np.float32)
    model = make_model(op_type, [a, b], {"broadcast": 1, "axis": 1}, opset=6)
    out = Interpreter(model).run({"in0": a, "in1": b})["out0"]
    fn = {
        "Add": np.add,
        "Sub": np.subtract,
        "Mul": np.multiply,
        "Div": np.divide,
        "Pow": np.power,
        "Equal": np.equal,
        "Less": np.less,
        "Greater": np.greater,
    }[op_type]
    np.testing.assert_allclose(out, fn(a, b.reshape(3, 1)), rtol=1e-6)


def test_opset_6_prelu_slope_is_per_channel():
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    model = make_model("PRelu", [x, slope], opset=6)
    out = Interpreter(model).run({"in0": x, "in1": slope})["out0"]
    np.testing.assert_allclose(out, np.where(x >= 0, x, x * slope.reshape(3, 1, 1)), rtol=1e-6)


def test_opset_6_batchnorm_is_test_and_training_refused():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    stats = [np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32)]
    model = make_model("BatchNormalization", [x, *stats], {"is_test": 1, "epsilon": 0.0}, opset=6)
    np.testing.assert_allclose(
        Interpreter(model).run({"in0": x, **{f"in{i + 1}": s for i, s in enumerate(stats)}})["out0"], x
    )
    for attrs in ({"is_test": 0}, {}):  # before opset 7, is_test defaults to 0: training
        model = make_model("BatchNormalization", [x, *stats], attrs, opset=6)
        with pytest.raises(UnsupportedOpError, match="is_test=0"):
            Interpreter(model).run({"in0": x, **{f"in{i + 1}": s for i, s in enumerate(stats)}})
    model = make_model("Dropout", [x], {}, opset=6)
    with pytest.raises(UnsupportedOpError, match="is_test=0"):
        Interpreter(model).run({"in0": x})
    model = make_model("Dropout", [x], {}, n_outputs=2, opset=7)
    out, mask = Interpreter(model).run({"in0": x}).values()
    assert np.array_equal(out, x) and mask.dtype == np.float32 and np.all(mask == 1)


def test_op_version_without_kernel_is_refused_up_front_naming_versions():
    """Upsample was deprecated at opset 10 (Resize replaced it): a model importing opset 10 that
    still holds one is refused before anything runs, with the opsets the engine runs it at."""
    x = np.zeros((1, 1, 2, 2), np.float32)
    model = make_model("Upsample", [x, np.array([1, 1, 2, 2], np.float32)], opset=9)
    model.opset_import[0].version = 10
    with pytest.raises(
        UnsupportedOpError, match=r"Upsample at opset 10 \(the engine runs it at opsets 7-9\)"
    ):
        Interpreter(model)


def test_registry_refuses_overlapping_ranges_and_resolves_by_opset():
    assert supported_versions("Softmax") == "1-12, 13+"
    assert resolve("Softmax", "", 9).since == 1 and resolve("Softmax", "", 13).since == 13
    assert resolve("Upsample", "", 10) is None and resolve("Upsample", "", 9) is not None
    with pytest.raises(ValueError, match="registered twice"):
        op("Softmax", since=12)(lambda x: x)


def test_dispatch_happens_once_at_load():
    """The kernel of each node is chosen when the graph loads, not per run."""
    model = make_model("Softmax", [X], opset=11)
    interp = Interpreter(model)
    (step,) = interp.steps
    assert step.spec.since == 1 and step.spec.until == 12


def test_consumed_inputs_is_ignored():
    model = make_model("Relu", [X], opset=5)
    model.graph.node[0].attribute.append(helper.make_attribute("consumed_inputs", [0]))
    np.testing.assert_array_equal(Interpreter(model).run({"in0": X})["out0"], np.maximum(X, 0))


def test_cast_opset_1_names_the_type():
    model = make_model("Cast", [X], {"to": "DOUBLE"}, opset=5)
    assert Interpreter(model).run({"in0": X})["out0"].dtype == np.float64


def test_every_onnx_version_of_a_claimed_op_resolves_or_is_declared():
    """Each op the engine registers runs at every opset from the op's first ONNX version up to the
    newest, except the versions the registry leaves out on purpose (listed)."""
    import onnx.defs

    from xverify.engine.registry import VERSIONS

    left_out = {"Upsample": {1}}
    history: dict = {}
    ends: dict = {}  # a deprecated version ends the op (Upsample at 10, Scatter at 11)
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == "" and ("", schema.name) in VERSIONS:
            if schema.deprecated:
                ends[schema.name] = schema.since_version
            else:
                history.setdefault(schema.name, set()).add(schema.since_version)
    newest = onnx.defs.onnx_opset_version()
    gaps = []
    for name, versions in history.items():
        for opset in range(min(versions), ends.get(name, newest + 1)):
            introduced = max(v for v in versions if v <= opset)
            if resolve(name, "", opset) is None and introduced not in left_out.get(name, ()):
                gaps.append(f"{name} at opset {opset}")
    assert not gaps, gaps[:20]
