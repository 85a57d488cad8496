"""Offline extension of tracks through the weak detections just before and after them.

An online tracker starts a track only on a confident detection and drops it after a few misses,
but a face that is small, dark or blurred is detected weakly and intermittently (a 22x30 px face
scores 0.2-0.98 from frame to frame). Episodes are analysed offline, so after the stream each
track is walked backwards from its first face and forwards from its last, adopting the untracked
detection that overlaps its extrapolated box, tolerating short runs of frames with no detection,
never crossing a shot cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.boxes import iou_matrix
from services.orchestrator.analysis.face_table import FaceTable


@dataclass(frozen=True)
class BackfillSettings:
    # IoU between the track's box, extrapolated with its own velocity, and an untracked detection.
    # 0.3 tolerates the jitter of small boxes (a few px on a 22 px face) while two different faces
    # of one frame almost never overlap that much.
    min_iou: float = 0.3
    # Seconds of consecutive processed frames without any overlapping detection that the walk
    # steps over (a weak face dips below the candidate score for a frame or two at a time).
    max_gap_s: float = 0.3
    # Seconds a track may be extended each way: beyond a few seconds a weak-only stretch is more
    # likely another face (or clutter) than the same one.
    max_extension_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.min_iou <= 1:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if not (self.max_gap_s >= 0 and self.max_extension_s >= 0):
            raise ValueError(
                f"max_gap_s and max_extension_s must be >= 0 s, got {self.max_gap_s}, {self.max_extension_s}"
            )


class _Walker:
    """Walks tracks over the processed frames; distances are in video frames, so processed frames
    closer than the stride (adaptive sampling) are examined too, within the same time limits."""

    def __init__(self, faces: FaceTable, fps: float, stride: int, settings: BackfillSettings) -> None:
        self.faces = faces
        self.settings = settings
        self.track_id = faces.track_id.copy()
        self.processed = np.sort(faces.processed_frames)
        self.position = {int(f): i for i, f in enumerate(self.processed)}
        self.cuts = set(faces.cut_frames.tolist())
        self.untracked: dict[int, list[int]] = {}
        for row in np.flatnonzero(self.track_id == 0):
            self.untracked.setdefault(int(faces.frame[row]), []).append(int(row))
        # Whole strides, as the walk counted them at uniform sampling: after a hit, frames up to
        # (max_gap + 1) strides later are searched; the walk ends max_steps strides from the track.
        self.max_gap_frames = (int(settings.max_gap_s * fps / stride) + 1) * stride
        self.max_extension_frames = int(settings.max_extension_s * fps / stride) * stride

    def walk(self, tid: int, rows: np.ndarray, direction: int) -> None:
        """direction -1: backwards from the first face (rows in time order); +1: forwards from the last."""
        ends = rows if direction < 0 else rows[::-1]
        box = self.faces.xyxy[ends[0]].astype(np.float64)
        box_frame = int(self.faces.frame[ends[0]])
        velocity = np.zeros(4)  # per frame
        if len(ends) > 1:
            span = box_frame - int(self.faces.frame[ends[1]])
            velocity = (self.faces.xyxy[ends[0]] - self.faces.xyxy[ends[1]]).astype(np.float64) / span
        position = self.position[box_frame]
        origin = box_frame
        while True:
            frame = int(self.processed[position])
            if direction < 0 and frame in self.cuts:
                return  # the shot starts here
            position += direction
            if not 0 <= position < len(self.processed):
                return
            frame = int(self.processed[position])
            if direction > 0 and frame in self.cuts:
                return
            if abs(frame - origin) > self.max_extension_frames or abs(frame - box_frame) > self.max_gap_frames:
                return
            predicted = box + velocity * (frame - box_frame)
            pool = self.untracked.get(frame, [])
            overlaps = iou_matrix(predicted[None, :], self.faces.xyxy[pool])[0] if pool else np.zeros(0)
            if overlaps.size == 0 or overlaps.max() < self.settings.min_iou:
                continue
            row = pool.pop(int(np.argmax(overlaps)))
            self.track_id[row] = tid
            box, box_frame = self.faces.xyxy[row].astype(np.float64), frame


def backfill_tracks(
    faces: FaceTable, fps: float, stride: int, settings: BackfillSettings = BackfillSettings()
) -> np.ndarray:
    """New track_id column: untracked detections adopted by the track they continue. `stride`: the
    run's (base) stride, the unit the walk's limits are counted in."""
    walker = _Walker(faces, fps, stride, settings)
    tracks = faces.track_ids().tolist()
    ordered = {
        t: faces.rows_of_track(t)[np.argsort(faces.frame[faces.rows_of_track(t)], kind="stable")] for t in tracks
    }
    for tid in sorted(tracks, key=lambda t: int(faces.frame[ordered[t][0]])):
        walker.walk(tid, ordered[tid], -1)
        walker.walk(tid, ordered[tid], +1)
    return walker.track_id
