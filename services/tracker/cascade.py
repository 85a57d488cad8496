"""ByteTrack's association cascade (Zhang et al., ECCV 2022), shared by the trackers built on it.

One update of such a tracker (ByteTracker, StrongSortTracker):

1. confident detections vs confirmed tracks, tracked and lost (a lost face re-found by motion);
2. weak detections vs the tracks that were tracked until now and got nothing in 1, never lost
   ones: a weak box far from where a lost face was is not worth the risk. Tracks still without a
   detection become lost;
3. one-hit (unconfirmed) tracks vs the confident detections left; the ones left unmatched were
   likely false positives and are removed;

then confident detections nobody took may start tracks, and a lost track sitting on a tracked one
is the same face followed twice (without_duplicates). The trackers differ in the cost of a
(track, detection) pair, so each passes its own `associate` to run_cascade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt

from services.tracker.association import iou_matrix, linear_assignment
from services.tracker.interface import BoolArray, TrackAssignment, TrackerFrame, TrackState
from services.tracker.kalman import FloatArray, KalmanBoxFilter, cxcyah_to_xyxy, warp_states, xyxy_to_cxcyah

IndexArray = npt.NDArray[np.intp]

# Seconds a lost track is kept for re-association by motion (ByteTrack's 30-frame buffer at 30 fps):
# long enough to bridge a face turning away or a brief occlusion, short enough that a different
# person entering the same place later is not given the old identity.
LOST_BUFFER_S = 1.0
# A tracked and a lost track overlapping with IoU above this are the same face followed twice;
# the one followed for fewer updates is dropped. 0.85 is ByteTrack's value.
DUPLICATE_IOU = 0.85


@dataclass(frozen=True)
class CascadeSettings:
    """The cascade's thresholds. Scores are detector confidences in [0, 1]; distances are 1 - IoU.

    A tracker's settings class derives from this one; its own fields follow these six, in order.
    """

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


@dataclass
class Track:
    """Mutable state of one followed face; owned by exactly one tracker."""

    track_id: int
    mean: FloatArray
    covariance: FloatArray
    score: float
    confirmed: bool
    state: TrackState
    first_update: float  # tracker clock (strides since the sequence start) when the track started
    last_matched_update: float

    @classmethod
    def started(
        cls, track_id: int, kalman: KalmanBoxFilter, box_xyxy: FloatArray, score: float, confirmed: bool, now: float
    ) -> Self:
        """A new track on one detection at update `now`."""
        mean, covariance = kalman.initiate(xyxy_to_cxcyah(box_xyxy))
        return cls(track_id, mean, covariance, score, confirmed, TrackState.TRACKED, now, now)

    def box_xyxy(self) -> FloatArray:
        return cxcyah_to_xyxy(self.mean[:4])

    @property
    def followed_updates(self) -> float:
        return self.last_matched_update - self.first_update

    def correct(self, kalman: KalmanBoxFilter, box_xyxy: FloatArray, noise_scale: float = 1.0) -> None:
        """Correct the predicted state with a detection box."""
        self.mean, self.covariance = kalman.update(self.mean, self.covariance, xyxy_to_cxcyah(box_xyxy), noise_scale)

    def matched(self, score: float, now: float) -> None:
        """Matched at update `now`: tracked, and confirmed (a second hit confirms a new track; lost
        tracks were confirmed already)."""
        self.score = score
        self.last_matched_update = now
        self.state = TrackState.TRACKED
        self.confirmed = True


T = TypeVar("T", bound=Track)


@dataclass(frozen=True)
class Association(Generic[T]):
    matches: list[tuple[T, int]]  # (track, detection index into the frame's boxes)
    unmatched_tracks: list[T]
    unmatched_detections: IndexArray

    @classmethod
    def solve(cls, tracks: list[T], candidates: IndexArray, cost: FloatArray, max_cost: float) -> Association[T]:
        """Optimal matching of `tracks` (rows of `cost`) to the detections `candidates` (its columns)."""
        pairs, unmatched_rows, unmatched_cols = linear_assignment(cost, max_cost)
        return cls(
            matches=[(tracks[row], int(candidates[col])) for row, col in pairs],
            unmatched_tracks=[tracks[row] for row in unmatched_rows],
            unmatched_detections=candidates[unmatched_cols],
        )


# associate(tracks, candidate detections, max 1 - IoU, weak): the second association has weak=True.
Associate = Callable[[list[T], IndexArray, float, bool], Association[T]]


@dataclass(frozen=True)
class Cascade(Generic[T]):
    matches: list[tuple[T, int]]  # of the first and second associations
    young: Association[T]  # the third: one-hit tracks; its unmatched detections may start tracks


class CascadeTracker(Generic[T]):
    """What every tracker on the cascade keeps: its tracks and counters. One stream per instance."""

    def __init__(self) -> None:
        self._kalman = KalmanBoxFilter()
        self._last_track_id = 0  # ids come from this instance counter only, never shared state
        self._tracked: list[T] = []  # confirmed and unconfirmed tracks matched last update
        self._lost: list[T] = []
        self._update_count = 0  # updates since construction or the last reset()
        self._clock = 0.0  # strides since construction or the last reset() (TrackerFrame.steps summed)

    def reset(self) -> None:
        """Forget all tracks (e.g. at a shot cut). Ids keep increasing so old ids are never reused."""
        self._tracked = []
        self._lost = []
        self._update_count = 0
        self._clock = 0.0

    def _advance(self, frame: TrackerFrame) -> float:
        """Count one update and move the clock by the frame's steps; the clock is "now"."""
        self._update_count += 1
        self._clock += frame.steps
        return self._clock

    @property
    def _first_update(self) -> bool:
        """This update is the first of its sequence: tracks starting now are trusted at once."""
        return self._update_count == 1

    def _predict(self, camera_motion: FloatArray | None = None, steps: float = 1.0) -> None:
        """Move every live track to this frame, lost ones too, so all tracks stay on the same clock."""
        tracks = self._tracked + self._lost
        means, covariances = predicted_states(self._kalman, tracks, camera_motion, steps)
        for row, track in enumerate(tracks):
            track.mean, track.covariance = means[row], covariances[row]

    def _new_track_id(self) -> int:
        self._last_track_id += 1
        return self._last_track_id


