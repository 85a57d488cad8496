"""Every face a run found, as parallel arrays (one row per face), plus what frames were processed."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class FaceTableBuilder:
    """Accumulates faces frame by frame while the detection stream runs.

    Columns are typed arrays (4-8 bytes a value), not lists of Python floats (~24-32 bytes a value
    plus a list per box): an hour of TV has tens of thousands of faces.
    """

    frames: array[int] = field(default_factory=lambda: array("q"))
    cut_frames: array[int] = field(default_factory=lambda: array("q"))
    _frame: array[int] = field(default_factory=lambda: array("q"))
    _box: array[float] = field(default_factory=lambda: array("f"))  # 4 per face
    _score: array[float] = field(default_factory=lambda: array("f"))
    _quality: array[float] = field(default_factory=lambda: array("f"))
    _landmarks: array[float] = field(default_factory=lambda: array("f"))  # 10 per face
    _track: array[int] = field(default_factory=lambda: array("q"))
    _candidate: array[int] = field(default_factory=lambda: array("b"))
    _restored: array[int] = field(default_factory=lambda: array("b"))

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
        restored: bool = False,
    ) -> int:
        if len(box) != 4 or len(landmarks) != 10:
            raise ValueError(f"a face needs 4 box values and 10 landmark values, got {len(box)} and {len(landmarks)}")
        self._frame.append(frame)
        self._box.extend(box)
        self._score.append(score)
        self._quality.append(quality)
        self._landmarks.extend(landmarks)
        self._track.append(track_id)
        self._candidate.append(bool(candidate))
        self._restored.append(bool(restored))
        return len(self._frame) - 1

    def frame_of(self, row: int) -> int:
        return self._frame[row]

    def track_of(self, row: int) -> int:
        return self._track[row]

    def box_of(self, row: int) -> list[float]:
        return self._box[4 * row : 4 * row + 4].tolist()

    def build(self, embedding_rows: np.ndarray, embeddings: np.ndarray) -> FaceTable:
        n = len(self._frame)
        return FaceTable(
            frame=np.frombuffer(self._frame, np.int64).copy(),
            xyxy=np.frombuffer(self._box, np.float32).reshape(n, 4).copy(),
            score=np.frombuffer(self._score, np.float32).copy(),
            quality=np.frombuffer(self._quality, np.float32).copy(),
            landmarks=np.frombuffer(self._landmarks, np.float32).reshape(n, 10).copy(),
            track_id=np.frombuffer(self._track, np.int64).copy(),
            candidate=np.frombuffer(self._candidate, np.int8).astype(bool),
            restored=np.frombuffer(self._restored, np.int8).astype(bool),
            embedding_row=embedding_rows,
            embedding=embeddings.reshape(len(embedding_rows), -1)
            if len(embedding_rows)
            else np.zeros((0, 0), np.float32),
            processed_frames=np.frombuffer(self.frames, np.int64).copy(),
            cut_frames=np.frombuffer(self.cut_frames, np.int64).copy(),
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
    # (N,) found on a frame restored from a motion smear (Face.restored); empty = none was
    restored: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        n = len(self.frame)
        if len(self.restored) == 0 and n:
            object.__setattr__(self, "restored", np.zeros(n, bool))
        for name in ("xyxy", "score", "quality", "landmarks", "track_id", "candidate", "restored"):
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
