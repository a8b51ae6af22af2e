"""Shape, indexing, constant and Resize kernels against ONNX Runtime, through ``check_op``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

from tests.engine.opcheck import check_op, check_reference_op

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
X3 = rng.standard_normal((3, 4, 5)).astype(np.float32)
I = rng.integers(-9, 9, (3, 4)).astype(np.int64)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def ints(*v):
    return np.array(v, dtype=np.int64)


@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"end": -1}, {"start": -3, "end": 3}, {"start": 10}])
def test_shape(attrs):
    check_op("Shape", [X], attrs, opset=15)


def test_size():
    check_op("Size", [X])
    check_op("Size", [I])


@pytest.mark.parametrize("shape", [(6, 20), (0, 3, -1), (-1,), (2, 0, 0, 5), (1, 2, 60)])
def test_reshape(shape):
    check_op("Reshape", [X, ints(*shape)], const_inputs=(1,))


def test_reshape_allowzero():
    check_op("Reshape", [np.zeros((0, 4), np.float32), ints(4, 0)], {"allowzero": 1}, const_inputs=(1,))


@pytest.mark.parametrize("axis", [0, 1, 2, 4, -1, -4])
def test_flatten(axis):
    check_op("Flatten", [X], {"axis": axis})


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [3, 2, 1, 0], [0, 1, 2, 3]])
def test_transpose(perm):
    check_op("Transpose", [X], {} if perm is None else {"perm": perm})
    check_op("Transpose", [I], {})


def test_squeeze_unsqueeze():
    y = X[:, :1, :, :1]
    check_op("Squeeze", [y, ints(1, -1)], const_inputs=(1,))
    check_op("Squeeze", [y])
    check_op("Squeeze", [y], {"axes": [1]}, opset=11)
    check_op("Unsqueeze", [X3, ints(0, -1)], const_inputs=(1,))
    check_op("Unsqueeze", [X3, ints(1, 3)], const_inputs=(1,))
    check_op("Unsqueeze", [I], {"axes": [0]}, opset=11)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    check_op("Concat", [X3, X3 * 2, X3[:, :, :1] if axis == -1 else X3], {"axis": axis})
    check_op("Concat", [I, I], {"axis": axis % 2})


def test_split():
    check_op("Split", [X3, ints(1, 3)], {"axis": 1}, n_outputs=2, const_inputs=(1,))
    check_op("Split", [X3], {"axis": -1}, n_outputs=5)
    check_op("Split", [X3], {"axis": 0, "num_outputs": 2}, n_outputs=2, opset=18)
    check_op("Split", [X3], {"axis": 2, "split": [2, 3]}, n_outputs=2, opset=11)


SLICES = [
    ([1], [3], [1], None),
    ([0, 1], [-1, 100], [0, 2], None),
    ([-1], [-100], [2], [-1]),
    ([3, 0], [0, 5], [1, -1], [-2, 2]),
    ([10], [20], [0], None),
    ([0], [9], None, [2]),
    ([4], [-9223372036854775807], [-1], [-1]),
]


@pytest.mark.parametrize("starts, ends, axes, steps", SLICES)
def test_slice(starts, ends, axes, steps):
    inputs = [X3, ints(*starts), ints(*ends)]
    inputs += [None if axes is None else ints(*axes), None if steps is None else ints(*steps)]
    while inputs[-1] is None:
        inputs.pop()
    check_op("Slice", inputs, reference=True)


def test_slice_attributes_opset9():
    check_op("Slice", [X3], {"starts": [1, 0], "ends": [3, -1], "axes": [0, 2]}, opset=9)


@SETTINGS
@given(data=st.data())
def test_slice_property(data):
    shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    n = data.draw(st.integers(1, len(shape)))
    axes = data.draw(st.permutations(range(len(shape))))[:n]
    bound = st.integers(-7, 7)
    starts, ends = (
        data.draw(st.lists(bound, min_size=n, max_size=n)),
        data.draw(st.lists(bound, min_size=n, max_size=n)),
    )
    steps = data.draw(st.lists(st.sampled_from([-3, -2, -1, 1, 2, 3]), min_size=n, max_size=n))
    check_op("Slice", [x, ints(*starts), ints(*ends), ints(*axes), ints(*steps)])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather(axis):
    check_op("Gather", [X3, ints(0, -1, 2)], {"axis": axis})
    check_op("Gather", [X3, ints(1)[0]], {"axis": axis})
    check_op("Gather", [I, np.array([[0, 1], [-1, 2]], np.int32)], {"axis": axis % 2})


@SETTINGS
@given(data=st.data())
def test_gather_property(data):
    shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    ishape = data.draw(st.lists(st.integers(1, 3), max_size=2))
    idx = np.array(
        data.draw(
            st.lists(st.integers(-n, n - 1), min_size=int(np.prod(ishape)), max_size=int(np.prod(ishape)))
        ),
        np.int64,
    ).reshape(ishape)
    check_op("Gather", [x, idx], {"axis": axis})


def test_gather_elements():
    idx = rng.integers(-3, 3, (3, 2, 5))
    check_op("GatherElements", [X3, idx], {"axis": 0})
    check_op("GatherElements", [X3, rng.integers(0, 4, (2, 4, 3))], {"axis": 1})
    check_op("GatherElements", [X3, rng.integers(0, 5, (3, 4, 2))], {"axis": -1})


@pytest.mark.parametrize(
    "indices, batch_dims",
    [
        ([[0, 1], [2, 3]], 0),
        ([[1], [0]], 0),
        ([[0, 1, 2], [-1, 0, 4]], 0),
        ([[1], [2], [0]], 1),
        ([[[1, 2]], [[3, 4]], [[0, 0]]], 1),
    ],
)
def test_gather_nd(indices, batch_dims):
    check_op("GatherND", [X3, np.array(indices, np.int64)], {"batch_dims": batch_dims}, reference=True)


def test_gather_nd_batch_dims_2():
    check_op("GatherND", [X, rng.integers(0, 4, (2, 3, 2, 1))], {"batch_dims": 2})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(reduction):
    check_op(
        "ScatterND",
        [X3, ints(2, 0).reshape(2, 1), rng.standard_normal((2, 4, 5)).astype(np.float32)],
        {"reduction": reduction},
        opset=18,
    )
    check_op(
        "ScatterND",
        [I, np.array([[0, 1], [2, 3], [-1, 0]]), ints(7, 8, 9)],
        {"reduction": reduction},
        opset=18,
    )


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements(reduction, axis):
    idx = np.array([[0, 1, 2], [2, 0, 1]]) if reduction == "none" else rng.integers(0, 3, (2, 3))
    upd = rng.standard_normal((2, 3)).astype(np.float32)
    check_op(
        "ScatterElements",
        [I[:3, :3].astype(np.float32), idx, upd],
        {"axis": axis, "reduction": reduction},
        opset=18,
    )


@pytest.mark.parametrize("shape", [(3, 1, 5), (2, 1, 1, 1), (1,), (4, 5), (2, 3, 4, 5)])
def test_expand(shape):
    check_op("Expand", [X3[:, :1], ints(*shape)], const_inputs=(1,))


def test_tile():
    check_op("Tile", [X3, ints(2, 1, 3)], const_inputs=(1,))
    check_op("Tile", [I, ints(1, 2)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(mode):
    check_op("Pad", [X, ints(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": mode}, opset=19, reference=True)


def test_pad_constant_value_negative_pads_axes():
    check_op("Pad", [X3, ints(1, 0, 2, 0, 1, 1), np.float32(-3.5)])
    check_op("Pad", [X3, ints(-1, 2, 0, 0, -2, 1)], {"mode": "constant"}, opset=18)
    check_op("Pad", [X3, ints(1, 2, 3, 0), np.float32(7), ints(-1, 0)], opset=18)
    check_op("Pad", [I, ints(1, 1, 1, 1), np.int64(5)])
    check_op("Pad", [X3], {"pads": [0, 1, 1, 0, 1, 1], "value": 2.0}, opset=10)


def test_pad_spatial_fast_path():
    # N and C unpadded (a CNN's Pad before a conv): the one-pass padding helper, any value and dtype.
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4)).astype(np.float32)
    check_op("Pad", [x, ints(0, 0, 0, 1, 0, 0, 1, 0)], reference=True)
    check_op("Pad", [x, ints(0, 0, 2, 0, 0, 0, 0, 3), np.float32(-1.5)])
    check_op("Pad", [x, ints(0, 0, 0, 0, 0, 0, 0, 0)])
    check_op("Pad", [(x * 10).astype(np.int64), ints(0, 0, 1, 1, 0, 0, 1, 1), np.int64(7)])


@SETTINGS
@given(data=st.data())
def test_pad_property(data):
    shape = data.draw(st.lists(st.integers(2, 4), min_size=1, max_size=3))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    mode = data.draw(st.sampled_from(["constant", "reflect", "edge"]))
    hi = 1 if mode == "reflect" else 3
    lo = 0 if mode != "constant" else -1
    pads = data.draw(st.lists(st.integers(lo, hi), min_size=2 * len(shape), max_size=2 * len(shape)))
    check_op("Pad", [x, ints(*pads)], {"mode": mode})


@pytest.mark.parametrize(
    "start, limit, delta, dtype",
    [
        (0, 10, 3, np.int64),
        (10, 0, -2, np.int64),
        (0.5, 3.0, 0.25, np.float32),
        (1, 1, 1, np.int32),
        (5, 0, 1, np.int64),
        (-1.0, 1.0, 0.3, np.float32),
    ],
)
def test_range(start, limit, delta, dtype):
    check_op("Range", [np.array(v, dtype) for v in (start, limit, delta)], atol=1e-6)


def test_constant_of_shape():
    check_op("ConstantOfShape", [ints(2, 3)], const_inputs=(0,))
    val = numpy_helper.from_array(np.array([1.5], np.float32))
    check_op("ConstantOfShape", [ints(2, 3)], {"value": val}, const_inputs=(0,))
    ival = numpy_helper.from_array(np.array([7], np.int64))
    check_op("ConstantOfShape", [ints(4)], {"value": ival}, const_inputs=(0,))


@pytest.mark.parametrize(
    "attrs",
    [
        {"value": numpy_helper.from_array(X3)},
        {"value": numpy_helper.from_array(I)},
        {"value_float": 0.1},
        {"value_floats": [0.1, 0.2]},
        {"value_int": 3},
        {"value_ints": [1, 2, -3]},
    ],
)
def test_constant(attrs):
    check_op("Constant", [], attrs, atol=0)


def test_constant_float_is_float64_in_oracle():
    from tests.engine.opcheck import make_model
    from xverify.engine import Interpreter

    for attrs in [{"value_float": 0.1}, {"value": numpy_helper.from_array(X3)}]:
        out = Interpreter(make_model("Constant", [], attrs), "float64").run({})["out0"]
        assert out.dtype == np.float64


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check_op(
        "DepthToSpace", [rng.standard_normal((2, 8, 3, 4)).astype(np.float32)], {"blocksize": 2, "mode": mode}
    )


def test_space_to_depth():
    check_op("SpaceToDepth", [rng.standard_normal((2, 3, 4, 6)).astype(np.float32)], {"blocksize": 2})


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = np.array([[0, 2, -1], [1, 4, 3]], np.int64)
    # the (indices, depth, values) dtype combinations ONNX Runtime implements
    check_op("OneHot", [idx, np.array([5.0], np.float32), scales(0, 1)], {"axis": axis})
    check_op("OneHot", [idx, np.int64(4), ints(-2, 3)], {"axis": axis})


def test_non_zero():
    check_op("NonZero", [np.where(X3 > 0.5, X3, 0)])
    check_op("NonZero", [I])


@pytest.mark.parametrize("axis, largest", [(-1, 1), (0, 1), (1, 0), (-1, 0)])
def test_top_k(axis, largest):
    check_op("TopK", [X3, ints(2)], {"axis": axis, "largest": largest}, n_outputs=2)
    ties = np.array([[1, 3, 3, 0, 3], [2, 2, 1, 2, 0]], np.float32)
    check_op("TopK", [ties, ints(2)], {"axis": axis % 2, "largest": largest}, n_outputs=2)
    check_op("TopK", [I, ints(3)], {"axis": -1, "largest": largest}, n_outputs=2)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum(exclusive, reverse):
    attrs = {"exclusive": exclusive, "reverse": reverse}
    check_op("CumSum", [X3, np.int64(1)], attrs, atol=1e-5)
    check_op("CumSum", [I, np.int32(-1)], attrs)


@pytest.mark.parametrize("k", [None, 0, 1, -2])
@pytest.mark.parametrize("upper", [0, 1])
def test_trilu(k, upper):
    check_op("Trilu", [X3] + ([] if k is None else [np.int64(k)]), {"upper": upper})


@pytest.mark.parametrize(
    "attrs", [{}, {"k": 1}, {"k": -2, "dtype": TensorProto.INT64}, {"dtype": TensorProto.FLOAT}]
)
def test_eye_like(attrs):
    check_op("EyeLike", [X3[0]], attrs)
    check_op("EyeLike", [I], attrs)


# Resize ---------------------------------------------------------------------------------------

IMG = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
COORDS = ["half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn", "pytorch_half_pixel"]


def scales(*v):
    return np.array(v, dtype=np.float32)


def _fractional_align_corners(inputs, attrs) -> bool:
    x, s = inputs[0], inputs[2]
    return (
        attrs.get("coordinate_transformation_mode") == "align_corners"
        and s is not None
        and any(n * f % 1 for n, f in zip(x.shape, s))
    )


def check_resize(inputs, attrs, **kwargs):
    """check_op for Resize; align_corners with a scale giving a fractional length against
    onnx.reference alone: ONNX's reference and node tests divide by (n * scale - 1), ONNX Runtime
    by (floor(n * scale) - 1), and the engine follows the node tests (onnx/onnx#2462)."""
    if _fractional_align_corners(inputs, attrs):
        kwargs.pop("reference", None)
        check_reference_op("Resize", inputs, attrs, **kwargs)
        return
    check_op("Resize", inputs, attrs, **kwargs)


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("nearest_mode", NEAREST)
def test_resize_nearest(coord, nearest_mode):
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest_mode}
    check_resize([IMG, None, scales(1, 1, 2, 3)], attrs)
    check_resize([IMG, None, scales(1, 1, 0.6, 0.5)], attrs)
    check_resize([IMG, None, None, ints(1, 2, 8, 3)], attrs)


