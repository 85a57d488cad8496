"""An appearance-aware face tracker in the StrongSORT / BoT-SORT family, written for faceflow.

What it adds to ByteTrack (whose cascade it keeps: confident detections first, weak ones only
continue tracks, one-hit tracks last):

- Appearance: each track keeps an exponential moving average of the ArcFace embeddings of its
  unoccluded faces. Where a track and a detection both have one, the cost is a blend of 1 - IoU
  and cosine distance, and where there is doubt (a lost track re-acquired, a rival track or
  detection nearby) a pair that is clearly two different people is forbidden whatever its
  overlap, so two faces crossing each other do not swap ids.
- Bounded appearance cost: embeddings are asked for (appearance_wanted), never assumed. Only faces
  whose match is ambiguous (a detection near two tracks, a track near two detections, two
  detections overlapping), faces re-acquiring a lost track or confirming a new one, confident
  faces no track explains while a track with a known appearance is missing (re-link candidates),
  and one face per track per refresh period (to keep its average current) are embedded, at most
  a few per frame. The orchestrator hands those vectors on to the identity stage, so none is
  computed twice.
- Re-linking: a lost track with a known appearance is re-attached by appearance alone to a new
  detection anywhere in the frame within a window (seconds, so it holds across fps and strides):
  a person who walks behind someone for 2 s or leaves and re-enters keeps the id. A face first
  seen too hidden to re-link gets a second chance when its new track would be confirmed.
- NSA Kalman (StrongSORT): a confident detection is a more precise measurement, so its noise
  shrinks with the confidence.
- Camera-motion compensation (BoT-SORT): the detector sends the affine motion between processed
  frames; track states move with the camera before the constant-velocity prediction.

Like every tracker here it follows one sequence: reset() at a cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.common.thresholds import MIN_FACE_PX
from services.tracker.appearance import AppearanceTrack, FrameView, appearance_distances
from services.tracker.association import iou_matrix, linear_assignment
from services.tracker.cascade import (
    DUPLICATE_IOU,
    LOST_BUFFER_S,
    Association,
    CascadeSettings,
    CascadeTracker,
    IndexArray,
    boxes_of,
    confirmed_assignments,
    next_track_lists,
    predicted_states,
    run_cascade,
)
from services.tracker.interface import TrackAssignment, TrackerFrame, TrackState, updates_spanning
from services.tracker.kalman import FloatArray, cxcyah_to_xyxy, xyxy_to_cxcyah


@dataclass(frozen=True)
class StrongSortSettings(CascadeSettings):
    """Thresholds of one tracker: ByteTrack's cascade's (CascadeSettings, first in this order), then
    these. Scores are detector confidences in [0, 1]; IoU distances are 1 - IoU; appearance distances
    are cosine distances 1 - cos between unit ArcFace vectors (0 same, 2 opposite).

    Appearance thresholds are set from ArcFace statistics on real faces (docs/thresholds.md): one
    person's faces in consecutive frames have cosine similarity 0.6-0.98 (0.47 at worst, partly
    turned), a person against another track of the same person 0.5-0.93, two different people at
    most 0.4 on real TV (0.24 on the sample episode).
    """

    # A tracked and a lost track overlapping above this are one face followed twice (see DUPLICATE_IOU).
    duplicate_iou: float = DUPLICATE_IOU
    # Seconds a lost track still takes part in motion (IoU) matching: ByteTrack's (see LOST_BUFFER_S).
    lost_buffer_s: float = LOST_BUFFER_S
    # Seconds a lost track with a known appearance may be re-linked by appearance alone. 3 s covers
    # a face hidden by someone walking past or a hand, or a person stepping out of frame and back,
    # while a different person entering much later is left to identity clustering.
    relink_window_s: float = 3.0
    # Weight of the appearance distance in the blended cost (1 - w on 1 - IoU). 0.5: in a crossing
    # the overlaps are alike and appearance decides; for one face moving alone both agree.
    appearance_weight: float = 0.5
    # A track and a detection whose appearance distance exceeds this are different people: never
    # matched, whatever their overlap. 0.7 (similarity < 0.3) is below every same-person pair we
    # measured (0.47) with room for blur, above most different-person pairs. Applied only to
    # detections touching no other one (a partly hidden face embeds far from its own average), and
    # only where there is doubt: a lost track re-acquired, or a rival track or detection nearby.
    appearance_veto_distance: float = 0.7
    # A lost track is re-linked to a detection by appearance alone below this distance. 0.5
    # (similarity > 0.5): 0.1 above the different-person ceiling, because nothing else (no motion)
    # supports the match.
    relink_distance: float = 0.5
    # Weight of the old average when a new embedding arrives. StrongSORT uses 0.9 per frame; ours
    # arrive about once a second, so 0.7 follows a slowly turning head without one odd view
    # (a blink, motion blur) dominating.
    feature_momentum: float = 0.7
    # Seconds between appearance refreshes of a track that nothing else made us embed. 2 s keeps
    # the average current (a face's look drifts over seconds, not frames) at one synchronous
    # embedding per track per 2 s; each one also stands in for the identity sampler's face of that
    # second. Measured on the sample: 1 s and 2 s give identical tracks, 2 s waits for 30% fewer.
    feature_refresh_s: float = 2.0
    # A refresh takes only a face that its track's prediction overlaps at least this much (IoU):
    # an unambiguous, well-placed view.
    refresh_min_iou: float = 0.5
    # Boxes overlapping with IoU above this are "touching": a detection touching two predicted
    # tracks, a track touching two detections, or two detections touching each other make the
    # match ambiguous (their embeddings are wanted) and a touched face's embedding does not update
    # its track's average (it may hold part of the other face). 0.1: faces side by side in a
    # two-shot do not touch, faces passing in front of each other do.
    ambiguity_iou: float = 0.1
    # Embeddings asked for per frame at most: a crowd scene cannot make a frame cost more than
    # this many embedder calls (~80 ms each on CPU). Ambiguous faces come first, then re-link
    # candidates, then refreshes.
    max_embeddings_per_frame: int = 6
    # Pixels: faces whose shorter side is smaller are never embedded: the detector's minimum face
    # (MIN_FACE_PX), below which ArcFace features do not identify anyone.
    min_appearance_side: float = MIN_FACE_PX
    # NSA Kalman: measurement variance x clip((1 - score) / (1 - high_score), nsa_min_scale, 1).
    # Face detectors score real faces 0.99+, so without the floor a box would be trusted blindly
    # and the velocity would follow every jitter; 0.25 (half the std) is the most trust given.
    nsa_min_scale: float = 0.25
    use_nsa: bool = True
    # Apply FrameDetections.camera_motion to track states before predicting (when the detector
    # sends it): pans and zooms move every face alike and would otherwise look like face motion.
    use_camera_motion: bool = True
    frame_rate: float = 30.0
    frame_stride: int = 1

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"StrongSortSettings.{name} must be finite, got {value}")
        if not 0 <= self.low_score <= self.high_score <= 1:
            raise ValueError(
                f"StrongSortSettings needs 0 <= low_score ({self.low_score}) <= high_score ({self.high_score}) <= 1"
            )
        for name in (
            "match_iou_distance",
            "second_match_iou_distance",
            "unconfirmed_match_iou_distance",
            "appearance_weight",
            "feature_momentum",
            "refresh_min_iou",
            "ambiguity_iou",
            "nsa_min_scale",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"StrongSortSettings.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("appearance_veto_distance", "relink_distance"):
            if not 0.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"StrongSortSettings.{name} is a cosine distance in [0, 2], got {getattr(self, name)}")
        if not 0.0 < self.duplicate_iou <= 1.0:
            raise ValueError(f"StrongSortSettings.duplicate_iou must be in (0, 1], got {self.duplicate_iou}")
        for name in ("lost_buffer_s", "relink_window_s", "feature_refresh_s", "min_appearance_side"):
            if getattr(self, name) < 0:
                raise ValueError(f"StrongSortSettings.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_embeddings_per_frame < 0:
            raise ValueError(
                f"StrongSortSettings.max_embeddings_per_frame must be >= 0, got {self.max_embeddings_per_frame}"
            )
        if self.frame_rate <= 0:
            raise ValueError(f"StrongSortSettings.frame_rate must be > 0, got {self.frame_rate}")
        if isinstance(self.frame_stride, bool) or not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ValueError(f"StrongSortSettings.frame_stride must be an int >= 1, got {self.frame_stride!r}")

    def updates(self, seconds: float) -> int:
        """update() calls spanning `seconds` of video (rounded up, so at least the time asked)."""
        return updates_spanning(seconds, self.frame_rate, self.frame_stride)


DEFAULT_STRONGSORT_SETTINGS = StrongSortSettings()


class StrongSortTracker(CascadeTracker[AppearanceTrack]):
    """Assigns stable ids using motion and, where it matters, appearance. One stream per instance."""

    def __init__(self, settings: StrongSortSettings = DEFAULT_STRONGSORT_SETTINGS) -> None:
        super().__init__()
        self._settings = settings
        self._lost_buffer = settings.updates(settings.lost_buffer_s)
        self._relink_window = settings.updates(settings.relink_window_s)
        self._relink_keep = max(self._lost_buffer, self._relink_window)  # how long a known face is kept lost
        self._refresh_period = max(1, settings.updates(settings.feature_refresh_s))

    @property
    def settings(self) -> StrongSortSettings:
        return self._settings

    # -- which faces to embed ------------------------------------------------------------------

    def appearance_wanted(self, frame: TrackerFrame) -> list[int]:
        s = self._settings
        tracks = self._tracked + self._lost
        if not tracks or len(frame) == 0 or s.max_embeddings_per_frame == 0:
            return []
        detections = self._detections(frame)
        means, _ = predicted_states(self._kalman, tracks, self._camera_motion(frame), frame.steps)
        overlap = iou_matrix(cxcyah_to_xyxy(means[:, :4]), detections.boxes)
        overlap[:, ~detections.usable] = 0.0
        now = self._clock + frame.steps
        in_motion = np.array([self._in_motion(t, now) for t in tracks])
        has_feature = np.array([t.feature is not None for t in tracks])
        near = (overlap > s.ambiguity_iou) & in_motion[:, np.newaxis]
        # What overlap alone would decide (one-to-one): a track with a known appearance that it
        # leaves without a detection is someone a detection elsewhere may be (hidden, out of frame,
        # moved unlike its prediction), and a detection it leaves without a track may be them.
        motion_cost = np.where(in_motion[:, np.newaxis], 1.0 - overlap, np.inf)
        pairs, unmatched_tracks, unmatched_detections = linear_assignment(motion_cost, s.match_iou_distance)
        orphaned = np.zeros(len(tracks), bool)
        orphaned[unmatched_tracks] = True
        orphaned &= has_feature
        unexplained_detection = np.zeros(len(frame), bool)
        unexplained_detection[unmatched_detections] = True
        sides = np.minimum(
            detections.boxes[:, 2] - detections.boxes[:, 0], detections.boxes[:, 3] - detections.boxes[:, 1]
        )
        embeddable = detections.usable & (sides >= s.min_appearance_side)

        wanted: list[tuple[int, float, int]] = []  # (priority, -score, detection)
        for d in np.flatnonzero(embeddable):
            near_tracks = np.flatnonzero(near[:, d])
            contested = bool(near[near_tracks].sum(axis=1).max(initial=0) > 1)
            ambiguous = len(near_tracks) > 1 or contested or bool(detections.touching[d])
            score = float(detections.confidences[d])
            # Re-acquiring a lost face (someone else may have stepped into its place), or a confident
            # face no track explains while a track with a known appearance is missing: a re-link.
            # A one-hit track about to be confirmed while a known face is missing: it may be that
            # face, first seen too hidden to re-link.
            reacquires = any(tracks[t].state is TrackState.LOST and has_feature[t] for t in near_tracks)
            unexplained = score > s.high_score and bool(unexplained_detection[d]) and orphaned.any()
            confirming = orphaned.any() and any(not tracks[t].confirmed for t in near_tracks)
            if ambiguous and has_feature[near_tracks].any():
                wanted.append((0, -score, int(d)))
            elif reacquires or unexplained or confirming:
                wanted.append((1, -score, int(d)))
            elif not ambiguous and len(near_tracks) == 1:
                track = tracks[near_tracks[0]]
                due = now - track.feature_update >= self._refresh_period
                if (
                    track.confirmed
                    and track.state is TrackState.TRACKED
                    and due
                    and overlap[near_tracks[0], d] >= s.refresh_min_iou
                ):
                    wanted.append((2, -score, int(d)))
        wanted.sort()
        return sorted(d for _, _, d in wanted[: s.max_embeddings_per_frame])

    # -- tracking ------------------------------------------------------------------------------

    def update(self, frame: TrackerFrame) -> list[TrackAssignment]:
        s = self._settings
        detections = self._detections(frame)
        now = self._advance(frame)
        confidences = detections.confidences

        self._predict(self._camera_motion(frame), frame.steps)

        # 1-3. ByteTrack's cascade (services/tracker/cascade.py) with overlap and appearance costs.
        def associate(
            tracks: list[AppearanceTrack], candidates: IndexArray, max_iou: float, weak: bool
        ) -> Association[AppearanceTrack]:
            return self._associate(tracks, detections, candidates, max_iou)

        recently_lost = [t for t in self._lost if self._in_motion(t, now)]
        cascade = run_cascade(s, self._tracked, recently_lost, confidences, detections.usable, associate)
        matches = list(cascade.matches)
        # A one-hit track about to be confirmed may be a lost face back (its first view, half
        # hidden, was too unlike it to re-link): the lost track takes the detection and the young
        # one, never reported, goes.
        taken_tracks = {id(t) for t, _ in matches}
        young = {d: t for t, d in cascade.young.matches}
        with_vector = np.array([d for d in young if detections.has_embedding[d]], np.intp)
        for lost, d in self._relink(detections, with_vector, exclude=taken_tracks):
            lost.mean, lost.covariance = young[d].mean, young[d].covariance
            young[d].state = TrackState.REMOVED
            young[d] = lost
        matches.extend((t, d) for d, t in young.items())
        for track, d in matches:
            self._apply_match(track, detections, d)

        # 4. Re-link lost tracks by appearance alone (anywhere in the frame, within the window).
        left = cascade.young.unmatched_detections
        relinked = self._relink(detections, left[detections.has_embedding[left]])
        for track, d in relinked:
            track.mean, track.covariance = self._kalman.initiate(xyxy_to_cxcyah(detections.boxes[d]))
            self._apply_match(track, detections, d, measured=False)
        matches.extend(relinked)
        taken = {d for _, d in relinked}

        # 5. Confident detections nobody took start tracks (confirmed at once only on a sequence's first frame).
        new_tracks: list[AppearanceTrack] = []
        for d in left:
            if int(d) in taken or confidences[d] < s.new_track_score:
                continue
            track = self._start_track(detections, int(d), confirmed=self._first_update)
            new_tracks.append(track)
            matches.append((track, int(d)))

        self._tracked, self._lost = next_track_lists(
            self._tracked + self._lost,
            new_tracks,
            lambda t: (
                now - t.last_matched_update <= (self._relink_keep if t.feature is not None else self._lost_buffer)
            ),
            s.duplicate_iou,
            comparable=lambda t: self._in_motion(t, now),
            # two people in one place (one hidden behind the other), not one face twice
            distinct=lambda old, new: old.looks_unlike(new, s.appearance_veto_distance),
        )
        return confirmed_assignments(matches, detections.boxes, frame.scores)

    # -- pieces --------------------------------------------------------------------------------

    def _detections(self, frame: TrackerFrame) -> FrameView:
        return FrameView.of(frame, self._settings.high_score, self._settings.ambiguity_iou)

    def _in_motion(self, track: AppearanceTrack, now: float) -> bool:
        """Whether a track takes part in overlap matching at update `now`."""
        return track.state is TrackState.TRACKED or now - track.last_matched_update <= self._lost_buffer

    def _camera_motion(self, frame: TrackerFrame) -> FloatArray | None:
        return frame.camera_motion if self._settings.use_camera_motion else None

    def _associate(
        self, tracks: list[AppearanceTrack], detections: FrameView, candidates: IndexArray, max_iou_distance: float
    ) -> Association[AppearanceTrack]:
        s = self._settings
        iou_distance = 1.0 - iou_matrix(boxes_of(tracks), detections.boxes[candidates])
        cost = iou_distance.copy()
        appearance = appearance_distances(tracks, detections, candidates)
        known = np.isfinite(appearance)
        cost[known] = (1.0 - s.appearance_weight) * iou_distance[known] + s.appearance_weight * appearance[known]
        # The veto needs a clean view and a reason to doubt. A face emerging from behind another
        # (its box touches the other's) embeds as a mix of both, far from its own average: it keeps
        # the blended cost. A track followed until now with the only detection near it, and that
        # detection near no other track, is that face whatever its look (a head turned to profile
        # embeds far from the frontal average): doubt comes from re-acquiring a lost track or from
        # a detection or track with a rival nearby.
        clean = ~detections.touching[candidates]
        near = iou_distance < 1.0 - s.ambiguity_iou
        lost = np.array([t.state is TrackState.LOST for t in tracks], bool)
        rivalled = (near.sum(axis=0, keepdims=True) > 1) | (near.sum(axis=1, keepdims=True) > 1)
        doubt = lost[:, np.newaxis] | rivalled
        cost[known & (appearance > s.appearance_veto_distance) & clean[np.newaxis, :] & doubt] = np.inf
        cost[iou_distance > max_iou_distance] = np.inf  # the motion gate holds whatever the appearance
        return Association.solve(tracks, candidates, cost, max_iou_distance)

    def _relink(
        self, detections: FrameView, candidates: IndexArray, exclude: set[int] | None = None
    ) -> list[tuple[AppearanceTrack, int]]:
        """Lost tracks (not in `exclude`, by id()) re-attached to candidates by appearance alone."""
        s = self._settings
        now = self._clock
        lost = [
            t
            for t in self._tracked + self._lost
            if t.state is TrackState.LOST
            and t.feature is not None
            and now - t.last_matched_update <= self._relink_window
            and id(t) not in (exclude or set())
        ]
        if not lost or len(candidates) == 0:
            return []
        cost = appearance_distances(lost, detections, candidates)
        pairs, _, _ = linear_assignment(np.nan_to_num(cost, nan=np.inf), s.relink_distance)
        return [(lost[r], int(candidates[c])) for r, c in pairs]

    def _apply_match(self, track: AppearanceTrack, detections: FrameView, d: int, measured: bool = True) -> None:
        s = self._settings
        score = float(detections.confidences[d])
        if measured:
            scale = 1.0
            if s.use_nsa:
                scale = float(np.clip((1.0 - score) / max(1.0 - s.high_score, 1e-6), s.nsa_min_scale, 1.0))
            track.correct(self._kalman, detections.boxes[d], scale)
        if (vector := detections.clean_embedding(d)) is not None:
            track.observe(vector, self._settings.feature_momentum, self._clock)
        track.matched(score, self._clock)

    def _start_track(self, detections: FrameView, d: int, confirmed: bool) -> AppearanceTrack:
        score, now = float(detections.confidences[d]), self._clock
        track = AppearanceTrack.started(self._new_track_id(), self._kalman, detections.boxes[d], score, confirmed, now)
        if (vector := detections.clean_embedding(d)) is not None:
            track.observe(vector, self._settings.feature_momentum, self._clock)
        return track
