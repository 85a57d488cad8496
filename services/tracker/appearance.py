"""Appearance for the cascade's trackers: tracks that keep an average face embedding, and the view of
one frame's detections (with their unit embeddings) that appearance-aware association works on.

Embeddings are ArcFace vectors; distances are cosine distances 1 - cos between unit vectors (0 same
direction, 2 opposite). StrongSortTracker (strongsort.py) is built on these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.tracker.association import iou_matrix
from services.tracker.cascade import IndexArray, Track, capped_confidences, usable_mask
from services.tracker.interface import BoolArray, TrackerFrame
from services.tracker.kalman import FloatArray

_TINY_NORM = 1e-12  # a vector shorter than this has no direction


@dataclass
class AppearanceTrack(Track):
    feature: FloatArray | None = None  # unit vector, the average appearance
    feature_update: float = -(10**9)  # tracker clock of the last embedding taken into `feature`

    def observe(self, vector: FloatArray, momentum: float, now: float) -> None:
        """Take one unit embedding into the average: momentum is the weight of the old average."""
        feature = vector if self.feature is None else momentum * self.feature + (1.0 - momentum) * vector
        norm = float(np.linalg.norm(feature))
        if norm > _TINY_NORM:
            self.feature = feature / norm
            self.feature_update = now

    def looks_unlike(self, other: AppearanceTrack, distance: float) -> bool:
        """Whether both averages are known and further apart than `distance`."""
        if self.feature is None or other.feature is None:
            return False
        return 1.0 - float(self.feature @ other.feature) > distance


@dataclass(frozen=True)
class FrameView:
    """One frame's detections, validated, as association works on them."""

    boxes: FloatArray
    confidences: FloatArray  # candidates capped at high_score: they never start tracks
    usable: BoolArray
    embeddings: FloatArray  # (N, D) unit vectors, NaN rows where unknown
    has_embedding: BoolArray
    touching: BoolArray  # overlaps another usable detection by more than ambiguity_iou

    @classmethod
    def of(cls, frame: TrackerFrame, high_score: float, ambiguity_iou: float) -> FrameView:
        boxes = frame.boxes
        usable = usable_mask(boxes)
        has_embedding = frame.has_embedding()
        embeddings = frame.embeddings
        if has_embedding.any():
            norms = np.linalg.norm(np.where(has_embedding[:, np.newaxis], embeddings, 1.0), axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, _TINY_NORM)
            has_embedding &= norms[:, 0] > _TINY_NORM
        pairwise = iou_matrix(boxes, boxes) if len(boxes) else np.zeros((0, 0))
        np.fill_diagonal(pairwise, 0.0)
        pairwise[:, ~usable] = 0.0
        touching = usable & (pairwise > ambiguity_iou).any(axis=1)
        return cls(boxes, capped_confidences(frame, high_score), usable, embeddings, has_embedding, touching)

    def clean_embedding(self, d: int) -> FloatArray | None:
        """Detection d's embedding if it has one and touches no other detection: a touched face's
        embedding may hold part of the other face, so it must not update a track's average."""
        if self.has_embedding[d] and not self.touching[d]:
            return self.embeddings[d]
        return None


def appearance_distances(tracks: Sequence[AppearanceTrack], view: FrameView, candidates: IndexArray) -> FloatArray:
    """(tracks, candidates) cosine distances; NaN where the track or the detection has no vector."""
    distance = np.full((len(tracks), len(candidates)), np.nan)
    with_vector = view.has_embedding[candidates]
    rows = [r for r, t in enumerate(tracks) if t.feature is not None]
    if not rows or not with_vector.any():
        return distance
    features = np.stack([tracks[r].feature for r in rows])  # type: ignore[misc]
    columns = np.flatnonzero(with_vector)
    vectors = view.embeddings[candidates[columns]]
    distance[np.ix_(np.asarray(rows, np.intp), columns)] = 1.0 - features @ vectors.T
    return distance