@pytest.mark.parametrize("coord", COORDS + ["half_pixel_symmetric"])
def test_resize_linear(coord):
    attrs = {"mode": "linear", "coordinate_transformation_mode": coord}
    # onnx.reference does not know tf_half_pixel_for_nn
    check_resize([IMG, None, scales(1, 1, 2, 2)], attrs, opset=19, reference=coord != "tf_half_pixel_for_nn")
    check_resize([IMG, None, None, ints(1, 2, 3, 11)], attrs, opset=19)
    check_resize([X3, None, scales(2, 0.5, 1.5)], attrs, opset=19)


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners"])
@pytest.mark.parametrize("exclude_outside", [0, 1])
def test_resize_cubic(coord, exclude_outside):
    attrs = {"mode": "cubic", "coordinate_transformation_mode": coord, "exclude_outside": exclude_outside}
    check_resize([IMG, None, scales(1, 1, 2, 1.5)], attrs, atol=1e-5, reference=True)
    check_resize([IMG, None, None, ints(1, 2, 3, 4)], {**attrs, "cubic_coeff_a": -0.5}, atol=1e-5)


def test_resize_keras_upsampling_and_tf_resize_shapes():
    nhwc = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    check_op(
        "Resize",
        [nhwc, np.zeros(0, np.float32), scales(1, 2, 2, 1)],
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        const_inputs=(1, 2),
    )
    check_op(
        "Resize",
        [nhwc, np.zeros(0, np.float32), scales(1, 2, 2, 1)],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        const_inputs=(1, 2),
    )
    check_op(
        "Resize",
        [nhwc, None, None, ints(2, 7, 5, 3)],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    )


