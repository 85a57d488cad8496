"""Boxes for the frames a run did not process: each track carried between its sightings.

With adaptive sampling the frames between two processed frames were skipped because nothing there
could be lost (every face kept overlapping itself, none touched another), so a face seen on both
sides moved smoothly: its box is interpolated linearly. After a track's last sighting (or before a
gap longer than the stride) the box is held up to the next processed frame, the same frames the
screen time counts for that sighting (analysis/screentime.py). Nothing is carried over a cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.orchestrator.analysis.face_table import FaceTable


@dataclass(frozen=True)
class CarriedBoxes:
    """Parallel arrays, one row per (frame, track), sorted by frame then track."""

    frame: np.ndarray  # int64
    track_id: np.ndarray  # int64
    xyxy: np.ndarray  # (N, 4) float64
    score: np.ndarray  # float64: the detection's, or the lower of the two sightings interpolated between
    carried: np.ndarray  # bool: not a detection of this frame


def _next(sorted_frames: np.ndarray, frame: int, default: int) -> int:
    """First of `sorted_frames` after `frame`, or `default`."""
    i = int(np.searchsorted(sorted_frames, frame, side="right"))
    return int(sorted_frames[i]) if i < len(sorted_frames) else default


def carry_tracks(faces: FaceTable, stride: int, frame_count: int) -> CarriedBoxes:
    """Every tracked face plus its carried boxes; `stride` bounds how far a sighting is carried, and
    nothing is carried past the video's last frame."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    processed = np.sort(faces.processed_frames)
    cuts = np.sort(faces.cut_frames)
    frames: list[np.ndarray] = []
    tracks: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    carried: list[np.ndarray] = []
    for tid in faces.track_ids().tolist():
        rows = faces.rows_of_track(tid)
        rows = rows[np.argsort(faces.frame[rows], kind="stable")]
        for i, row in enumerate(rows.tolist()):
            f = int(faces.frame[row])
            box = faces.xyxy[row].astype(np.float64)
            score = float(faces.score[row])
            next_cut = _next(cuts, f, f + stride + 1)
            after = rows[i + 1] if i + 1 < len(rows) else None
            if after is not None and int(faces.frame[after]) - f <= stride and int(faces.frame[after]) < next_cut:
                g = int(faces.frame[after])
                steps = (np.arange(f + 1, g) - f) / (g - f)
                between = box + steps[:, None] * (faces.xyxy[after].astype(np.float64) - box)
                filler_score = min(score, float(faces.score[after]))
            else:
                end = min(f + stride, _next(processed, f, f + stride), next_cut, frame_count)
                between = np.repeat(box[None, :], max(0, end - f - 1), axis=0)
                filler_score = score
            n = len(between)
            frames.append(np.arange(f, f + n + 1, dtype=np.int64))
            tracks.append(np.full(n + 1, tid, np.int64))
            boxes.append(np.vstack([box[None, :], between]))
            scores.append(np.concatenate([[score], np.full(n, filler_score)]))
            carried.append(np.concatenate([[False], np.ones(n, bool)]))
    if not frames:
        return CarriedBoxes(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, bool)
        )
    frame, track_id = np.concatenate(frames), np.concatenate(tracks)
    order = np.lexsort((track_id, frame))
    return CarriedBoxes(
        frame[order],
        track_id[order],
        np.concatenate(boxes)[order],
        np.concatenate(scores)[order],
        np.concatenate(carried)[order],
    )
