"""Kernels: Resize (what Keras UpSampling2D and tf.image.resize become), N-d and separable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xverify.engine.ops.shape import ints
from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError

# Resize: separable, one axis at a time. Each output position reads a few taps of the input along
# the axis (1 nearest, 2 linear, 4 cubic) with weights; coordinates are computed in float32, as ONNX
# Runtime and TensorFlow do, so that nearest-neighbour rounding picks the same pixels.

_NEAREST = {
    "round_prefer_floor": lambda c: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: np.floor(c + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _source_coords(mode, n_out, n_in, scale, roi, width):
    """Each output position's coordinate in the input; ``width``: the output length before
    flooring (``n_in * scale``, fractional when a scale does not give a whole length)."""
    i = np.arange(n_out, dtype=np.float32)
    scale = np.float32(scale)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    if mode == "half_pixel_symmetric":
        offset = np.float32(n_in / 2) * (1 - np.float32(n_out) / (scale * n_in))
        return offset + (i + 0.5) / scale - 0.5
    if mode == "align_corners":
        # The spec divides by (length_resized - 1); ONNX's reference and node tests take the
        # unfloored width there, ONNX Runtime the output's length: they differ when a scale gives
        # a fractional length (onnx/onnx#2462: reported as a reference bug, closed as intended).
        # The node tests are the judge here. In float64 as the reference computes it: the width
        # n_in * scale of a float32 scale such as 0.6 is rarely whole, and rounding it to float32
        # would move the coordinates onto other pixels.
        if width == 1:
            return np.zeros_like(i)
        return (np.arange(n_out) * (n_in - 1) / (width - 1)).astype(np.float32)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":
        return (i + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = np.float32(roi[0]), np.float32(roi[1])
        if n_out == 1:
            return np.full(1, 0.5 * (start + end) * (n_in - 1), np.float32)
        return start * (n_in - 1) + i * (end - start) * np.float32(n_in - 1) / np.float32(n_out - 1)
    raise UnsupportedOpError(
        f"Resize: attribute coordinate_transformation_mode={mode!r} is not "
        "supported; supported: " + ", ".join(_COORD_MODES)
    )


_COORD_MODES = (
    "half_pixel",
    "pytorch_half_pixel",
    "half_pixel_symmetric",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
)


def _cubic_weights(s, a):
    """Keys cubic convolution weights of the taps at offsets -1, 0, 1, 2 for fraction ``s``."""
    d = np.stack([s + 1, s, 1 - s, 2 - s], axis=-1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def _keys_cubic(d, a):
    """Keys' cubic convolution kernel at distances ``d`` (any sign), zero from 2 on."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0))


def _antialias_taps(c, mode, scale, cubic_a):
    """Shrinking with antialias=1: the linear (support 1) or cubic (support 2) kernel stretched by
    1 / scale, so each output averages every input within support / scale of its source, weights
    normalized to sum 1. The taps are ONNX's: the 2 - 2 * floor(1 - support / scale) inputs
    nearest the source, ties to the lower ones, edge values repeated past the borders (ONNX Runtime
    gives the same on ONNX's node tests)."""
    support = 1 if mode == "linear" else 2
    first = int(np.floor(-support / scale)) + 1
    base = np.ceil(c) - 1  # the source's left neighbour, itself one below when c is whole
    idx = (base[:, None] + first + np.arange(2 - 2 * first)).astype(np.int64)
    d = (idx - c[:, None]) * np.float32(scale)
    w = np.clip(1 - np.abs(d), 0, 1) if mode == "linear" else _keys_cubic(d, np.float32(cubic_a))
    return idx, w / w.sum(axis=1, keepdims=True)


def _taps(c, n_in, mode, nearest_mode, cubic_a, exclude_outside, antialias_scale=None):
    """Input indices (n_out, taps) and weights (n_out, taps; None for nearest) along one axis;
    ``antialias_scale``: the axis' scale when it shrinks under antialias=1."""
    if antialias_scale is not None and mode != "nearest":
        idx, w = _antialias_taps(c, mode, antialias_scale, cubic_a)
        if exclude_outside:
            w = np.where((idx >= 0) & (idx < n_in), w, 0)
            w /= w.sum(axis=1, keepdims=True)
        return np.clip(idx, 0, n_in - 1), w
    if mode == "nearest":
        return np.clip(_NEAREST[nearest_mode](c), 0, n_in - 1).astype(np.int64)[:, None], None
    if mode == "linear":
        c = np.clip(c, 0, n_in - 1)
        i0 = np.floor(c)
        frac = c - i0
        idx = np.stack([i0, np.minimum(i0 + 1, n_in - 1)], axis=-1).astype(np.int64)
        return idx, np.stack([1 - frac, frac], axis=-1)
    i0 = np.floor(c)
    w = _cubic_weights(c - i0, np.float32(cubic_a))
    idx = i0.astype(np.int64)[:, None] + np.arange(-1, 3)
    if exclude_outside:
        w = np.where((idx >= 0) & (idx < n_in), w, 0)
        w /= w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, n_in - 1), w


def _resize_axis(x, axis, idx, w, valid=None, fill=0.0):
    if w is None:
        out = np.take(x, idx[:, 0], axis=axis)
    else:
        bshape = (-1,) + (1,) * (x.ndim - axis - 1)
        wt = w.astype(np.promote_types(x.dtype, np.float32), copy=False)
        out = np.take(x, idx[:, 0], axis=axis) * wt[:, 0].reshape(bshape)
        for t in range(1, idx.shape[1]):  # accumulate in place: one temporary per tap
            tap = np.take(x, idx[:, t], axis=axis)
            tap *= wt[:, t].reshape(bshape)
            out += tap
    if valid is not None:
        out = np.where(valid.reshape((-1,) + (1,) * (x.ndim - axis - 1)), out, fill)
    return out


