"""Kernels: NonMaxSuppression (the box selection of detection models)."""

from __future__ import annotations

import numpy as np

from xverify.engine.registry import op


def _corners(boxes, center_point_box):
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, from either box format ONNX allows."""
    if center_point_box:
        xc, yc, w, h = np.moveaxis(boxes, -1, 0)
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
    y1, x1, y2, x2 = np.moveaxis(boxes, -1, 0)
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=-1)


def _iou(box, others):
    top = np.maximum(box[0], others[:, 0])
    left = np.maximum(box[1], others[:, 1])
    bottom = np.minimum(box[2], others[:, 2])
    right = np.minimum(box[3], others[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def _select(boxes, scores, limit, iou_threshold, score_threshold):
    """Greedy NMS for one batch and class: indices of kept boxes, best score first."""
    candidates = (
        np.flatnonzero(scores > score_threshold) if score_threshold is not None else np.arange(scores.size)
    )
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best, order = order[0], order[1:]
        kept.append(int(best))
        order = order[_iou(boxes[best], boxes[order]) <= iou_threshold]
    return kept


@op(
    "NonMaxSuppression",
    attributes=("center_point_box",),
    notes="per batch and class; boxes as corners (either order) or centers",
)
def non_max_suppression(
    boxes,
    scores,
    max_output_boxes_per_class=None,
    iou_threshold=None,
    score_threshold=None,
    center_point_box=0,
):
    limit = (
        0
        if max_output_boxes_per_class is None
        else int(np.asarray(max_output_boxes_per_class).reshape(-1)[0])
    )
    iou = 0.0 if iou_threshold is None else float(np.asarray(iou_threshold).reshape(-1)[0])
    score = None if score_threshold is None else float(np.asarray(score_threshold).reshape(-1)[0])
    corners = _corners(boxes.astype(np.float64), center_point_box)
    rows = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            for i in _select(corners[b], scores[b, c], limit, iou, score):
                rows.append((b, c, i))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
