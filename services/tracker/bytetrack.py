"""ByteTrack multi-object tracking (Zhang et al., ECCV 2022), written from the paper for face boxes.

The idea that makes ByteTrack work: low-confidence detections are mostly real objects that are
occluded, blurred or turned away, so instead of discarding them they are used to *continue* tracks
that high-confidence detections did not claim, but never to *start* tracks (where they would mostly
be false positives). Motion comes from a constant-velocity Kalman filter; matching is by IoU.

One ByteTracker follows one continuous stream of frames; call reset() at a shot cut, because boxes
on either side of a cut are unrelated and IoU matching across it would merge different people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.tracker.association import fuse_score, iou_matrix, linear_assignment
from services.tracker.interface import TrackAssignment, TrackerFrame, TrackState, updates_spanning
from services.tracker.kalman import FloatArray, KalmanBoxFilter, cxcyah_to_xyxy, xyxy_to_cxcyah


@dataclass(frozen=True)
class ByteTrackSettings:
    """Thresholds of one tracker. Scores are detector confidences in [0, 1]; distances are 1 - IoU."""

    # Detections scoring above this take part in the first association (and may start tracks).
    # 0.5 is ByteTrack's value: above it a face detector's output is almost always a real face.
    high_score: float = 0.5
    # Detections in (low_score, high_score] take part in the second association only. 0.1 is
    # ByteTrack's value: below it detections are mostly noise even next to an existing track.
    low_score: float = 0.1
    # An unmatched detection must score at least this to start a track. 0.6 (high_score + 0.1, as
    # in ByteTrack) keeps borderline detections from spawning short false tracks.
    new_track_score: float = 0.6
    # First association (high detections vs tracked and lost tracks): max 1 - IoU. 0.8 (IoU >= 0.2)
    # is ByteTrack's value; loose because the Kalman prediction already places the box.
    match_iou_distance: float = 0.8
    # Second association (low detections vs still-unmatched tracked tracks): max 1 - IoU. Stricter
    # (IoU >= 0.5) because low-score boxes are less reliable and must overlap the track clearly.
    second_match_iou_distance: float = 0.5
    # Unconfirmed (one-hit) tracks vs remaining high detections: max 1 - IoU (IoU >= 0.3). An
    # unconfirmed track has no velocity yet, so the overlap must be fairly good.
    unconfirmed_match_iou_distance: float = 0.7
    # Seconds a lost track is kept for re-association (ByteTrack's 30-frame buffer at 30 fps): long
    # enough to bridge a face turning away or a brief occlusion, short enough that a different person
    # entering the same place later is not given the old identity.
    lost_buffer_s: float = 1.0
    # Frames per second of the video; converts lost_buffer_s to update() calls.
    frame_rate: float = 30.0
    # Video frames between consecutive update() calls (1 = every frame is tracked).
    frame_stride: int = 1
    # Pixels; detections whose width or height is smaller are ignored. 0 keeps all; a small face
    # cannot be identified anyway, and tiny boxes give unstable IoU.
    min_box_side: float = 0.0
    # If True, the first and unconfirmed associations use 1 - IoU * score instead of 1 - IoU
    # (ByteTrack's non-MOT20 variant). Off by default so the distances above mean plain 1 - IoU.
    fuse_detection_score: bool = False
    # A tracked and a lost track overlapping with IoU above this are the same face followed twice;
    # the one followed for fewer updates is dropped. 0.85 is ByteTrack's value.
    duplicate_iou: float = 0.85

    def __post_init__(self) -> None:
        numbers = {
            "high_score": self.high_score,
            "low_score": self.low_score,
            "new_track_score": self.new_track_score,
            "match_iou_distance": self.match_iou_distance,
            "second_match_iou_distance": self.second_match_iou_distance,
            "unconfirmed_match_iou_distance": self.unconfirmed_match_iou_distance,
            "lost_buffer_s": self.lost_buffer_s,
            "frame_rate": self.frame_rate,
            "min_box_side": self.min_box_side,
            "duplicate_iou": self.duplicate_iou,
        }
        for name, value in numbers.items():
            if not math.isfinite(value):
                raise ValueError(f"ByteTrackSettings.{name} must be finite, got {value}")
        if not self.low_score <= self.high_score:
            raise ValueError(
                f"ByteTrackSettings.low_score ({self.low_score}) must be <= high_score ({self.high_score})"
            )
        for name in ("match_iou_distance", "second_match_iou_distance", "unconfirmed_match_iou_distance"):
            if not 0.0 <= numbers[name] <= 1.0:
                raise ValueError(f"ByteTrackSettings.{name} is a 1 - IoU distance in [0, 1], got {numbers[name]}")
        if not 0.0 < self.duplicate_iou <= 1.0:
            raise ValueError(f"ByteTrackSettings.duplicate_iou must be in (0, 1], got {self.duplicate_iou}")
        if self.lost_buffer_s < 0 or self.min_box_side < 0:
            raise ValueError(
                "ByteTrackSettings.lost_buffer_s and min_box_side must be >= 0, got "
                f"{self.lost_buffer_s} and {self.min_box_side}"
            )
        if self.frame_rate <= 0:
            raise ValueError(f"ByteTrackSettings.frame_rate must be > 0, got {self.frame_rate}")
        if isinstance(self.frame_stride, bool) or not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ValueError(f"ByteTrackSettings.frame_stride must be an int >= 1, got {self.frame_stride!r}")

    @property
    def lost_buffer_updates(self) -> int:
        """How many consecutive update() calls a track may go unmatched before it is removed."""
        return updates_spanning(self.lost_buffer_s, self.frame_rate, self.frame_stride)


DEFAULT_BYTETRACK_SETTINGS = ByteTrackSettings()


@dataclass
class _Track:
    """Mutable state of one followed face; owned by exactly one ByteTracker."""

    track_id: int
    mean: FloatArray
    covariance: FloatArray
    score: float
    confirmed: bool
    state: TrackState
    first_update: int  # tracker update counter when the track started
    last_matched_update: int

    def box_xyxy(self) -> FloatArray:
        return cxcyah_to_xyxy(self.mean[:4])

    @property
    def followed_updates(self) -> int:
        return self.last_matched_update - self.first_update


@dataclass(frozen=True)
class _Association:
    matches: list[tuple[_Track, int]]  # (track, detection index into the frame's boxes)
    unmatched_tracks: list[_Track]
    unmatched_detections: npt.NDArray[np.intp]


class ByteTracker:
    """Assigns stable ids to detections frame after frame. Not thread-safe: one stream per instance."""

    def __init__(self, settings: ByteTrackSettings = DEFAULT_BYTETRACK_SETTINGS) -> None:
        self._settings = settings
        self._kalman = KalmanBoxFilter()
        self._max_lost_updates = settings.lost_buffer_updates
        self._last_track_id = 0  # ids come from this instance counter only, never shared state
        self._tracked: list[_Track] = []  # confirmed and unconfirmed tracks matched last update
        self._lost: list[_Track] = []
        self._update_count = 0  # updates since construction or the last reset()

    @property
    def settings(self) -> ByteTrackSettings:
        return self._settings

    def reset(self) -> None:
        """Forget all tracks (e.g. at a shot cut). Ids keep increasing so old ids are never reused."""
        self._tracked = []
        self._lost = []
        self._update_count = 0

    def appearance_wanted(self, frame: TrackerFrame) -> list[int]:
        """ByteTrack matches by motion and overlap only: it never needs an embedding."""
        return []

    def update(self, frame: TrackerFrame | npt.ArrayLike, scores: npt.ArrayLike | None = None) -> list[TrackAssignment]:
        """Track one frame's detections; return the detections that belong to confirmed tracks.

        frame: a TrackerFrame (candidates count as low-score detections whatever their raw score:
        they may continue a track, never start one), or (N, 4) pixel boxes (x1, y1, x2, y2) with
        `scores` (N,) confidences, the plain form benchmarks use; N may be 0.
        Returns at most one assignment per detection and per track, sorted by detection_index.
        Boxes with non-positive or below-min_box_side width or height are ignored.
        """
        settings = self._settings
        if not isinstance(frame, TrackerFrame):
            if scores is None:
                raise ValueError("update(boxes_xyxy, scores) needs the scores of the boxes")
            frame = TrackerFrame.of(frame, scores)  # validates shapes and values
        boxes = frame.boxes
        confidences = np.where(frame.candidate, np.minimum(frame.scores, settings.high_score), frame.scores)
        self._update_count += 1

        usable = self._usable_detection_mask(boxes)
        high = np.flatnonzero(usable & (confidences > settings.high_score))
        low = np.flatnonzero(usable & (confidences > settings.low_score) & (confidences <= settings.high_score))

        self._predict_all_tracks()
        unconfirmed = [track for track in self._tracked if not track.confirmed]
        confirmed = [track for track in self._tracked if track.confirmed]

        # 1. High detections vs every confirmed track, including lost ones (re-identification by motion).
        first = self._associate(
            confirmed + self._lost,
            boxes,
            confidences,
            high,
            settings.match_iou_distance,
            settings.fuse_detection_score,
        )
        matches = list(first.matches)

        # 2. Low detections vs tracks that were tracked until now and got nothing in step 1. Lost
        # tracks are excluded: a weak box far from where a lost face was is not worth the risk.
        still_tracked = [track for track in first.unmatched_tracks if track.state is TrackState.TRACKED]
        second = self._associate(still_tracked, boxes, confidences, low, settings.second_match_iou_distance, fuse=False)
        matches.extend(second.matches)
        for track in second.unmatched_tracks:
            track.state = TrackState.LOST

        # 3. One-hit tracks vs the high detections left; unmatched ones were likely false positives.
        third = self._associate(
            unconfirmed,
            boxes,
            confidences,
            first.unmatched_detections,
            settings.unconfirmed_match_iou_distance,
            settings.fuse_detection_score,
        )
        matches.extend(third.matches)
        for track in third.unmatched_tracks:
            track.state = TrackState.REMOVED

        for track, detection in matches:
            self._apply_match(track, boxes[detection], float(confidences[detection]))

        # 4. Remaining confident detections start tracks; trusted at once only at a sequence start,
        # where there is no earlier frame that could have confirmed them.
        starts_sequence = self._update_count == 1
        new_tracks: list[_Track] = []
        for detection in third.unmatched_detections:
            if confidences[detection] >= settings.new_track_score:
                track = self._start_track(boxes[detection], float(confidences[detection]), starts_sequence)
                new_tracks.append(track)
                matches.append((track, int(detection)))

        self._rebuild_track_lists(new_tracks)
        return self._confirmed_assignments(matches, boxes, confidences)

    def _usable_detection_mask(self, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        positive = (widths > 0) & (heights > 0)  # a zero-height box has no aspect ratio to filter
        large_enough = (widths >= self._settings.min_box_side) & (heights >= self._settings.min_box_side)
        return positive & large_enough

    def _predict_all_tracks(self) -> None:
        """Advance every live track one step, so all tracks stay on the same clock."""
        tracks = self._tracked + self._lost
        if not tracks:
            return
        means = np.stack([track.mean for track in tracks])
        covariances = np.stack([track.covariance for track in tracks])
        for row, track in enumerate(tracks):
            if track.state is TrackState.LOST:
                # An unobserved face should not keep growing or shrinking: freeze its height change.
                means[row, 7] = 0.0
        means, covariances = self._kalman.multi_predict(means, covariances)
        for row, track in enumerate(tracks):
            track.mean = means[row]
            track.covariance = covariances[row]

    def _associate(
        self,
        tracks: list[_Track],
        boxes: FloatArray,
        confidences: FloatArray,
        detections: npt.NDArray[np.intp],
        max_distance: float,
        fuse: bool,
    ) -> _Association:
        track_boxes = np.array([track.box_xyxy() for track in tracks], dtype=np.float64).reshape(-1, 4)
        distance = 1.0 - iou_matrix(track_boxes, boxes[detections])
        if fuse:
            distance = fuse_score(distance, confidences[detections])
        pairs, unmatched_rows, unmatched_cols = linear_assignment(distance, max_distance)
        return _Association(
            matches=[(tracks[row], int(detections[col])) for row, col in pairs],
            unmatched_tracks=[tracks[row] for row in unmatched_rows],
            unmatched_detections=detections[unmatched_cols],
        )

    def _apply_match(self, track: _Track, box_xyxy: FloatArray, score: float) -> None:
        track.mean, track.covariance = self._kalman.update(track.mean, track.covariance, xyxy_to_cxcyah(box_xyxy))
        track.score = score
        track.last_matched_update = self._update_count
        track.state = TrackState.TRACKED
        track.confirmed = True  # a second hit confirms a new track; lost tracks were confirmed already

    def _start_track(self, box_xyxy: FloatArray, score: float, confirmed: bool) -> _Track:
        self._last_track_id += 1
        mean, covariance = self._kalman.initiate(xyxy_to_cxcyah(box_xyxy))
        return _Track(
            track_id=self._last_track_id,
            mean=mean,
            covariance=covariance,
            score=score,
            confirmed=confirmed,
            state=TrackState.TRACKED,
            first_update=self._update_count,
            last_matched_update=self._update_count,
        )

    def _rebuild_track_lists(self, new_tracks: list[_Track]) -> None:
        previous = self._tracked + self._lost
        tracked = [track for track in previous if track.state is TrackState.TRACKED] + new_tracks
        lost = [
            track
            for track in previous
            if track.state is TrackState.LOST
            and self._update_count - track.last_matched_update <= self._max_lost_updates
        ]
        self._tracked, self._lost = self._without_duplicates(tracked, lost)

    def _without_duplicates(self, tracked: list[_Track], lost: list[_Track]) -> tuple[list[_Track], list[_Track]]:
        """Drop the shorter-lived of any tracked/lost pair that cover the same face."""
        if not tracked or not lost:
            return tracked, lost
        overlap = iou_matrix(
            np.stack([track.box_xyxy() for track in tracked]), np.stack([track.box_xyxy() for track in lost])
        )
        dropped_tracked: set[int] = set()
        dropped_lost: set[int] = set()
        for row, col in zip(*np.nonzero(overlap > self._settings.duplicate_iou), strict=True):
            # Ties keep the tracked one: it was just confirmed by a detection.
            if lost[col].followed_updates > tracked[row].followed_updates:
                dropped_tracked.add(int(row))
            else:
                dropped_lost.add(int(col))
        for row in dropped_tracked:
            tracked[row].state = TrackState.REMOVED
        return (
            [track for row, track in enumerate(tracked) if row not in dropped_tracked],
            [track for col, track in enumerate(lost) if col not in dropped_lost],
        )

    def _confirmed_assignments(
        self, matches: list[tuple[_Track, int]], boxes: FloatArray, confidences: FloatArray
    ) -> list[TrackAssignment]:
        assignments = [
            TrackAssignment(
                track_id=track.track_id,
                detection_index=detection,
                box_xyxy=boxes[detection].copy(),
                score=float(confidences[detection]),
            )
            for track, detection in matches
            if track.confirmed and track.state is TrackState.TRACKED
        ]
        return sorted(assignments, key=lambda assignment: assignment.detection_index)