def test_resize_axes_keep_aspect_ratio_and_crop():
    check_op(
        "Resize",
        [IMG, None, None, ints(10, 10)],
        {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"},
        opset=18,
    )
    check_op(
        "Resize",
        [IMG, None, None, ints(10, 10)],
        {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"},
        opset=18,
    )
    roi = scales(0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2)
    for mode in ["nearest", "linear"]:
        check_op(
            "Resize",
            [IMG, roi, None, ints(1, 2, 6, 6)],
            {
                "mode": mode,
                "coordinate_transformation_mode": "tf_crop_and_resize",
                "extrapolation_value": -9.0,
            },
            atol=1e-5,
        )


def test_resize_uint8():
    img = rng.integers(0, 255, (1, 1, 4, 4)).astype(np.uint8)
    check_op("Resize", [img, None, scales(1, 1, 2, 2)], {"mode": "nearest"})


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "pytorch_half_pixel"])
@pytest.mark.parametrize("exclude_outside", [0, 1])
def test_resize_antialias_when_shrinking(mode, coord, exclude_outside):
    """The kernel stretched by 1 / scale on shrinking axes (and as without antialias on a growing
    one): ONNX Runtime and onnx.reference agree with each other and with the engine."""
    x = rng.standard_normal((1, 2, 9, 13)).astype(np.float32)
    attrs = {"mode": mode, "antialias": 1, "coordinate_transformation_mode": coord}
    attrs["exclude_outside"] = exclude_outside
    for s in (scales(1, 1, 0.5, 0.3), scales(1, 1, 0.75, 0.6), scales(1, 1, 0.4, 1.5)):
        check_op("Resize", [x, None, s], attrs, opset=19, atol=1e-5, reference=True)
    check_op("Resize", [x, None, None, ints(1, 2, 4, 5)], attrs, opset=19, atol=1e-5, reference=True)


