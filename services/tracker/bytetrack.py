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

from services.tracker.association import fuse_score, iou_matrix
from services.tracker.cascade import (
    DUPLICATE_IOU,
    LOST_BUFFER_S,
    Association,
    CascadeSettings,
    CascadeTracker,
    IndexArray,
    Track,
    boxes_of,
    capped_confidences,
    confirmed_assignments,
    next_track_lists,
    predicted_states,
    run_cascade,
    usable_mask,
)
from services.tracker.interface import TrackAssignment, TrackerFrame, TrackState, updates_spanning
from services.tracker.kalman import FloatArray, cxcyah_to_xyxy


@dataclass(frozen=True)
class ByteTrackSettings(CascadeSettings):
    """Thresholds of one tracker: the cascade's (CascadeSettings, first in this order), then these."""

    # Seconds a lost track is kept for re-association (see LOST_BUFFER_S).
    lost_buffer_s: float = LOST_BUFFER_S
    # Frames per second of the video; converts lost_buffer_s to update() calls.
    frame_rate: float = 30.0
    # Video frames between consecutive update() calls (1 = every frame is tracked).
    frame_stride: int = 1
    # Use FrameDetections.camera_motion (when the detector sends it) as a second prediction of each
    # track: moved with the camera (BoT-SORT's GMC) beside not moved. A face in a pan moves with the
    # camera, tens of px per frame, which the constant-velocity Kalman learns only slowly (the hard
    # episode's 30 px/frame pan: a face lost every ~4 frames, 27 identity switches in 120 frames; 0
    # with the camera). A face the camera follows (a tracking shot, a face composited over a moving
    # background) does not move with it: always warping cost the sample 6 switches, and taking the
    # better of both for every pair 8. So the camera is a second chance: tracks seen on the last
    # frame and detections the still prediction leaves unmatched are matched again with the moved
    # one (never a lost track: one hidden behind another face would be pulled onto it).
    use_camera_motion: bool = True
    # Pixels; detections whose width or height is smaller are ignored. 0 keeps all; a small face
    # cannot be identified anyway, and tiny boxes give unstable IoU.
    min_box_side: float = 0.0
    # If True, the first and unconfirmed associations use 1 - IoU * score instead of 1 - IoU
    # (ByteTrack's non-MOT20 variant). Off by default so the distances above mean plain 1 - IoU.
    fuse_detection_score: bool = False
    # A tracked and a lost track overlapping with IoU above this are one face followed twice (see DUPLICATE_IOU).
    duplicate_iou: float = DUPLICATE_IOU

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


class ByteTracker(CascadeTracker[Track]):
    """Assigns stable ids to detections frame after frame. Not thread-safe: one stream per instance."""

    def __init__(self, settings: ByteTrackSettings = DEFAULT_BYTETRACK_SETTINGS) -> None:
        super().__init__()
        self._settings = settings
        self._max_lost_updates = settings.lost_buffer_updates

    @property
    def settings(self) -> ByteTrackSettings:
        return self._settings

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
        confidences = capped_confidences(frame, settings.high_score)
        now = self._advance(frame)

        moved = self._moved_with_camera(frame) if settings.use_camera_motion else {}
        self._predict(steps=frame.steps)

        def associate(
            tracks: list[Track], candidates: IndexArray, max_distance: float, weak: bool
        ) -> Association[Track]:
            def solve(tracks: list[Track], candidates: IndexArray, track_boxes: FloatArray) -> Association[Track]:
                distance = 1.0 - iou_matrix(track_boxes, boxes[candidates])
                if settings.fuse_detection_score and not weak:
                    distance = fuse_score(distance, confidences[candidates])
                return Association.solve(tracks, candidates, distance, max_distance)

            still = solve(tracks, candidates, boxes_of(tracks))
            if not moved or not still.unmatched_tracks or not len(still.unmatched_detections):
                return still
            # Second chance: what the still prediction left, predicted moved with the camera.
            left = [t for t in still.unmatched_tracks if t.state is TrackState.TRACKED]
            if not left:
                return still
            warped = np.array([cxcyah_to_xyxy(moved[id(t)][0][:4]) for t in left]).reshape(-1, 4)
            rescued = solve(left, still.unmatched_detections, warped)
            for track, _ in rescued.matches:
                track.mean, track.covariance = moved[id(track)]  # it went on from the moved prediction
            unmatched = [t for t in still.unmatched_tracks if t.state is not TrackState.TRACKED]
            return Association(
                still.matches + rescued.matches, rescued.unmatched_tracks + unmatched, rescued.unmatched_detections
            )

        usable = usable_mask(boxes, settings.min_box_side)
        cascade = run_cascade(settings, self._tracked, self._lost, confidences, usable, associate)
        matches = cascade.matches + cascade.young.matches
        for track, detection in matches:
            track.correct(self._kalman, boxes[detection])
            track.matched(float(confidences[detection]), now)

        # Remaining confident detections start tracks; trusted at once only at a sequence start,
        # where there is no earlier frame that could have confirmed them.
        new_tracks: list[Track] = []
        for detection in cascade.young.unmatched_detections:
            if confidences[detection] >= settings.new_track_score:
                score, first = float(confidences[detection]), self._first_update
                track = Track.started(self._new_track_id(), self._kalman, boxes[detection], score, first, now)
                new_tracks.append(track)
                matches.append((track, int(detection)))

        self._tracked, self._lost = next_track_lists(
            self._tracked + self._lost,
            new_tracks,
            lambda track: now - track.last_matched_update <= self._max_lost_updates,
            settings.duplicate_iou,
        )
        return confirmed_assignments(matches, boxes, confidences)

    def _moved_with_camera(self, frame: TrackerFrame) -> dict[int, tuple[FloatArray, FloatArray]]:
        """{id(track): (mean, covariance)} of every live track moved by the frame's camera motion and
        predicted; empty without camera motion. Nothing is committed."""
        if frame.camera_motion is None:
            return {}
        tracks = self._tracked + self._lost
        means, covariances = predicted_states(self._kalman, tracks, frame.camera_motion, frame.steps)
        return {id(track): (means[i], covariances[i]) for i, track in enumerate(tracks)}
