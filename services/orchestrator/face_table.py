"""Every face a run found, as parallel arrays (one row per face), plus what frames were processed."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class FaceTableBuilder:
    """Accumulates faces frame by frame while the detection stream runs."""

    frames: list[int] = field(default_factory=list)
    cut_frames: list[int] = field(default_factory=list)
    _frame: list[int] = field(default_factory=list)
    _box: list[list[float]] = field(default_factory=list)
    _score: list[float] = field(default_factory=list)
    _quality: list[float] = field(default_factory=list)
    _landmarks: list[list[float]] = field(default_factory=list)
    _track: list[int] = field(default_factory=list)
    _candidate: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._frame)

    def add(
        self,
        frame: int,
        box: list[float],
        score: float,
        quality: float,
        landmarks: list[float],
        track_id: int,
        candidate: bool = False,
    ) -> int:
        self._frame.append(frame)
        self._box.append(box)
        self._score.append(score)
        self._quality.append(quality)
        self._landmarks.append(landmarks)
        self._track.append(track_id)
        self._candidate.append(candidate)
        return len(self._frame) - 1

    def frame_of(self, row: int) -> int:
        return self._frame[row]

    def track_of(self, row: int) -> int:
        return self._track[row]

    def box_of(self, row: int) -> list[float]:
        return self._box[row]

    def build(self, embedding_rows: np.ndarray, embeddings: np.ndarray) -> FaceTable:
        n = len(self._frame)
        return FaceTable(
            frame=np.asarray(self._frame, np.int64),
            xyxy=np.asarray(self._box, np.float32).reshape(n, 4),
            score=np.asarray(self._score, np.float32),
            quality=np.asarray(self._quality, np.float32),
            landmarks=np.asarray(self._landmarks, np.float32).reshape(n, 10),
            track_id=np.asarray(self._track, np.int64),
            candidate=np.asarray(self._candidate, bool),
            embedding_row=embedding_rows,
            embedding=embeddings.reshape(len(embedding_rows), -1)
            if len(embedding_rows)
            else np.zeros((0, 0), np.float32),
            processed_frames=np.asarray(self.frames, np.int64),
            cut_frames=np.asarray(self.cut_frames, np.int64),
        )


@dataclass(frozen=True)
class FaceTable:
    frame: np.ndarray  # (N,) 0-based frame index
    xyxy: np.ndarray  # (N,4) pixels
    score: np.ndarray  # (N,)
    quality: np.ndarray  # (N,) in [0,1]
    landmarks: np.ndarray  # (N,10)
    track_id: np.ndarray  # (N,) >= 1, or 0 for a face no confirmed track took
    candidate: np.ndarray  # (N,) below the detector's confidence rule: a face only if a track takes it
    embedding_row: np.ndarray  # (M,) the face row each embedding belongs to (the sampled faces)
    embedding: np.ndarray  # (M,d) unit vectors
    processed_frames: np.ndarray  # every frame the detector processed
    cut_frames: np.ndarray  # processed frames that start a new shot

    def __post_init__(self) -> None:
        n = len(self.frame)
        for name in ("xyxy", "score", "quality", "landmarks", "track_id", "candidate"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"face table column {name} has {len(getattr(self, name))} rows, expected {n}")
        if len(self.embedding) != len(self.embedding_row):
            raise ValueError(f"{len(self.embedding)} embeddings for {len(self.embedding_row)} embedded face rows")

    def __len__(self) -> int:
        return len(self.frame)

    def faces(self) -> np.ndarray:
        """Rows that are faces in the output: everything but candidates no track took."""
        return np.flatnonzero(~self.candidate | (self.track_id > 0))

    def track_ids(self) -> np.ndarray:
        """Distinct track ids in order of first appearance."""
        tracked = self.track_id[self.track_id > 0]
        _, first = np.unique(tracked, return_index=True)
        return tracked[np.sort(first)]

    @cached_property
    def _rows_by_track(self) -> dict[int, np.ndarray]:
        # One stable sort instead of a scan of every row per track: O(N log N), not O(N x tracks).
        return _group(self.track_id)

    @cached_property
    def _embeddings_by_track(self) -> dict[int, np.ndarray]:
        return _group(self.track_id[self.embedding_row])

    def rows_of_track(self, track_id: int) -> np.ndarray:
        return self._rows_by_track.get(track_id, _NO_ROWS)

    def embeddings_of_track(self, track_id: int) -> np.ndarray:
        """Indices into `embedding` of the track's sampled faces."""
        return self._embeddings_by_track.get(track_id, _NO_ROWS)


_NO_ROWS = np.zeros(0, np.intp)
_NO_ROWS.setflags(write=False)  # shared: never written


def _group(keys: np.ndarray) -> dict[int, np.ndarray]:
    """key -> the ascending positions holding it."""
    order = np.argsort(keys, kind="stable")
    values, starts = np.unique(keys[order], return_index=True)
    return {int(v): part for v, part in zip(values, np.split(order, starts[1:]), strict=True)}
