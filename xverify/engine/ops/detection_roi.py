"""Kernels: RoiAlign (the region pooling of two-stage detectors such as Mask R-CNN)."""

from __future__ import annotations

import math

import numpy as np

from xverify.engine.registry import op
from xverify.errors import UnsupportedOpError


def _bilinear(image, y, x, mode):
    """image (C, H, W) sampled at the points (y, x), as ONNX's RoiAlign does: points beyond one
    pixel outside read 0, others are clamped to the image (C, points). ``mode="max"``: each
    point's largest weighted corner instead of their sum (ONNX Runtime's and the reference's)."""
    h, w = image.shape[1:]
    outside = (y < -1) | (y > h) | (x < -1) | (x > w)
    y, x = np.clip(y, 0, None), np.clip(x, 0, None)
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    y = np.where(y0 >= h - 1, h - 1, y)
    x = np.where(x0 >= w - 1, w - 1, x)
    y0, x0 = np.minimum(y0, h - 1), np.minimum(x0, w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    corners = np.stack(
        [
            image[:, y0, x0] * ((1 - ly) * (1 - lx)),
            image[:, y0, x1] * ((1 - ly) * lx),
            image[:, y1, x0] * (ly * (1 - lx)),
            image[:, y1, x1] * (ly * lx),
        ]
    )
    value = corners.max(axis=0) if mode == "max" else corners.sum(axis=0)
    return np.where(outside, 0.0, value)


@op(
    "RoiAlign",
    attributes=(
        "coordinate_transformation_mode",
        "mode",
        "output_height",
        "output_width",
        "sampling_ratio",
        "spatial_scale",
    ),
    since=16,
    notes="mode=avg|max (max: the largest weighted corner, as ONNX Runtime and ONNX's reference); "
    "coordinate_transformation_mode=half_pixel|output_half_pixel",
)
def roi_align(
    x,
    rois,
    batch_indices,
    coordinate_transformation_mode="half_pixel",
    mode="avg",
    output_height=1,
    output_width=1,
    sampling_ratio=0,
    spatial_scale=1.0,
):
    if mode not in ("avg", "max"):
        raise UnsupportedOpError(f"RoiAlign: mode={mode!r} is not supported; supported: avg, max")
    offset = 0.5 if coordinate_transformation_mode == "half_pixel" else 0.0
    out = np.zeros((len(rois), x.shape[1], output_height, output_width))
    for r, (roi, b) in enumerate(zip(rois.astype(np.float64), batch_indices)):
        x1, y1, x2, y2 = roi * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not offset:  # output_half_pixel: at least one pixel
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / output_height, roi_w / output_width
        grid_h = sampling_ratio or math.ceil(roi_h / output_height)
        grid_w = sampling_ratio or math.ceil(roi_w / output_width)
        ys = (
            y1
            + np.arange(output_height)[:, None] * bin_h
            + (np.arange(grid_h)[None, :] + 0.5) * bin_h / grid_h
        )  # (out_h, grid_h)
        xs = (
            x1
            + np.arange(output_width)[:, None] * bin_w
            + (np.arange(grid_w)[None, :] + 0.5) * bin_w / grid_w
        )
        yy = np.broadcast_to(ys[:, None, :, None], (output_height, output_width, grid_h, grid_w))
        xx = np.broadcast_to(xs[None, :, None, :], yy.shape)
        samples = _bilinear(x[int(b)].astype(np.float64), yy.reshape(-1), xx.reshape(-1), mode)
        samples = samples.reshape(x.shape[1], output_height, output_width, -1)
        out[r] = samples.max(-1) if mode == "max" else samples.sum(-1) / max(grid_h * grid_w, 1)
    return out.astype(x.dtype)


@op(
    "RoiAlign",
    attributes=("mode", "output_height", "output_width", "sampling_ratio", "spatial_scale"),
    since=10,
    until=15,
    notes="opset 10's coordinates: output_half_pixel (no half-pixel shift)",
)
def roi_align_10(
    x, rois, batch_indices, mode="avg", output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0
):
    return roi_align(
        x,
        rois,
        batch_indices,
        "output_half_pixel",
        mode,
        output_height,
        output_width,
        sampling_ratio,
        spatial_scale,
    )