@dataclass(frozen=True)
class _AxisPlan:
    """How one axis is resized: its output length, its scale and its unfloored output width."""

    axis: int
    n_out: int
    scale: float
    width: float


def _output_plan(x, scales, sizes, axes, policy) -> list[_AxisPlan]:
    axes = [a % x.ndim for a in axes] if axes else list(range(x.ndim))
    if sizes is not None:
        sizes = ints(sizes)
        ratios = [s / x.shape[a] for s, a in zip(sizes, axes)]
        if policy in ("not_larger", "not_smaller"):
            r = min(ratios) if policy == "not_larger" else max(ratios)
            return [_AxisPlan(a, math.floor(r * x.shape[a] + 0.5), r, r * x.shape[a]) for a in axes]
        return [_AxisPlan(a, s, np.float32(s) / np.float32(x.shape[a]), s) for a, s in zip(axes, sizes)]
    scales = np.asarray(scales, np.float32).reshape(-1)
    return [
        _AxisPlan(a, int(np.floor(s * np.float32(x.shape[a]))), s, float(s) * x.shape[a])
        for a, s in zip(axes, scales)
    ]


@op(
    "Resize",
    since=11,
    attributes=(
        "mode",
        "coordinate_transformation_mode",
        "nearest_mode",
        "cubic_coeff_a",
        "exclude_outside",
        "extrapolation_value",
        "antialias",
        "axes",
        "keep_aspect_ratio_policy",
    ),
    notes="mode=nearest|linear|cubic (N-d, separable); inputs of opset 11+ (X, roi, scales, "
    "sizes); antialias=1 (linear/cubic kernels stretched when shrinking)",
)
def resize(
    x,
    roi=None,
    scales=None,
    sizes=None,
    mode="nearest",
    coordinate_transformation_mode="half_pixel",
    nearest_mode="round_prefer_floor",
    cubic_coeff_a=-0.75,
    exclude_outside=0,
    extrapolation_value=0.0,
    antialias=0,
    axes=None,
    keep_aspect_ratio_policy="stretch",
):
    if mode not in ("nearest", "linear", "cubic") or nearest_mode not in _NEAREST:
        raise UnsupportedOpError(
            f"Resize: attributes mode={mode!r}, nearest_mode={nearest_mode!r} are not supported; "
            f"supported: mode nearest|linear|cubic, nearest_mode {'|'.join(_NEAREST)}"
        )
    if keep_aspect_ratio_policy not in ("stretch", "not_larger", "not_smaller"):
        raise UnsupportedOpError(
            f"Resize: attribute keep_aspect_ratio_policy="
            f"{keep_aspect_ratio_policy!r} is not supported; "
            "supported: stretch, not_larger, not_smaller"
        )
    if sizes is not None and sizes.size == 0:
        sizes = None
    plan = _output_plan(x, scales, sizes, axes, keep_aspect_ratio_policy)
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    roi = None if roi is None or roi.size == 0 else np.asarray(roi, np.float32).reshape(2, -1)
    out = x
    for k, step in enumerate(plan):
        axis, n_out, scale = step.axis, step.n_out, step.scale
        n_in = x.shape[axis]
        if n_out == n_in and scale == 1 and not crop:
            continue
        r = roi[:, axis if roi.shape[1] == x.ndim else k] if crop else None
        c = _source_coords(coordinate_transformation_mode, n_out, n_in, scale, r, step.width)
        shrink = float(scale) if antialias and scale < 1 else None
        idx, w = _taps(c, n_in, mode, nearest_mode, cubic_coeff_a, exclude_outside, shrink)
        # tf_crop_and_resize: outputs whose source lies outside the input take extrapolation_value
        valid = ((c >= 0) & (c <= n_in - 1)) if crop else None
        out = _resize_axis(out, axis, idx, w, valid, extrapolation_value)
    if x.dtype.kind in "iu" and out.dtype != x.dtype:  # integer images resized with float weights
        out = np.rint(out)
    return out.astype(x.dtype, copy=False)


@op(
    "Upsample",
    attributes=("mode", "scales"),
    since=7,
    until=9,
    notes="scales as attribute (opset 7) or input (9); nearest (floor) or linear, asymmetric",
)
def upsample(x, scales, mode="nearest"):
    """Upsample and opset 10's Resize: ``x_original = x_resized / scale``, nearest rounding down."""
    mode = "linear" if mode == "bilinear" else mode
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(
            f"Upsample/Resize-10: attribute mode={mode!r} is not supported; supported: nearest, linear"
        )
    scales = np.asarray(scales, np.float32).reshape(-1)
    if mode == "nearest" and np.any(scales < 1):
        # ONNX Runtime rounds a shrinking axis' source index up there, the spec does not say.
        raise UnsupportedOpError(
            "Upsample/Resize-10: mode=nearest with a scale below 1 is not "
            "supported; supported: scales >= 1, or mode=linear"
        )
    return resize(
        x, None, scales, mode=mode, coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    )


@op("Resize", attributes=("mode",), since=10, until=10, notes="opset 10's form: (X, scales), as Upsample")
def resize_10(x, scales, mode="nearest"):
    return upsample(x, scales, mode)