def test_resize_antialias_by_hand():
    """Halving 4 values with the linear kernel stretched to a support of 2: the output at source
    coordinate 0.5 weighs inputs -1 (edge: x[0]), 0, 1, 2 by 0.25, 0.75, 0.75, 0.25, normalized."""
    x = np.array([0.0, 4.0, 8.0, 16.0], np.float32).reshape(1, 1, 1, 4)
    (got,) = check_op(
        "Resize",
        [x, None, scales(1, 1, 1, 0.5)],
        {"mode": "linear", "antialias": 1},
        opset=19,
        reference=True,
    )
    np.testing.assert_allclose(got.ravel()[0], (0.25 * 0 + 0.75 * 0 + 0.75 * 4 + 0.25 * 8) / 2, rtol=1e-6)


@SETTINGS
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    sh=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]),
    sw=st.sampled_from([0.75, 1.0, 2.0, 2.5]),
    mode=st.sampled_from(["nearest", "linear", "cubic"]),
    coord=st.sampled_from(COORDS),
    nearest_mode=st.sampled_from(NEAREST),
)
def test_resize_property(h, w, sh, sw, mode, coord, nearest_mode):
    x = np.random.default_rng(h * 10 + w).standard_normal((1, 2, h, w)).astype(np.float32)
    if int(h * sh) == 0 or int(w * sw) == 0:
        return
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest_mode}
    check_resize([x, None, scales(1, 1, sh, sw)], attrs, atol=1e-5)


