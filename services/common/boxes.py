"""Box geometry shared by the detector (NMS against candidates), the tracker and the orchestrator."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _as_boxes(boxes_xyxy: npt.ArrayLike, name: str) -> FloatArray:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.ndim == 1 and boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got shape {boxes.shape}")
    return boxes


def iou_matrix(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> FloatArray:
    """Intersection over union of every box in a (N, 4) with every box in b (M, 4) -> (N, M).

    Boxes are (x1, y1, x2, y2) in pixels. Inverted or empty boxes have zero area, so their IoU is 0
    rather than negative or NaN (a Kalman prediction can briefly produce such a box).
    """
    boxes_a = _as_boxes(a_xyxy, "a_xyxy")
    boxes_b = _as_boxes(b_xyxy, "b_xyxy")
    if boxes_a.shape[0] == 0 or boxes_b.shape[0] == 0:
        return np.zeros((boxes_a.shape[0], boxes_b.shape[0]))
    a = boxes_a[:, np.newaxis, :]
    b = boxes_b[np.newaxis, :, :]
    overlap_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    overlap_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    intersection = overlap_w * overlap_h
    area_a = _areas(boxes_a)[:, np.newaxis]
    area_b = _areas(boxes_b)[np.newaxis, :]
    union = area_a + area_b - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def _areas(boxes: FloatArray) -> FloatArray:
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return widths * heights
