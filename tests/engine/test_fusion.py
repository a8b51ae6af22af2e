"""Fused Conv chains ([Pad ->] Conv [-> Mul] [-> Clip | Relu]): the same numbers as the nodes one by
one and as ONNX Runtime, and never when a caller wants an intermediate tensor."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from xverify.engine import Interpreter
from xverify.engine.fast import Tuning
from xverify.engine.fast import depthwise as fast_depthwise

rng = np.random.default_rng(3)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture(autouse=True, params=["compact", "wide"])
def handover(request):
    """Every test twice: a fused depthwise conv hands its output to the projection compact, and with
    each row at the computed width (used on large planes only, forced here)."""
    return request.param


def tuned(handover):
    return Tuning(wide_extra=1.0 if handover == "compact" else 10.0)


def spy_on_phased_producer(monkeypatch) -> list:
    """The calls of the fast path's phased producer, recorded as they happen."""
    made = []
    producer = fast_depthwise.phased_producer
    monkeypatch.setattr(fast_depthwise, "phased_producer", lambda *a: made.append(a) or producer(*a))
    return made


def unfused(model, x, dtype="float32"):
    """The model's output with every node run by its own kernel."""
    return Interpreter(model, dtype, fuse=False).run({"x": x})["y"]


def assert_as_nodes(fused, plain, exact):
    """The fused step's result against the nodes' one by one: bit for bit where it makes the nodes'
    own products; within float rounding where a Mul is folded into the conv's weights, or a 1x1
    conv's matmul runs over wider rows or stride phases (OpenBLAS can round a column differently
    with other columns around it)."""
    if exact:
        np.testing.assert_array_equal(fused, plain)
    else:
        tol = 1e-5 if fused.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(fused, plain, rtol=tol, atol=tol)


C = 6
CONSTANTS = {
    "pads": np.array([0, 0, 0, 1, 0, 0, 1, 0], dtype=np.int64),
    "zero": np.array(0.0, dtype=np.float32),
    "w_dw": randn(C, 1, 3, 3),
    "w_pw": randn(4, C, 1, 1),
    "b_pw": randn(4),
    "scale": randn(C, 1, 1),
    "lo": np.array(0.0, dtype=np.float32),
    "hi": np.array(6.0, dtype=np.float32),
}


