"""GridSample against ONNX Runtime: every mode, padding mode and align_corners, 2-D and 3-D; and
RoiAlign's modes and coordinate modes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.opcheck import check_op

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
GRID = rng.uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)  # some points outside the input


@pytest.mark.parametrize(
    "mode, old_name", [("nearest", "nearest"), ("linear", "bilinear"), ("cubic", "bicubic")]
)
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample(mode, old_name, padding_mode, align_corners):
    attrs = {"padding_mode": padding_mode, "align_corners": align_corners}
    check_op("GridSample", [X, GRID], {**attrs, "mode": mode}, opset=20, atol=1e-4)
    check_op("GridSample", [X, GRID], {**attrs, "mode": old_name}, opset=16, atol=1e-4)


def test_grid_sample_3d():
    x = rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1, 1, (1, 2, 3, 4, 3)).astype(np.float32)
    check_op("GridSample", [x, grid], {"mode": "linear"}, opset=20, atol=1e-4)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align(mode, coordinate_mode, sampling_ratio):
    rois = np.array([[0.5, 0.5, 3.2, 4.1], [1, 0, 5.5, 2], [-1, -1, 7, 6]], np.float32)
    attrs = {
        "mode": mode,
        "coordinate_transformation_mode": coordinate_mode,
        "output_height": 3,
        "output_width": 2,
        "sampling_ratio": sampling_ratio,
        "spatial_scale": 0.9,
    }
    check_op("RoiAlign", [X, rois, np.array([0, 1, 1], np.int64)], attrs, opset=16, atol=1e-4)
