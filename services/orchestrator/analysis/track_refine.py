"""Offline repair of tracks after the stream, for every tracker: split identity jumps, merge fragments.

An online tracker decides frame by frame and never revisits a decision. With the whole episode in
hand (and the embeddings the identity stage samples anyway, 1 per track per second) two mistakes
are cheap to undo before identities are built:

- Split: a track whose consecutive sampled embeddings jump to a different person, and stay there,
  took over someone else (a crossing, a cut the shot detector missed). It is cut where its box
  jumps the most between the two samples.
- Merge: two tracks of one shot, one ending shortly before the other starts, whose appearance
  agrees and whose motion makes the gap plausible (the first one's box, carried on at its own
  speed, lands near where the second starts) are one person the tracker lost for a moment.
  Tracks that share a frame are never merged, nor fragments across a cut.

Splitting a person costs a reviewer a merge; merging two people corrupts screen time, so both
thresholds err on the side of leaving tracks alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.orchestrator.analysis.face_table import FaceTable


@dataclass(frozen=True)
class TrackRefineSettings:
    # Cosine distance between consecutive sampled embeddings of one track above which it may have
    # jumped to another person. 0.7 (similarity < 0.3): one person's samples 0.5 s apart measured
    # >= 0.47 similarity even turning away; different people <= 0.4 on real TV.
    split_distance: float = 0.7
    # The new appearance must hold: this many samples after the jump, all as far from the samples
    # before it. 2 (two seconds of video at the sampler's 1 s window): one odd sample (motion blur,
    # a hand) is not a new person.
    split_confirm_samples: int = 2
    # Cosine distance between two fragments' mean embeddings below which they may be one person.
    # 0.4 (similarity > 0.6): same-person track means measured 0.5-0.93, so this misses a few true
    # merges (identity clustering still groups them) but stays clear of different people (<= 0.4).
    merge_distance: float = 0.4
    # Seconds between one fragment's end and the next one's start, at most. 2 s: an occlusion or a
    # look away; beyond it the tracker's own re-linking had its chance and clustering takes over.
    merge_max_gap_s: float = 2.0
    # The second fragment must start within this many face heights of where the first one's box,
    # carried on at its last speed, would be; plus merge_speed_heights_per_s per second of gap for
    # what the person may have done unseen. 1 height + 1 height/s: a face does not cross the frame
    # unseen in a second, a person who paused behind someone is still found.
    merge_position_heights: float = 1.0
    merge_speed_heights_per_s: float = 1.0
    # Seconds of the end of a fragment its speed is measured over: long enough to average the box jitter.
    velocity_window_s: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.split_distance <= 2 and 0 < self.merge_distance <= 2):
            raise ValueError(
                f"split_distance and merge_distance are cosine distances in (0, 2], got "
                f"{self.split_distance}, {self.merge_distance}"
            )
        if self.split_confirm_samples < 1:
            raise ValueError(f"split_confirm_samples must be >= 1, got {self.split_confirm_samples}")
        for name in ("merge_max_gap_s", "merge_position_heights", "merge_speed_heights_per_s", "velocity_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RefineReport:
    splits: list[dict[str, Any]] = field(default_factory=list)
    merges: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"splits": self.splits, "merges": self.merges}


def refine_tracks(
    faces: FaceTable, fps: float, settings: TrackRefineSettings = TrackRefineSettings()
) -> tuple[np.ndarray, RefineReport]:
    """New track_id column (splits get fresh ids, merged fragments the earlier one's id) and what was done."""
    report = RefineReport()
    track_id = faces.track_id.copy()
    if len(faces.embedding) == 0:
        return track_id, report
    vectors = _unit(faces.embedding.astype(np.float64))
    _split(faces, vectors, track_id, settings, report)
    _merge(faces, vectors, track_id, fps, settings, report)
    return track_id, report


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _split(
    faces: FaceTable, vectors: np.ndarray, track_id: np.ndarray, settings: TrackRefineSettings, report: RefineReport
) -> None:
    next_id = int(track_id.max(initial=0)) + 1
    sample_track = track_id[faces.embedding_row]
    for tid in np.unique(sample_track[sample_track > 0]).tolist():
        samples = np.flatnonzero(sample_track == tid)
        samples = samples[np.argsort(faces.frame[faces.embedding_row[samples]], kind="stable")]
        start = 0  # first sample of the current (possibly already split) piece
        k = 1
        while k < len(samples):
            jump = 1.0 - float(vectors[samples[k - 1]] @ vectors[samples[k]])
            after = samples[k : k + settings.split_confirm_samples]
            before = samples[start:k]
            if jump > settings.split_distance and len(after) == settings.split_confirm_samples:
                mean_before = _unit(vectors[before].mean(axis=0, keepdims=True))[0]
                if all(1.0 - float(mean_before @ vectors[a]) > settings.split_distance for a in after):
                    frame = _split_frame(faces, track_id, tid, samples[k - 1], samples[k])
                    rows = np.flatnonzero((track_id == tid) & (faces.frame >= frame))
                    track_id[rows] = next_id
                    report.splits.append(
                        {"track": tid, "new_track": next_id, "at_frame": frame, "distance": round(jump, 3)}
                    )
                    tid, next_id, start = next_id, next_id + 1, k
            k += 1


def _split_frame(faces: FaceTable, track_id: np.ndarray, tid: int, before_sample: int, after_sample: int) -> int:
    """The first frame of the new piece: where the box jumps most between the two samples' frames."""
    first = int(faces.frame[faces.embedding_row[before_sample]])
    last = int(faces.frame[faces.embedding_row[after_sample]])
    rows = np.flatnonzero((track_id == tid) & (faces.frame >= first) & (faces.frame <= last))
    rows = rows[np.argsort(faces.frame[rows], kind="stable")]
    if len(rows) < 2:
        return last
    boxes = faces.xyxy[rows].astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / heights[:-1]
    return int(faces.frame[rows[int(np.argmax(steps)) + 1]])


@dataclass
class _Fragment:
    track: int
    rows: np.ndarray  # in frame order
    mean: np.ndarray | None  # unit mean embedding
    head: int  # first track of the chain this fragment ends (itself if none)

    @property
    def start(self) -> int:
        return int(self.rows[0])

    @property
    def end(self) -> int:
        return int(self.rows[-1])


def _merge(
    faces: FaceTable,
    vectors: np.ndarray,
    track_id: np.ndarray,
    fps: float,
    settings: TrackRefineSettings,
    report: RefineReport,
) -> None:
    sample_track = track_id[faces.embedding_row]
    fragments: dict[int, _Fragment] = {}
    for tid in np.unique(track_id[track_id > 0]).tolist():
        rows = np.flatnonzero(track_id == tid)
        rows = rows[np.argsort(faces.frame[rows], kind="stable")]
        samples = np.flatnonzero(sample_track == tid)
        mean = _unit(vectors[samples].mean(axis=0, keepdims=True))[0] if len(samples) else None
        fragments[tid] = _Fragment(tid, rows, mean, tid)
    cuts = np.sort(faces.cut_frames)
    candidates: list[tuple[float, int, int, float]] = []  # (distance, earlier, later, gap s)
    for a in fragments.values():
        for b in fragments.values():
            if a.mean is None or b.mean is None or a.track == b.track:
                continue
            end, start = int(faces.frame[a.end]), int(faces.frame[b.start])
            gap_s = (start - end) / fps
            if start <= end or gap_s > settings.merge_max_gap_s:
                continue
            if np.any((cuts > end) & (cuts <= start)):
                continue  # another shot
            distance = 1.0 - float(a.mean @ b.mean)
            if distance >= settings.merge_distance or not _motion_agrees(faces, a, b, fps, settings):
                continue
            candidates.append((distance, a.track, b.track, gap_s))
    # Shortest gaps first (a fragment's immediate continuation before one further on, so a chain
    # A, B, C is not cut short by A -> C), then the closest appearance; a fragment continues at most
    # one and is continued by at most one, and chains grow only at their ends, so merged tracks
    # never share a frame.
    merged_into: dict[int, int] = {}
    has_next: set[int] = set()
    for distance, earlier, later, gap_s in sorted(candidates, key=lambda c: (c[3], c[0])):
        if earlier in has_next or later in merged_into:
            continue
        root = merged_into.get(earlier, earlier)
        if root == later:
            continue
        has_next.add(earlier)
        for tid, target in list(merged_into.items()):
            if target == later:
                merged_into[tid] = root
        merged_into[later] = root
        report.merges.append({"kept": root, "merged": later, "gap_s": round(gap_s, 3), "distance": round(distance, 3)})
    for later, root in merged_into.items():
        track_id[fragments[later].rows] = root


def _motion_agrees(faces: FaceTable, a: _Fragment, b: _Fragment, fps: float, settings: TrackRefineSettings) -> bool:
    """Whether b starts where a, carried on at its last speed, could plausibly be."""
    end_frame = int(faces.frame[a.end])
    window = a.rows[faces.frame[a.rows] >= end_frame - settings.velocity_window_s * fps]
    boxes = faces.xyxy[window].astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    frames = faces.frame[window].astype(np.float64)
    velocity = np.zeros(2)
    if len(window) > 1 and frames[-1] > frames[0]:
        velocity = (centres[-1] - centres[0]) / (frames[-1] - frames[0])  # px per frame
    gap_frames = float(faces.frame[b.start]) - frames[-1]
    predicted = centres[-1] + velocity * gap_frames
    first = faces.xyxy[b.start].astype(np.float64)
    height = float(boxes[-1, 3] - boxes[-1, 1])
    tolerance = height * (settings.merge_position_heights + settings.merge_speed_heights_per_s * gap_frames / fps)
    return bool(np.linalg.norm((first[:2] + first[2:]) / 2 - predicted) <= tolerance)
