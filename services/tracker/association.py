"""Matching tracks to detections: IoU costs and an optimal one-to-one assignment under a cost limit."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from services.common.boxes import iou_matrix

__all__ = ["fuse_score", "iou_matrix", "linear_assignment"]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

# Added to the cost of leaving a row and a column unmatched so that a pair costing exactly
# max_cost is matched rather than tied with "no match": only costs *above* max_cost are forbidden.
_ALLOWED_AT_LIMIT_MARGIN = 1e-9


def fuse_score(iou_distance: npt.ArrayLike, detection_scores: npt.ArrayLike) -> FloatArray:
    """Blend detection confidence into a (tracks, detections) 1-IoU cost: 1 - IoU * score.

    ByteTrack does this outside MOT20: among detections overlapping a track alike, the surer one
    wins, and a weak detection needs more overlap to be accepted under the same cost limit.
    """
    distance = np.asarray(iou_distance, dtype=np.float64)
    scores = np.asarray(detection_scores, dtype=np.float64)
    if distance.ndim != 2 or scores.shape != (distance.shape[1],):
        raise ValueError(
            "fuse_score expects iou_distance of shape (N, M) and detection_scores of shape (M,), got "
            f"{distance.shape} and {scores.shape}"
        )
    return 1.0 - (1.0 - distance) * scores[np.newaxis, :]


def linear_assignment(cost: npt.ArrayLike, max_cost: float) -> tuple[IndexArray, IndexArray, IndexArray]:
    """Minimum-cost one-to-one matching of rows to columns where entries above max_cost are forbidden.

    Returns (matches (K, 2) as (row, col), unmatched_rows, unmatched_cols), each sorted ascending.

    Leaving a row and a column unmatched costs max_cost (half each), so a pair is matched only when
    that is cheaper than leaving both open; this is the behaviour of lapjv with a cost limit used by
    ByteTrack, and it never forces a poor pair just to match more rows. Infinite entries are
    forbidden too; NaN entries are rejected.
    """
    costs = np.asarray(cost, dtype=np.float64)
    if costs.ndim != 2:
        raise ValueError(f"cost must have shape (N, M), got shape {costs.shape}")
    if not np.isfinite(max_cost) or max_cost < 0:
        raise ValueError(f"max_cost must be a finite number >= 0, got {max_cost}")
    if np.isnan(costs).any():
        raise ValueError("cost must not contain NaN")
    n_rows, n_cols = costs.shape
    if n_rows == 0 or n_cols == 0:
        return (
            np.zeros((0, 2), dtype=np.intp),
            np.arange(n_rows, dtype=np.intp),
            np.arange(n_cols, dtype=np.intp),
        )

    # Square problem of size rows + cols: each real row may take its own "unmatched" column, each
    # real column its own "unmatched" row, and the dummy rows and columns pair up for free.
    size = n_rows + n_cols
    unmatched_cost = max_cost / 2.0 + _ALLOWED_AT_LIMIT_MARGIN
    extended = np.full((size, size), np.inf)
    extended[:n_rows, :n_cols] = np.where(costs > max_cost, np.inf, costs)
    rows = np.arange(n_rows)
    cols = np.arange(n_cols)
    extended[rows, n_cols + rows] = unmatched_cost
    extended[n_rows + cols, cols] = unmatched_cost
    extended[n_rows:, n_cols:] = 0.0
    assigned_rows, assigned_cols = linear_sum_assignment(extended)

    is_real_pair = (assigned_rows < n_rows) & (assigned_cols < n_cols)
    matches = np.stack([assigned_rows[is_real_pair], assigned_cols[is_real_pair]], axis=1).astype(np.intp)
    matches = matches[np.argsort(matches[:, 0], kind="stable")]
    unmatched_rows = np.setdiff1d(rows, matches[:, 0]).astype(np.intp)
    unmatched_cols = np.setdiff1d(cols, matches[:, 1]).astype(np.intp)
    return matches, unmatched_rows, unmatched_cols