def test_resize_align_corners_fractional_length_by_hand():
    """ONNX's node test test_resize_downsample_scales_linear_align_corners: 4 * 0.6 = 2.4 wide, so
    output 1 reads x at 1 * (4 - 1) / (2.4 - 1) = 2.142857 (ONNX Runtime: / (2 - 1), x[3])."""
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 2, 4)
    attrs = {"mode": "linear", "coordinate_transformation_mode": "align_corners"}
    (got,) = check_reference_op("Resize", [x, None, scales(1, 1, 0.6, 0.6)], attrs)
    np.testing.assert_allclose(got.ravel(), [1.0, 1.0 + 3 / 1.4], rtol=1e-6)


@pytest.mark.parametrize(
    "time_axis, batch_axis, shape",
    [(0, 1, (5, 4, 3)), (1, 0, (4, 5, 3)), (0, 1, (5, 4)), (1, 0, (4, 5, 2, 2))],
)
@pytest.mark.parametrize("lens", [(5, 5, 5, 5), (1, 3, 5, 2)])
def test_reverse_sequence(time_axis, batch_axis, shape, lens):
    x = rng.standard_normal(shape).astype(np.float32)
    check_op(
        "ReverseSequence",
        [x, ints(*lens)],
        {"time_axis": time_axis, "batch_axis": batch_axis},
        reference=True,
    )


def test_reverse_sequence_keeps_integers():
    check_op("ReverseSequence", [I.T.copy(), ints(2, 3, 1)], {"time_axis": 0, "batch_axis": 1})