def _graph_model(nodes, constants, x_shape, outs=("y",)):
    """A float model of ``nodes`` reading input ``x`` of ``x_shape``, with ``constants``."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None) for out in outs],
        initializer=[numpy_helper.from_array(a, n) for n, a in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _model(nodes, out="y", constants=CONSTANTS):
    return _graph_model(nodes, constants, [2, C, 21, 19], (out,))


MOBILENET_BLOCK = [  # Pad, depthwise conv, batch-norm scale, ReLU6, then a pointwise conv and Relu
    helper.make_node("Pad", ["x", "pads", "zero"], ["p"]),
    helper.make_node("Conv", ["p", "w_dw"], ["d"], group=C, strides=[2, 2], pads=[1, 0, 0, 1]),
    helper.make_node("Mul", ["d", "scale"], ["m"]),
    helper.make_node("Clip", ["m", "lo", "hi"], ["c"]),
    helper.make_node("Conv", ["c", "w_pw", "b_pw"], ["q"]),
    helper.make_node("Relu", ["q"], ["y"]),
]
X = randn(2, C, 21, 19)


def _ort(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_block_matches_the_nodes_one_by_one_and_onnxruntime(handover, dtype):
    model = _model(MOBILENET_BLOCK)
    interp = Interpreter(model, dtype, fuse=tuned(handover))
    assert interp.hidden == {"p", "d", "m", "c", "q"}  # the pointwise conv reads c
    assert [s.node.op_type for s in interp.steps] == ["Conv"]
    fused = interp.run({"x": X})["y"]
    plain = unfused(model, X, dtype)
    assert_as_nodes(fused, plain, exact=False)  # the Mul is folded into the weights
    np.testing.assert_allclose(fused, _ort(model, X), atol=1e-4, rtol=1e-4)


def test_a_callback_watching_the_tensors_sees_the_nodes_one_by_one(handover):
    seen = []
    interp = Interpreter(_model(MOBILENET_BLOCK), fuse=tuned(handover))
    out = interp.run({"x": X}, on_tensor=lambda name, value: seen.append(name))["y"]
    assert seen == ["p", "d", "m", "c", "q", "y"]
    np.testing.assert_array_equal(out, unfused(_model(MOBILENET_BLOCK), X))


def test_tapping_an_intermediate_runs_the_nodes_one_by_one(handover):
    interp = Interpreter(_model(MOBILENET_BLOCK), fuse=tuned(handover))
    out = interp.run({"x": X}, taps=["m"])
    assert out["m"].shape == (2, C, 11, 10)
    # (the Mul is folded into the weights)
    assert_as_nodes(interp.run({"x": X})["y"], out["y"], exact=False)


def test_chains_with_other_readers_or_nonzero_pad_are_not_fused(handover):
    constants = dict(CONSTANTS, one=np.array(1.0, dtype=np.float32))
    nodes = [
        helper.make_node("Pad", ["x", "pads", "one"], ["p"]),  # pads with ones
        helper.make_node("Conv", ["p", "w_dw"], ["d"], group=C),
        helper.make_node("Mul", ["d", "scale"], ["m"]),
        helper.make_node("Add", ["m", "d"], ["y"]),
    ]  # d has a second reader
    model = _model(nodes, constants=constants)
    interp = Interpreter(model, fuse=tuned(handover))
    assert not interp.hidden
    np.testing.assert_allclose(interp.run({"x": X})["y"], _ort(model, X), atol=1e-4, rtol=1e-4)


def test_graph_output_inside_a_chain_stays_visible(handover):
    nodes = MOBILENET_BLOCK[1:4]  # Conv -> Mul -> Clip, with the Mul's output the graph output
    nodes = [helper.make_node("Conv", ["x", "w_dw"], ["d"], group=C, pads=[1, 1, 1, 1])] + nodes[1:]
    model = _model(nodes, out="m")
    interp = Interpreter(model, fuse=tuned(handover))
    assert interp.hidden == {"d"}  # Conv -> Mul fused; the Clip reads the visible m
    np.testing.assert_allclose(interp.run({"x": X})["m"], _ort(model, X), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "factor",
    [np.array(0.5, dtype=np.float32), np.array([[[-2.0]], [[0.25]], [[3.0]], [[1.5]]], dtype=np.float32)],
)
def test_a_conv_with_bias_then_a_mul_folds_it_into_its_weights(handover, factor):
    # (conv(x, w) + b) * s == conv(x, w * s) + b * s, for one factor or one per output channel.
    constants = dict(CONSTANTS, s=factor)
    nodes = [
        helper.make_node("Conv", ["x", "w_pw", "b_pw"], ["q"]),
        helper.make_node("Mul", ["q", "s"], ["m"]),
        helper.make_node("Relu", ["m"], ["y"]),
    ]
    model = _model(nodes, constants=constants)
    interp = Interpreter(model, fuse=tuned(handover))
    assert interp.hidden == {"q", "m"}
    fused = interp.run({"x": X})["y"]
    assert_as_nodes(fused, unfused(model, X), exact=False)
    np.testing.assert_allclose(fused, _ort(model, X), atol=1e-4, rtol=1e-4)


EXPAND = {  # MobileNetV2's expand conv (1x1, bias, ReLU6) feeding a strided depthwise conv
    "w_ex": randn(C, 3, 1, 1),
    "b_ex": randn(C),
    "w_dw": CONSTANTS["w_dw"],
    "b_dw": randn(C),
    "scale": CONSTANTS["scale"],
    "lo": CONSTANTS["lo"],
    "hi": CONSTANTS["hi"],
    "pads": CONSTANTS["pads"],
    "zero": CONSTANTS["zero"],
}
EXPAND_BLOCK = [
    helper.make_node("Conv", ["x", "w_ex", "b_ex"], ["e"]),
    helper.make_node("Clip", ["e", "lo", "hi"], ["r"]),
    helper.make_node("Pad", ["r", "pads", "zero"], ["p"]),
    helper.make_node("Conv", ["p", "w_dw", "b_dw"], ["d"], group=C, strides=[2, 2]),
    helper.make_node("Mul", ["d", "scale"], ["m"]),
    helper.make_node("Clip", ["m", "lo", "hi"], ["y"]),
]


def _expand_model(batch):
    return _graph_model(EXPAND_BLOCK, EXPAND, [batch, 3, 21, 19])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 5])  # 5 images: more than the kernel pool's workers, unevenly
def test_pointwise_conv_feeding_a_depthwise_conv_is_one_step(handover, dtype, batch):
    model = _expand_model(batch)
    x = randn(batch, 3, 21, 19)
    interp = Interpreter(model, dtype, fuse=tuned(handover))
    assert interp.hidden == {"e", "r", "p", "d", "m"}
    assert [s.node.op_type for s in interp.steps] == ["Conv"]
    fused = interp.run({"x": x})["y"]
    plain = unfused(model, x, dtype)
    assert_as_nodes(fused, plain, exact=False)  # the Mul is folded into the weights
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "size, dw_attrs",
    [
        ((20, 18), {"pads": [0, 0, 1, 1], "strides": [2, 2]}),  # Keras' "same" on an even plane
        ((21, 19), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        ((21, 19), {"pads": [2, 0, 1, 2], "strides": [3, 2], "dilations": [2, 1]}),
        ((16, 17), {"pads": [1, 1, 1, 1], "strides": [2, 1]}),
    ],
)
def test_pointwise_conv_writes_a_strided_depthwise_input_as_its_stride_phases(
    monkeypatch, handover, dtype, size, dw_attrs
):
    # The expand conv writes the padded stride phases the depthwise conv reads (on planes this
    # small only when forced), with several blocks of channels per image; the results stay those
    # of the nodes one by one, which read strided windows of the plain tensor.
    tuning = Tuning(phased_extra=10.0, wide_extra=tuned(handover).wide_extra, depthwise_block=9 * 12 * 12 * 2)
    made = spy_on_phased_producer(monkeypatch)
    nodes = EXPAND_BLOCK[:2] + [
        helper.make_node("Conv", ["r", "w_dw", "b_dw"], ["d"], group=C, **dw_attrs),
        helper.make_node("Mul", ["d", "scale"], ["m"]),
        helper.make_node("Clip", ["m", "lo", "hi"], ["y"]),
    ]
    model = _graph_model(nodes, EXPAND, [3, 3, *size])
    x = randn(3, 3, *size)
    interp = Interpreter(model, dtype, fuse=tuning)
    fused = interp.run({"x": x})["y"]
    assert made and interp.hidden == {"e", "r", "d", "m"}
    plain = unfused(model, x, dtype)
    assert_as_nodes(fused, plain, exact=False)
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


def test_mobilenet_sized_block_is_within_rounding_of_the_nodes(monkeypatch, handover):
    # At MobileNet's sizes the expand conv writes stride phases by itself (no forcing), and the
    # projection takes rows at the computed width: the 1x1 matmuls run over other layouts than
    # the nodes' own, where OpenBLAS rounds some columns differently in the last bit.
    made = spy_on_phased_producer(monkeypatch)
    constants = {
        "w_ex": randn(96, 16, 1, 1),
        "w_dw": randn(96, 1, 3, 3),
        "w_pj": randn(24, 96, 1, 1),
        "lo": CONSTANTS["lo"],
        "hi": CONSTANTS["hi"],
    }
    nodes = [
        helper.make_node("Conv", ["x", "w_ex"], ["e"]),
        helper.make_node("Clip", ["e", "lo", "hi"], ["r"]),
        helper.make_node("Conv", ["r", "w_dw"], ["d"], group=96, strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Clip", ["d", "lo", "hi"], ["c"]),
        helper.make_node("Conv", ["c", "w_pj"], ["y"]),
    ]
    model = _graph_model(nodes, constants, [4, 16, 64, 64])
    x = randn(4, 16, 64, 64)
    interp = Interpreter(model)  # the default tuning
    fused = interp.run({"x": x})["y"]
    assert made and interp.hidden == {"e", "r", "d", "c"}
    assert_as_nodes(fused, unfused(model, x), exact=False)
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("skip", ["x", "bias"])
def test_residual_add_after_the_projection_joins_the_depthwise_step(handover, dtype, batch, skip):
    # MobileNetV2's block: expand, depthwise, project, then Add the block's input (image by image,
    # in either operand order), or a per-channel constant, which broadcasts (added after).
    constants = dict(EXPAND, w_pj=randn(3, C, 1, 1), bias=randn(3, 1, 1))
    add = ["x", "q"] if skip == "x" else ["q", "bias"]
    nodes = EXPAND_BLOCK[:2] + [
        helper.make_node("Conv", ["r", "w_dw", "b_dw"], ["d"], group=C, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "w_pj"], ["q"]),
        helper.make_node("Add", add, ["y"]),
    ]
    model = _graph_model(nodes, constants, [batch, 3, 21, 19])
    x = randn(batch, 3, 21, 19)
    interp = Interpreter(model, dtype, fuse=tuned(handover))
    assert [s.node.op_type for s in interp.steps] == ["Conv"]
    assert interp.hidden == {"e", "r", "d", "q"}
    fused = interp.run({"x": x})["y"]
    plain = unfused(model, x, dtype)
    assert_as_nodes(fused, plain, handover == "compact")
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("expand", [["x", "w_ex", "b_ex"], ["x", "w_ex"]])
def test_pointwise_conv_without_activation_feeding_a_depthwise_conv(handover, dtype, expand):
    # Its last pass (the bias, or a copy) writes into the padded plane the depthwise conv reads.
    constants = dict(EXPAND, w_pj=randn(4, C, 1, 1))
    nodes = [
        helper.make_node("Conv", expand, ["r"]),
        helper.make_node("Conv", ["r", "w_dw", "b_dw"], ["d"], group=C, pads=[1, 2, 0, 1]),
        helper.make_node("Conv", ["d", "w_pj"], ["y"]),
    ]
    model = _graph_model(nodes, constants, [3, 3, 21, 19])
    x = randn(3, 3, 21, 19)
    interp = Interpreter(model, dtype, fuse=tuned(handover))
    assert interp.hidden == {"r", "d"}
    fused = interp.run({"x": x})["y"]
    plain = unfused(model, x, dtype)
    assert_as_nodes(fused, plain, handover == "compact")
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


def test_pointwise_conv_with_a_second_reader_is_not_fused_into_the_depthwise_one(handover):
    nodes = EXPAND_BLOCK[:5] + [helper.make_node("Add", ["m", "d"], ["y"])]  # d read twice
    nodes[1] = helper.make_node("Clip", ["e", "lo", "hi"], ["r"])
    nodes.append(helper.make_node("Identity", ["r"], ["r2"]))  # r read twice too
    model = _graph_model(nodes, EXPAND, [3, 3, 21, 19], ("y", "r2"))
    interp = Interpreter(model, fuse=tuned(handover))
    assert interp.hidden == {"e", "p"}  # Conv -> Clip, and Pad -> Conv, each on its own
    x = randn(3, 3, 21, 19)
    np.testing.assert_allclose(interp.run({"x": x})["y"], _ort(model, x), atol=1e-4, rtol=1e-4)


def test_pointwise_convs_on_both_sides_of_depthwise_ones_each_join_one(handover):
    # expand -> depthwise -> project -> depthwise -> project: the middle pointwise conv can join
    # only one depthwise conv; results stay those of the nodes one by one.
    constants = dict(EXPAND, w_pj=randn(C, C, 1, 1), w_dw2=randn(C, 1, 3, 3), w_out=randn(4, C, 1, 1))
    nodes = EXPAND_BLOCK[:-1] + [
        helper.make_node("Clip", ["m", "lo", "hi"], ["c"]),
        helper.make_node("Conv", ["c", "w_pj"], ["q"]),
        helper.make_node("Conv", ["q", "w_dw2"], ["d2"], group=C, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d2", "w_out"], ["y"]),
    ]
    model = _graph_model(nodes, constants, [5, 3, 21, 19])
    interp = Interpreter(model, fuse=tuned(handover))
    assert [s.node.op_type for s in interp.steps] == ["Conv", "Conv"]
    assert interp.hidden == {"e", "r", "p", "d", "m", "c", "d2"}  # q joins the first
    x = randn(5, 3, 21, 19)
    fused = interp.run({"x": x})["y"]
    plain = unfused(model, x)
    assert_as_nodes(fused, plain, exact=False)  # the Mul is folded into the weights
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mobilenet_stem_conv_joins_the_depthwise_step(handover, dtype):
    # A 3x3 stride-2 conv (its Pad folded in) makes the depthwise input image by image too.
    constants = dict(EXPAND, w_stem=randn(C, 3, 3, 3), w_pj=randn(4, C, 1, 1))
    nodes = [
        helper.make_node("Pad", ["x", "pads", "zero"], ["px"]),
        helper.make_node("Conv", ["px", "w_stem"], ["e"], strides=[2, 2]),
        helper.make_node("Clip", ["e", "lo", "hi"], ["r"]),
        helper.make_node("Conv", ["r", "w_dw", "b_dw"], ["d"], group=C, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["d", "w_pj"], ["y"]),
    ]
    model = _graph_model(nodes, constants, [4, 3, 21, 19])
    interp = Interpreter(model, dtype, fuse=tuned(handover))
    assert [s.node.op_type for s in interp.steps] == ["Conv"]
    x = randn(4, 3, 21, 19)
    fused = interp.run({"x": x})["y"]
    plain = unfused(model, x, dtype)
    assert_as_nodes(fused, plain, handover == "compact")
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)


def test_two_branches_projected_into_one_add_fuse_the_add_once(handover):
    """NASNet's separable-conv branches: two depthwise -> pointwise chains whose outputs meet in
    one Add. The first group takes the Add; the second must leave its output visible for it (it
    took the Add as well, reading a tensor the first had hidden: a KeyError)."""
    constants = dict(
        w_dw=randn(C, 1, 3, 3), w_pa=randn(4, C, 1, 1), w_dw2=randn(C, 1, 3, 3), w_pb=randn(4, C, 1, 1)
    )
    nodes = [
        helper.make_node("Conv", ["x", "w_dw"], ["da"], group=C, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["da", "w_pa"], ["a"]),
        helper.make_node("Conv", ["x", "w_dw2"], ["db"], group=C, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["db", "w_pb"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    model = _graph_model(nodes, constants, [2, C, 9, 7])
    x = randn(2, C, 9, 7)
    interp = Interpreter(model, fuse=tuned(handover))
    assert [s.node.op_type for s in interp.steps] == ["Conv", "Conv"]
    fused = interp.run({"x": x})["y"]
    assert_as_nodes(fused, unfused(model, x), exact=False)
    np.testing.assert_allclose(fused, _ort(model, x), atol=1e-4, rtol=1e-4)
