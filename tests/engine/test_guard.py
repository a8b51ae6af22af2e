"""The guard: every kernel, at every ONNX version of its op inside its declared opset range, against
ONNX Runtime and onnx.reference on seeded random inputs.

A kernel claims the opsets ``since..until``; ONNX revised the op at some of them. For each revision
inside the range (from opset 7, ONNX Runtime's oldest, to 25), one model per case below runs in the
engine (float32 and the float64 oracle) and in ONNX Runtime, and, unless listed in
``REFERENCE_DIFFERS``, in onnx.reference. So the oracle never sides against a runtime on an op the
engine implements from another opset.
"""

from __future__ import annotations

import numpy as np
import onnx.defs
import pytest

from tests.engine.opcheck import check_op, make_model
from xverify.engine import ops  # noqa: F401  (importing the kernels fills the registry)
from xverify.engine.registry import VERSIONS

ORT_OPSETS = range(7, 26)
rng = np.random.default_rng(0)
F = rng.standard_normal((2, 3, 4)).astype(np.float32)
G = rng.standard_normal((2, 3, 4)).astype(np.float32)
P = rng.uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)  # positive
U = rng.uniform(-0.9, 0.9, (2, 3, 4)).astype(np.float32)  # inside (-1, 1)
B = rng.random((2, 3, 4)) < 0.5
C = rng.random((2, 3, 4)) < 0.5
I64 = rng.integers(-5, 5, (2, 3, 4)).astype(np.int64)
IMG = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
W = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
CH = rng.uniform(0.5, 1.5, 4).astype(np.float32)


def i64(*v):
    return np.array(v, np.int64)


def f32(*v):
    return np.array(v, np.float32)


