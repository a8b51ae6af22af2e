"""Kernels: Resize (what Keras UpSampling2D and tf.image.resize become), N-d and separable."""

from __future__ import annotations

import math

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


def _source_coords(mode, n_out, n_in, scale, roi):
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
        return i * np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.zeros_like(i)
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


def _taps(c, n_in, mode, nearest_mode, cubic_a, exclude_outside):
    """Input indices (n_out, taps) and weights (n_out, taps; None for nearest) along one axis."""
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


def _output_plan(x, scales, sizes, axes, policy):
    """(axis, output length, scale) for every resized axis."""
    axes = [a % x.ndim for a in axes] if axes else list(range(x.ndim))
    if sizes is not None:
        sizes = ints(sizes)
        ratios = [s / x.shape[a] for s, a in zip(sizes, axes)]
        if policy in ("not_larger", "not_smaller"):
            r = min(ratios) if policy == "not_larger" else max(ratios)
            return [(a, math.floor(r * x.shape[a] + 0.5), r) for a in axes]
        return [(a, s, np.float32(s) / np.float32(x.shape[a])) for a, s in zip(axes, sizes)]
    scales = np.asarray(scales, np.float32).reshape(-1)
    return [(a, int(np.floor(s * np.float32(x.shape[a]))), s) for a, s in zip(axes, scales)]


def _refuse_fractional_align_corners(n_in, scale):
    # The spec's formula divides by (length_resized - 1), the output's length (ONNX Runtime), but
    # ONNX's own reference and node tests divide by (n_in * scale - 1): no side to take.
    raise UnsupportedOpError(
        f"Resize: coordinate_transformation_mode='align_corners' with a scale ({float(scale):g}) "
        f"that gives a fractional length ({n_in} * {float(scale):g}) is not supported: ONNX's "
        "reference and ONNX Runtime disagree on it; supported: sizes, or scales giving whole "
        "lengths"
    )


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
    "sizes); antialias=1 only when no axis shrinks under linear/cubic",
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
    if antialias and mode != "nearest" and any(n < x.shape[a] for a, n, _ in plan):
        raise UnsupportedOpError(
            "Resize: attribute antialias=1 when downscaling is not supported; "
            "supported: antialias=0, or antialias=1 when upscaling"
        )
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    roi = None if roi is None or roi.size == 0 else np.asarray(roi, np.float32).reshape(2, -1)
    out = x
    for k, (axis, n_out, scale) in enumerate(plan):
        n_in = x.shape[axis]
        if n_out == n_in and scale == 1 and not crop:
            continue
        if coordinate_transformation_mode == "align_corners" and abs(n_out - n_in * scale) > 1e-4:
            _refuse_fractional_align_corners(n_in, scale)
        r = roi[:, axis if roi.shape[1] == x.ndim else k] if crop else None
        c = _source_coords(coordinate_transformation_mode, n_out, n_in, scale, r)
        idx, w = _taps(c, n_in, mode, nearest_mode, cubic_coeff_a, exclude_outside)
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
