"""Face detections of one frame as parallel numpy arrays (in the style of roboflow/supervision).

One object per frame instead of a list of per-face objects: filtering, masking and batching
stay vectorised, and every consumer (tracker, aligner, quality gate) indexes the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUM_LANDMARKS = 5  # ArcFace order: left eye, right eye, nose, left mouth corner, right mouth corner


def _as_readonly_float32(value: Any, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Detections.{name} must be numeric, got {type(value).__name__}: {exc}") from exc
    # Read-only so a consumer cannot silently change another consumer's view of the same frame.
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Detections:
    """Faces found in one frame.

    xyxy: (N, 4) float32 box corners (x1, y1, x2, y2) in pixels of the original frame.
    scores: (N,) float32 detector confidence in [0, 1].
    landmarks: (N, 5, 2) float32 (x, y) points in pixels of the original frame, ArcFace order.
    confident: (N,) bool, False for candidates below the detector's confidence rule (returned only
        when asked for; a tracker may use them to continue a track, never to start one).

    Frozen and the arrays are read-only copies: a Detections is a value, shared freely.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    # None at construction means "all confident"; always an array after __post_init__.
    confident: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = _as_readonly_float32(self.xyxy, "xyxy")
        scores = _as_readonly_float32(self.scores, "scores")
        landmarks = _as_readonly_float32(self.landmarks, "landmarks")
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must have shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if scores.shape != (n,):
            raise ValueError(f"Detections.scores must have shape ({n},) to match xyxy, got {scores.shape}")
        if landmarks.shape != (n, NUM_LANDMARKS, 2):
            raise ValueError(
                f"Detections.landmarks must have shape ({n}, {NUM_LANDMARKS}, 2) to match xyxy, got {landmarks.shape}"
            )
        confident = np.ones(n, bool) if self.confident is None else np.array(self.confident, dtype=bool, copy=True)
        if confident.shape != (n,):
            raise ValueError(f"Detections.confident must have shape ({n},) to match xyxy, got {confident.shape}")
        confident.setflags(write=False)
        object.__setattr__(self, "confident", confident)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "landmarks", landmarks)

    @classmethod
    def empty(cls) -> Detections:
        """No faces: the shapes are still right, so callers never special-case an empty frame."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, NUM_LANDMARKS, 2), np.float32),
        )

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate detections (e.g. of tiles of one frame) in the given order."""
        if not parts:
            return cls.empty()
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts], axis=0),
            scores=np.concatenate([p.scores for p in parts], axis=0),
            landmarks=np.concatenate([p.landmarks for p in parts], axis=0),
            confident=np.concatenate([p.confident for p in parts], axis=0),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: int | slice | Sequence[int] | Sequence[bool] | np.ndarray) -> Detections:
        """Select rows by boolean mask, index array, slice or single index; always returns Detections."""
        if isinstance(index, (int, np.integer)):
            rows: int | slice | np.ndarray = np.array([int(index)])
        elif isinstance(index, slice):
            rows = index
        else:
            rows = np.asarray(index)
            if rows.dtype == bool:
                if rows.shape != (len(self),):
                    raise ValueError(
                        f"boolean mask must have shape ({len(self)},) to match the detections, got {rows.shape}"
                    )
            elif rows.size == 0:
                rows = rows.astype(np.intp)
            elif not np.issubdtype(rows.dtype, np.integer):
                raise ValueError(f"index array must be boolean or integer, got dtype {rows.dtype}")
        return Detections(
            xyxy=self.xyxy[rows],
            scores=self.scores[rows],
            landmarks=self.landmarks[rows],
            confident=self.confident[rows],
        )

    @property
    def widths(self) -> np.ndarray:
        """(N,) box widths in pixels."""
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> np.ndarray:
        """(N,) box heights in pixels."""
        return self.xyxy[:, 3] - self.xyxy[:, 1]