# op -> (inputs, attributes, const_inputs): one representative call per op.
CASES = {
    **{
        name: ([F], {}, ())
        for name in (
            "Abs",
            "Neg",
            "Exp",
            "Floor",
            "Ceil",
            "Sign",
            "Sin",
            "Cos",
            "Tan",
            "Atan",
            "Sinh",
            "Cosh",
            "Asinh",
            "Relu",
            "Sigmoid",
            "Tanh",
            "Softplus",
            "Softsign",
            "Erf",
            "Identity",
            "Round",
            "HardSwish",
            "Mish",
            "Celu",
            "Elu",
            "Selu",
            "LeakyRelu",
            "HardSigmoid",
            "ThresholdedRelu",
            "IsNaN",
            "IsInf",
            "Softmax",
            "LogSoftmax",
            "Hardmax",
            "Shrink",
            "Gelu",
        )
    },
    **{name: ([P], {}, ()) for name in ("Sqrt", "Log", "Reciprocal", "Acosh")},
    **{name: ([U], {}, ()) for name in ("Asin", "Acos", "Atanh")},
    **{
        name: ([F, G], {}, ())
        for name in (
            "Add",
            "Sub",
            "Mul",
            "Max",
            "Min",
            "Sum",
            "Mean",
            "Less",
            "Greater",
            "LessOrEqual",
            "GreaterOrEqual",
        )
    },
    "Div": ([F, P], {}, ()),
    "Pow": ([P, G], {}, ()),
    "Mod": ([I64, i64(3)], {}, ()),
    "Equal": ([I64, I64[::-1].copy()], {}, ()),
    **{name: ([B, C], {}, ()) for name in ("And", "Or", "Xor")},
    "Not": ([B], {}, ()),
    "Where": ([B, F, G], {}, ()),
    "BitShift": ([np.array([1, 4, 9], np.uint8), np.array([1, 2, 3], np.uint8)], {"direction": "LEFT"}, ()),
    **{name: ([I64, I64[::-1].copy()], {}, ()) for name in ("BitwiseAnd", "BitwiseOr", "BitwiseXor")},
    "BitwiseNot": ([I64], {}, ()),
    "Cast": ([F], {"to": 11}, ()),
    "CastLike": ([F, np.zeros(1, np.float64)], {}, ()),
    "Clip": ([F, f32(-0.5), f32(0.5)], {}, (1, 2)),
    "PRelu": ([F, f32(0.1, 0.2, 0.3, 0.4)], {}, ()),
    "MatMul": ([F, G.transpose(0, 2, 1).copy()], {}, ()),
    "Gemm": ([F[0], G[0].T.copy(), f32(1.0)], {"alpha": 0.5}, ()),
    "Einsum": ([F, G], {"equation": "bij,bij->bi"}, ()),
    "Conv": ([IMG, W], {"pads": [1, 1, 1, 1]}, ()),
    "ConvTranspose": ([IMG, W.transpose(1, 0, 2, 3).copy()], {"strides": [2, 2]}, ()),
    "MaxPool": ([IMG], {"kernel_shape": [2, 2]}, ()),
    "AveragePool": ([IMG], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, ()),
    "LpPool": ([IMG], {"kernel_shape": [2, 2]}, ()),
    **{name: ([IMG], {}, ()) for name in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")},
    "BatchNormalization": ([IMG, CH, CH, CH - 1, CH], {}, ()),
    "InstanceNormalization": ([IMG, CH, CH], {}, ()),
    "LayerNormalization": ([F, f32(1, 2, 3, 4), f32(0, 1, 0, 1)], {}, ()),
    "LpNormalization": ([F], {"axis": 1}, ()),
    "LRN": ([IMG], {"size": 3}, ()),
    "MeanVarianceNormalization": ([IMG], {}, ()),
    "GroupNormalization": ([IMG, CH, CH - 1], {"num_groups": 2}, ()),
    "Dropout": ([F], {}, ()),
    **{
        name: ([F], {"axes": [1], "keepdims": 1}, ())
        for name in (
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceSumSquare",
            "ReduceLogSumExp",
            "ReduceSum",
        )
    },
    "ReduceLogSum": ([P], {"axes": [1], "keepdims": 0}, ()),
    **{name: ([F], {"axis": 1}, ()) for name in ("ArgMax", "ArgMin")},
    "Shape": ([F], {}, ()),
    "Size": ([F], {}, ()),
    "Reshape": ([F, i64(4, 6)], {}, (1,)),
    "Flatten": ([F], {"axis": 2}, ()),
    "Transpose": ([F], {"perm": [2, 0, 1]}, ()),
    "Squeeze": ([F[:1]], {"axes": [0]}, ()),
    "Unsqueeze": ([F], {"axes": [1]}, ()),
    "Concat": ([F, G], {"axis": 1}, ()),
    "Split": ([F], {"axis": 2}, ()),
    "Slice": ([F, i64(0, 1), i64(2, 3), i64(1, 2)], {}, (1, 2, 3)),
    "Gather": ([F, i64(2, 0)], {"axis": 1}, ()),
    "GatherElements": ([F, np.zeros((2, 3, 4), np.int64)], {"axis": 1}, ()),
    "GatherND": ([F, i64(1, 2).reshape(1, 2)], {}, ()),
    "ScatterElements": ([F, np.ones((2, 1, 4), np.int64), G[:, :1]], {"axis": 1}, ()),
    "Scatter": ([F, np.ones((2, 1, 4), np.int64), G[:, :1]], {"axis": 1}, ()),
    "ScatterND": ([F, i64(1, 2).reshape(1, 2), G[0, 0:1]], {}, ()),
    "Expand": ([F[:, :1], i64(2, 3, 4)], {}, (1,)),
    "Tile": ([F, i64(1, 2, 1)], {}, (1,)),
    "Pad": ([IMG, i64(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": "reflect"}, (1,)),
    "ConstantOfShape": ([i64(2, 3)], {}, (0,)),
    "DepthToSpace": ([IMG], {"blocksize": 2}, ()),
    "SpaceToDepth": ([IMG[:, :, :4, :4]], {"blocksize": 2}, ()),
    "OneHot": ([i64(0, 2, 1), np.array(3, np.int64), f32(0, 1)], {}, (1,)),
    "NonZero": ([B], {}, ()),
    "TopK": ([F, i64(2)], {}, (1,)),
    "CumSum": ([F, np.array(1, np.int64)], {}, (1,)),
    "CumProd": ([P, np.array(2, np.int64)], {"exclusive": 1}, (1,)),
    "RMSNormalization": ([F, f32(1, 2, 3, 4)], {}, ()),
    "Swish": ([F], {"alpha": 0.7}, ()),
    "Det": ([rng.standard_normal((2, 3, 3)).astype(np.float32)], {}, ()),
    **{
        name: ([np.array(10, np.int64)], {"periodic": 0}, (0,))
        for name in ("HannWindow", "HammingWindow", "BlackmanWindow")
    },
    "Compress": ([F, np.array([True, False, True])], {"axis": 1}, ()),
    "Unique": ([np.array([3, 1, 3, 2, 1], np.int64)], {"sorted": 0}, ()),
    "CenterCropPad": ([IMG, i64(3, 8)], {"axes": [2, 3]}, (1,)),
    "SwiGLU": ([F, G], {}, ()),
    "BitCast": ([F], {"to": 6}, ()),
    "MelWeightMatrix": (
        [
            np.array(10, np.int64),
            np.array(64, np.int64),
            np.array(16000, np.int64),
            np.float32(100),
            np.float32(7000),
        ],
        {},
        (0, 1, 2, 3, 4),
    ),
    "DeformConv": (
        [
            IMG,
            rng.standard_normal((4, 2, 2, 2)).astype(np.float32),
            rng.uniform(-1.5, 1.5, (1, 16, 4, 4)).astype(np.float32),
            f32(0.1, 0.2, 0.3, 0.4),
            rng.random((1, 8, 4, 4)).astype(np.float32),
        ],
        {"group": 2, "offset_group": 2, "kernel_shape": [2, 2]},
        (),
    ),
    "Attention": (
        [
            rng.standard_normal((2, 4, 3, 8)).astype(np.float32),
            rng.standard_normal((2, 2, 5, 8)).astype(np.float32),
            rng.standard_normal((2, 2, 5, 6)).astype(np.float32),
            rng.random((3, 5)) < 0.8,
        ],
        {"is_causal": 1, "softcap": 3.0},
        (),
    ),
    "RoiAlign": (
        [IMG, np.array([[0.5, 0.5, 3.2, 4.1], [1, 0, 4, 2]], np.float32), i64(0, 0)],
        {"output_height": 2, "output_width": 3},
        (),
    ),
    "AffineGrid": (
        [rng.standard_normal((2, 2, 3)).astype(np.float32), i64(2, 3, 4, 5)],
        {"align_corners": 0},
        (1,),
    ),
    "Col2Im": (
        [rng.standard_normal((1, 8, 12)).astype(np.float32), i64(3, 4), i64(2, 2)],
        {"pads": [1, 0, 0, 1]},
        (1, 2),
    ),
    "GridSample": (
        [IMG, rng.uniform(-1.2, 1.2, (1, 3, 4, 2)).astype(np.float32)],
        {"padding_mode": "reflection"},
        (),
    ),
    "DFT": ([F.reshape(2, 12, 1), None, np.array(-2, np.int64)], {}, (2,)),
    "STFT": (
        [
            rng.standard_normal((2, 16, 1)).astype(np.float32),
            np.array(4, np.int64),
            np.hanning(8).astype(np.float32),
        ],
        {},
        (1,),
    ),
    "RotaryEmbedding": (
        [
            rng.standard_normal((2, 3, 8)).astype(np.float32),
            rng.standard_normal((5, 2)).astype(np.float32),
            rng.standard_normal((5, 2)).astype(np.float32),
            np.array([[0, 1, 2], [2, 3, 4]], np.int64),
        ],
        {"num_heads": 2},
        (),
    ),
    "MaxUnpool": (
        [f32(5, 7).reshape(1, 1, 1, 2), i64(1, 3).reshape(1, 1, 1, 2)],
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        (),
    ),
    "TensorScatter": (
        [np.zeros((2, 3, 6, 4), np.float32), F.reshape(2, 3, 1, 4)[:, :, :, :], i64(1, 5)],
        {"mode": "circular"},
        (),
    ),
    "Trilu": ([F], {}, ()),
    "EyeLike": ([F[0]], {}, ()),
    "ReverseSequence": ([F, i64(2, 1)], {"batch_axis": 0, "time_axis": 1}, ()),
    "Range": ([np.float32(1), np.float32(7), np.float32(1.5)], {}, ()),
    "Resize": ([IMG, np.zeros(0, np.float32), f32(1, 1, 2, 1.5)], {"mode": "linear"}, (1, 2)),
    "Upsample": ([IMG, f32(1, 1, 2, 3)], {"mode": "nearest"}, (1,)),
    "NonMaxSuppression": (
        [
            np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32),
            np.array([[[0.9, 0.8, 0.7]]], np.float32),
            i64(2),
            f32(0.5),
        ],
        {},
        (),
    ),
    "QuantizeLinear": ([F, np.float32(0.05), np.uint8(128)], {}, ()),
    "DequantizeLinear": (
        [rng.integers(0, 255, (2, 3, 4)).astype(np.uint8), np.float32(0.05), np.uint8(128)],
        {},
        (),
    ),
    "DynamicQuantizeLinear": ([F], {}, ()),
    "MatMulInteger": (
        [
            rng.integers(0, 255, (3, 4)).astype(np.uint8),
            rng.integers(0, 255, (4, 2)).astype(np.uint8),
            np.uint8(12),
            np.uint8(100),
        ],
        {},
        (),
    ),
    "ConvInteger": (
        [
            rng.integers(0, 255, (1, 4, 5, 5)).astype(np.uint8),
            rng.integers(0, 255, (2, 4, 3, 3)).astype(np.uint8),
            np.uint8(3),
        ],
        {},
        (),
    ),
    "QLinearMatMul": (
        [
            rng.integers(0, 255, (3, 4)).astype(np.uint8),
            np.float32(0.02),
            np.uint8(120),
            rng.integers(0, 255, (4, 2)).astype(np.uint8),
            np.float32(0.03),
            np.uint8(110),
            np.float32(0.5),
            np.uint8(100),
        ],
        {},
        (),
    ),
    "QLinearConv": (
        [
            rng.integers(0, 255, (1, 4, 5, 5)).astype(np.uint8),
            np.float32(0.02),
            np.uint8(120),
            rng.integers(0, 255, (2, 4, 3, 3)).astype(np.uint8),
            np.float32(0.03),
            np.uint8(110),
            np.float32(2.0),
            np.uint8(100),
        ],
        {},
        (),
    ),
}
# Checked elsewhere with the graphs they need (subgraphs, sequences) or stateful (RNNs): control,
# rnn and sequence tests, and ONNX's node tests. LinearAttention and CausalConvWithState exist from
# opset 27 only, past the opsets ONNX Runtime runs: test_recurrent_state.py holds them to onnx.reference.
ELSEWHERE = {
    "LinearAttention",
    "CausalConvWithState",
    "If",
    "Loop",
    "Scan",
    "LSTM",
    "GRU",
    "RNN",
    "Constant",
    "SequenceAt",
    "SequenceConstruct",
    "SequenceEmpty",
    "SequenceErase",
    "SequenceInsert",
    "SequenceLength",
    "SplitToSequence",
    "ConcatFromSequence",
    "SequenceMap",
}
# (op, opset) pairs where onnx.reference implements another opset's semantics or has a bug (ONNX
# Runtime and the ONNX spec agree with the engine there): Softmax-family before 13 normalize over the
# flattened axes (test_versions.py), BatchNormalization 7-13 mix in batch statistics at inference
# (its default momentum), LRN loops over the batch axis instead of the channels, RoiAlign-10 gets
# opset 16's half-pixel shift.
REFERENCE_DIFFERS = (
    {(n, v) for n in ("Softmax", "LogSoftmax", "Hardmax") for v in range(7, 13)}
    | {("BatchNormalization", v) for v in range(7, 14)}
    | {("LRN", v) for v in ORT_OPSETS}
    | {("RoiAlign", 10)}
)
# onnx.reference has no implementation of these op versions.
REFERENCE_MISSING = {
    "GlobalLpPool",
    "Scatter",
    ("DequantizeLinear", 10),
    ("DequantizeLinear", 13),
    ("Resize", 10),
    ("Upsample", 7),
    ("Upsample", 8),
}
# ONNX Runtime 1.32 has no kernel for these op versions (GroupNormalization: none at all), or
# onnx's shape inference gives the one-node model no output type ORT would accept (Compress-9):
# the engine is compared with onnx.reference alone there.
ORT_MISSING = {
    ("GlobalLpPool", 22),
    ("GroupNormalization", 18),
    ("GroupNormalization", 21),
    ("Compress", 9),
    ("RoiAlign", 22),
}
N_OUTPUTS = {"TopK": 2, "DynamicQuantizeLinear": 3, "Split": 2, "Unique": 4}


def _case(name: str, opset: int):
    """(inputs, attributes, const_inputs) of ``name`` in the form ``opset`` takes."""
    inputs, attrs, consts = CASES[name]
    inputs, attrs = list(inputs), dict(attrs)
    as_input = "axes" in attrs and (
        (name in ("Squeeze", "Unsqueeze") and opset >= 13)
        or (name == "ReduceSum" and opset >= 13)
        or (name.startswith("Reduce") and opset >= 18)
    )
    if as_input:
        consts = consts + (len(inputs),)
        inputs.append(np.array(attrs.pop("axes"), np.int64))
    old = _OLD_FORMS.get(name)
    if old and opset <= old[0]:
        inputs, attrs, consts = old[1](inputs, attrs)
    if name == "Split" and opset >= 18:
        attrs["num_outputs"] = 2
    return inputs, attrs, consts


# op -> (the last opset of its attribute form, a function giving that form's inputs and attributes)
_OLD_FORMS = {
    "Clip": (10, lambda i, a: ([i[0]], {"min": -0.5, "max": 0.5}, ())),
    "Pad": (10, lambda i, a: ([i[0]], {**a, "pads": [int(v) for v in i[1]]}, ())),
    "Slice": (9, lambda i, a: ([i[0]], {"starts": [0, 1], "ends": [2, 3], "axes": [1, 2]}, ())),
    "TopK": (9, lambda i, a: ([i[0]], {"k": 2}, ())),
    "Upsample": (8, lambda i, a: ([i[0]], {**a, "scales": [1.0, 1.0, 2.0, 3.0]}, ())),
    "Resize": (10, lambda i, a: ([i[0], i[2]], a, (1,))),
    "GroupNormalization": (20, lambda i, a: ([i[0], f32(1, 2), f32(0, 1)], a, ())),
    "DFT": (19, lambda i, a: ([i[0]], {**a, "axis": 1}, ())),
}


def _revisions(name: str) -> list[int]:
    return sorted(
        {
            s.since_version
            for s in onnx.defs.get_all_schemas_with_history()
            if s.domain == "" and s.name == name and not s.deprecated
        }
    )


def _params():
    for (domain, name), specs in sorted(VERSIONS.items()):
        if domain or name in ELSEWHERE:
            continue
        for spec in specs:
            top = min(spec.until or ORT_OPSETS[-1], ORT_OPSETS[-1])
            opsets = [v for v in _revisions(name) if spec.since <= v <= top and v >= ORT_OPSETS[0]]
            if spec.covers(ORT_OPSETS[0]) and ORT_OPSETS[0] not in opsets and _revisions(name)[0] < 7:
                opsets.insert(0, ORT_OPSETS[0])
            for opset in opsets:
                if (name, opset) in ORT_MISSING and name in REFERENCE_MISSING:
                    continue  # nothing to compare with (GlobalLpPool-22 only added bfloat16)
                yield pytest.param(name, opset, id=f"{name}-{opset}")


def test_every_claimed_op_has_a_case():
    claimed = {name for (domain, name) in VERSIONS if not domain} - ELSEWHERE
    assert len(claimed) > 100, "the registry is empty when the parameters are made: ops not imported"
    assert sorted(claimed - set(CASES)) == []


@pytest.mark.parametrize("name, opset", list(_params()))
def test_kernel_matches_runtime_and_reference(name, opset):
    inputs, attrs, consts = _case(name, opset)
    reference = (
        (name, opset) not in REFERENCE_DIFFERS
        and name not in REFERENCE_MISSING
        and (name, opset) not in REFERENCE_MISSING
    )
    if (name, opset) in ORT_MISSING:
        _check_against_reference(name, inputs, attrs, opset)
        return
    check_op(
        name,
        inputs,
        attrs,
        n_outputs=N_OUTPUTS.get(name, 1),
        const_inputs=consts,
        opset=opset,
        atol=1e-4,
        rtol=1e-4,
        reference=reference,
    )


def _check_against_reference(name, inputs, attrs, opset):
    from onnx.reference import ReferenceEvaluator

    from xverify.engine import Interpreter

    model = make_model(name, inputs, attrs, opset=opset)
    feeds = {f"in{i}": a for i, a in enumerate(inputs) if a is not None}
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    for dtype in ("float32", "float64"):
        got = Interpreter(model, dtype).run(feeds)["out0"]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"{name} {dtype}")
