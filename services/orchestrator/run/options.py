"""A run's options: RunOptions from the API parsed and checked once, into the RunSettings a run uses.

The tracker is the tracker service's business: its names, its default and its settings come from
TrackerService.DescribeTrackers, never from the tracker's code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from faceflow.v1 import orchestrator_pb2, tracker_pb2

from services.common.errors import InvalidArgument
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.common.sampling import MAX_STRIDE, check_stride
from services.orchestrator.analysis.backfill import BackfillSettings
from services.orchestrator.analysis.identities import ClusteringSettings
from services.orchestrator.analysis.labelling import MatchSettings
from services.orchestrator.analysis.screentime import ScreenTimeSettings
from services.orchestrator.analysis.track_refine import TrackRefineSettings
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.run.sampler import SamplerSettings

# The default sampling (no stride asked for) is adaptive: every stride-th frame at ~2.5 per second of
# video (10 at 25 fps, 12 at 29.97/30, 20 at 50), and the frames between wherever skipping them could
# lose or confuse a face: a face appearing, leaving, moving more than ~1/3 of its size or touching
# another, and both sides of a cut (services/detector/adaptive.py). Measurement then covers every
# frame (skipped ones are interpolated between sightings). 2.5/s: a TV shot lasts 2-5 s, so every
# shot gets several base frames, and a static talking head (most of TV) costs a quarter of 10/s;
# motion and crossings pay for themselves. An explicit stride samples uniformly, as asked.
DEFAULT_SAMPLES_PER_S = 2.5
AUTO_STRIDE = 0  # RunSettings.stride before the video's fps is known
DETECTORS = ("retinaface",)


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's result; recorded whole in manifest.json."""

    stride: int = AUTO_STRIDE
    # Adaptive sampling: stride is the base, densified around events. The run sets it when no stride
    # was asked for (AUTO_STRIDE), and at stride 1, where every frame is a base frame so nothing is
    # skipped and only the input size per shot applies (large-face shots on a 640 px input:
    # 1.2-1.5x faster with the same scores); another explicit stride samples every stride-th frame.
    adaptive: bool = False
    detector: str = DETECTORS[0]
    tracker: str = ""  # "": the tracker service's default (filled in when the run starts)
    det_score_threshold: float = 0.0  # 0: the detector's own default
    show_id: str = "default"
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    matching: MatchSettings = field(default_factory=MatchSettings)
    screen_time: ScreenTimeSettings = field(default_factory=ScreenTimeSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    track_refine: TrackRefineSettings = field(default_factory=TrackRefineSettings)
    refine_tracks: bool = True  # False only to measure a tracker alone (RunOptions.skip_track_refine)
    save_crops: bool = True

    @classmethod
    def from_options(cls, options: orchestrator_pb2.RunOptions, trackers: TrackerChoices | None = None) -> RunSettings:
        """The one place RunOptions are checked. With `trackers`, the tracker name is checked and an
        empty one becomes the default; without, it is left for the run to resolve."""
        stride = check_stride(options.stride, "one from the video's frame rate")
        detector = options.detector or DETECTORS[0]
        if detector not in DETECTORS:
            raise InvalidArgument(f"unknown detector {detector!r}; available: {', '.join(DETECTORS)}")
        tracker = trackers.resolve(options.tracker) if trackers is not None else options.tracker
        if not 0 <= options.det_score_threshold < 1:
            raise InvalidArgument(f"det_score_threshold must be in [0, 1), got {options.det_score_threshold}")
        if options.cluster_distance < 0 or options.cluster_distance > 2:
            raise InvalidArgument(
                f"cluster_distance must be a cosine distance in (0, 2], got {options.cluster_distance}"
            )
        clustering = ClusteringSettings()
        if options.cluster_distance:
            clustering = dataclasses.replace(clustering, distance_threshold=options.cluster_distance)
        return cls(
            stride=stride,
            detector=detector,
            tracker=tracker,
            det_score_threshold=options.det_score_threshold,
            show_id=validate_id("show", options.show_id or "default"),
            save_crops=not options.skip_crops,
            refine_tracks=not options.skip_track_refine,
            clustering=clustering,
        )

    def normalized(self, options: orchestrator_pb2.RunOptions) -> orchestrator_pb2.RunOptions:
        """`options` with the detector and tracker they resolved to, as a job records them."""
        resolved = orchestrator_pb2.RunOptions()
        resolved.CopyFrom(options)
        resolved.detector, resolved.tracker = self.detector, self.tracker
        return resolved


@dataclass(frozen=True)
class TrackerChoices:
    """The tracker service's trackers at one frame rate and stride (DescribeTrackers)."""

    default: str
    uses_appearance: dict[str, bool]
    settings: dict[str, dict[str, Any]]

    @classmethod
    def ask(cls, clients: ServiceClients, fps: float = 0.0, stride: int = 0) -> TrackerChoices:
        request = tracker_pb2.DescribeTrackersRequest(fps=fps, frame_stride=stride)
        with translate_rpc_errors("tracker"):
            described = clients.tracker.DescribeTrackers(request)
        return cls(
            described.default_tracker,
            {t.name: t.uses_appearance for t in described.trackers},
            {t.name: json.loads(t.settings_json) for t in described.trackers},
        )

    def resolve(self, name: str) -> str:
        name = name or self.default
        if name not in self.settings:
            raise InvalidArgument(f"unknown tracker {name!r}; available: {', '.join(sorted(self.settings))}")
        return name


def default_stride(fps: float) -> int:
    """The base stride of the default sampling: ~DEFAULT_SAMPLES_PER_S frames per second at `fps`."""
    return max(1, min(MAX_STRIDE, round(fps / DEFAULT_SAMPLES_PER_S))) if fps > 0 else 1


def resolve_sampling(settings: RunSettings, fps: float) -> RunSettings:
    """The settings a run uses once the video's fps is known: no stride asked for is adaptive
    sampling at the default base stride; stride 1 is adaptive too (every frame, input size per shot)."""
    if settings.stride == AUTO_STRIDE:
        return dataclasses.replace(settings, stride=default_stride(fps), adaptive=True)
    if settings.stride == 1:
        return dataclasses.replace(settings, adaptive=True)
    return settings