def boxes_of(tracks: Sequence[Track]) -> FloatArray:
    """(N, 4) x1y1x2y2 boxes of the tracks' current states."""
    return np.array([track.box_xyxy() for track in tracks], dtype=np.float64).reshape(-1, 4)


def capped_confidences(frame: TrackerFrame, high_score: float) -> FloatArray:
    """Detection scores with candidates capped at high_score: they may continue a track, never start one."""
    return np.where(frame.candidate, np.minimum(frame.scores, high_score), frame.scores)


def usable_mask(boxes: FloatArray, min_side: float = 0.0) -> BoolArray:
    """Boxes with a positive width and height of at least min_side (a zero-height box has no aspect ratio)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths > 0) & (heights > 0) & (widths >= min_side) & (heights >= min_side)


def predicted_states(
    kalman: KalmanBoxFilter, tracks: Sequence[Track], camera_motion: FloatArray | None = None, steps: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """States of `tracks` moved by the camera (when given) and predicted `steps` strides; nothing is committed."""
    if not tracks:
        return np.zeros((0, 8)), np.zeros((0, 8, 8))
    means = np.stack([track.mean for track in tracks])
    covariances = np.stack([track.covariance for track in tracks])
    if camera_motion is not None:
        means, covariances = warp_states(means, covariances, camera_motion)
    lost = np.array([track.state is TrackState.LOST for track in tracks])
    means[lost, 7] = 0.0  # an unobserved face should not keep growing or shrinking
    return kalman.multi_predict(means, covariances, steps)


def run_cascade(
    settings: CascadeSettings,
    tracked: list[T],
    lost: list[T],
    confidences: FloatArray,
    usable: BoolArray,
    associate: Associate[T],
) -> Cascade[T]:
    """Associations 1 to 3 of the module docstring over tracks already predicted to this frame;
    `lost` are the lost tracks that take part. Marks the tracks left by 2 lost and by 3 removed."""
    s = settings
    high = np.flatnonzero(usable & (confidences > s.high_score))
    low = np.flatnonzero(usable & (confidences > s.low_score) & (confidences <= s.high_score))
    unconfirmed = [track for track in tracked if not track.confirmed]
    confirmed = [track for track in tracked if track.confirmed]

    first = associate(confirmed + lost, high, s.match_iou_distance, False)
    still_tracked = [track for track in first.unmatched_tracks if track.state is TrackState.TRACKED]
    second = associate(still_tracked, low, s.second_match_iou_distance, True)
    for track in second.unmatched_tracks:
        track.state = TrackState.LOST
    third = associate(unconfirmed, first.unmatched_detections, s.unconfirmed_match_iou_distance, False)
    for track in third.unmatched_tracks:
        track.state = TrackState.REMOVED
    return Cascade(first.matches + second.matches, third)


def next_track_lists(
    previous: list[T],
    new_tracks: list[T],
    keep_lost: Callable[[T], bool],
    duplicate_iou: float,
    comparable: Callable[[T], bool] | None = None,
    distinct: Callable[[T, T], bool] | None = None,
) -> tuple[list[T], list[T]]:
    """(tracked, lost) after an update: tracked tracks and `new_tracks`, and the lost ones that
    `keep_lost` keeps, without duplicates.

    A lost track (of those `comparable` allows) overlapping a tracked one with IoU above
    duplicate_iou is the same face followed twice: the shorter-followed of the two goes (ties keep
    the tracked one: it was just confirmed by a detection), unless `distinct(lost, tracked)` says
    they are two faces.
    """
    tracked = [track for track in previous if track.state is TrackState.TRACKED] + new_tracks
    lost = [track for track in previous if track.state is TrackState.LOST and keep_lost(track)]
    olds = lost if comparable is None else [track for track in lost if comparable(track)]
    if not tracked or not olds:
        return tracked, lost
    overlap = iou_matrix(boxes_of(tracked), boxes_of(olds))
    dropped: set[int] = set()
    for row, col in zip(*np.nonzero(overlap > duplicate_iou), strict=True):
        old, new = olds[col], tracked[row]
        if distinct is not None and distinct(old, new):
            continue
        if old.followed_updates > new.followed_updates:
            new.state = TrackState.REMOVED
            dropped.add(id(new))
        else:
            dropped.add(id(old))
    tracked = [track for track in tracked if id(track) not in dropped]
    return tracked, [track for track in lost if id(track) not in dropped]


def confirmed_assignments(matches: list[tuple[T, int]], boxes: FloatArray, scores: FloatArray) -> list[TrackAssignment]:
    """The matches of confirmed, tracked tracks as the tracker's answer, by detection index."""
    assignments = [
        TrackAssignment(track.track_id, detection, boxes[detection].copy(), float(scores[detection]))
        for track, detection in matches
        if track.confirmed and track.state is TrackState.TRACKED
    ]
    return sorted(assignments, key=lambda assignment: assignment.detection_index)
