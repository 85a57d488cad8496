"""What every tracker is: stateful over one sequence of frames, fed one frame at a time, reset at cuts.

A tracker sees only what the wire carries for one processed frame (`TrackerFrame`): boxes, scores,
which boxes are candidates (below the detector's confidence rule: they may continue a track, never
start one), optionally the camera motion since the previous frame and, for the faces it asked for,
appearance vectors. It answers with the detections that belong to confirmed tracks.

Appearance is expensive (an embedding costs ~10x a detection per face on CPU), so it is asked for,
not pushed: before update(), the caller may ask `appearance_wanted(frame)` which faces' embeddings
would change the tracker's decision, embed only those, and pass them in the frame given to update().
A tracker that does not use appearance wants none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class TrackState(Enum):
    """Where a track is in its life, for trackers built on ByteTrack's cascade."""

    TRACKED = "tracked"  # matched in the latest update (confirmed or not)
    LOST = "lost"  # confirmed, unmatched for a while, kept for re-association
    REMOVED = "removed"  # dropped at the end of this update


def updates_spanning(seconds: float, frame_rate: float, frame_stride: int) -> int:
    """update() calls spanning `seconds` of video, rounded up so at least the time asked; the
    epsilon absorbs float error such as 29.999..."""
    return max(0, math.ceil(seconds * frame_rate / frame_stride - 1e-9))


@dataclass(frozen=True)
class TrackAssignment:
    """One detection of this frame attributed to one confirmed track."""

    track_id: int  # >= 1, unique for the life of the tracker instance (also across reset())
    detection_index: int  # index into the boxes passed to this update()
    box_xyxy: np.ndarray  # the detection box (what MOT output reports), float (4,)
    score: float


@dataclass(frozen=True)
class TrackerFrame:
    """One processed frame's detections, validated: the input of Tracker.update().

    boxes: (N, 4) pixels (x1, y1, x2, y2); scores: (N,) detector confidences; candidate: (N,) True
    for faces below the detector's confidence rule; embeddings: (N, D) unit vectors, rows of faces
    without one are NaN (D = 0 when no face has one); camera_motion: 2x3 affine mapping pixel
    coordinates of the previous processed frame to this one, or None when unknown; steps: time
    since the previous frame of the stream, in frame strides (1 at uniform sampling, a fraction
    where the caller processed frames in between).
    """

    boxes: FloatArray
    scores: FloatArray
    candidate: BoolArray = field(default_factory=lambda: np.zeros(0, bool))
    embeddings: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    camera_motion: FloatArray | None = None
    steps: float = 1.0

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if not (math.isfinite(self.steps) and self.steps > 0):
            raise ValueError(f"steps must be a finite number > 0, got {self.steps}")
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape (N, 4) as (x1, y1, x2, y2), got shape {self.boxes.shape}")
        if self.scores.shape != (n,):
            raise ValueError(f"scores must have shape (N,) = ({n},) to match boxes, got shape {self.scores.shape}")
        if self.candidate.shape != (n,):
            raise ValueError(f"candidate must have shape ({n},) to match boxes, got shape {self.candidate.shape}")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings must have shape ({n}, D) (NaN rows: none), got {self.embeddings.shape}")
        if not (np.isfinite(self.boxes).all() and np.isfinite(self.scores).all()):
            raise ValueError("boxes and scores must contain only finite values (no NaN or inf)")
        if self.camera_motion is not None and (
            self.camera_motion.shape != (2, 3) or not np.isfinite(self.camera_motion).all()
        ):
            raise ValueError(f"camera_motion must be a finite 2x3 affine, got shape {self.camera_motion.shape}")

    @classmethod
    def of(
        cls,
        boxes_xyxy: npt.ArrayLike,
        scores: npt.ArrayLike,
        candidate: npt.ArrayLike | None = None,
        embeddings: dict[int, npt.ArrayLike] | None = None,
        camera_motion: npt.ArrayLike | None = None,
        steps: float = 1.0,
    ) -> TrackerFrame:
        """Build a frame from plain arrays; `embeddings` maps a face index to its vector."""
        try:
            boxes = np.asarray(boxes_xyxy, dtype=np.float64)
            confidences = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"boxes_xyxy must be numeric with shape (N, 4) and scores numeric with shape (N,): {error}"
            ) from error
        if boxes.ndim == 1 and boxes.size == 0:
            boxes = boxes.reshape(0, 4)  # an empty list/array is an unambiguous "no detections"
        n = len(boxes)
        flags = np.zeros(n, bool) if candidate is None else np.asarray(candidate, dtype=bool)
        vectors = np.zeros((n, 0))
        if embeddings:
            dims = {np.asarray(v).size for v in embeddings.values()}
            if len(dims) != 1:
                raise ValueError(f"embeddings of one frame must share one dimension, got {sorted(dims)}")
            vectors = np.full((n, dims.pop()), np.nan)
            for index, vector in embeddings.items():
                if not 0 <= index < n:
                    raise ValueError(f"embedding for face {index}, but the frame has {n} faces")
                vectors[index] = np.asarray(vector, dtype=np.float64).reshape(-1)
        motion = None if camera_motion is None else np.asarray(camera_motion, dtype=np.float64).reshape(2, 3)
        return cls(boxes, confidences, flags, vectors, motion, float(steps))

    def __len__(self) -> int:
        return len(self.boxes)

    def has_embedding(self) -> BoolArray:
        if self.embeddings.shape[1] == 0:
            return np.zeros(len(self), bool)
        return np.asarray(np.isfinite(self.embeddings).all(axis=1), dtype=bool)


@runtime_checkable
class Tracker(Protocol):
    """Stateful, single-sequence: one instance follows one stream of frames, in order.

    Contract (tests/unit/test_tracker_contract.py runs it against every registered tracker):
    ids are >= 1 and never reused by one instance, also across reset(); a detection and a track
    appear at most once per frame; candidates never start a track; an empty frame is valid; reset()
    forgets every track (call it at a shot cut: no track may span a cut).
    """

    @property
    def settings(self) -> Any: ...

    def appearance_wanted(self, frame: TrackerFrame) -> list[int]:
        """Indices of the faces of `frame` (the next update's input) whose embeddings would change
        this tracker's decision; must not change the tracker's state."""
        ...

    def update(self, frame: TrackerFrame) -> list[TrackAssignment]:
        """Track one frame; return the detections that belong to confirmed tracks, by detection index."""
        ...

    def reset(self) -> None:
        """Forget every track; ids keep increasing."""
        ...
