"""The trackers a session can ask for, by name, each built with its settings for one stream."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faceflow.v1 import tracker_pb2

from services.common.errors import InvalidArgument
from services.common.sampling import check_stride
from services.tracker.bytetrack import ByteTracker, ByteTrackSettings
from services.tracker.interface import Tracker
from services.tracker.strongsort import StrongSortSettings, StrongSortTracker

# Frame rate assumed when a client does not say (the settings convert seconds to updates with it).
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class TrackerKind:
    """How to build one registered tracker: its settings class (a frozen dataclass with frame_rate
    and frame_stride fields) and the constructor taking them."""

    settings_type: type[Any]
    build: Callable[[Any], Tracker]
    # Whether the tracker asks for embeddings (TrackerConfig.embeddings_on_request).
    uses_appearance: bool = False


TRACKERS: dict[str, TrackerKind] = {
    "bytetrack": TrackerKind(ByteTrackSettings, ByteTracker),
    "strongsort": TrackerKind(StrongSortSettings, StrongSortTracker, uses_appearance=True),
}
DEFAULT_TRACKER = "bytetrack"


def tracker_kind(name: str) -> TrackerKind:
    kind = TRACKERS.get(name or DEFAULT_TRACKER)
    if kind is None:
        raise InvalidArgument(f"unknown tracker {name!r}; available: {', '.join(TRACKERS)}")
    return kind


def tracker_settings(name: str, fps: float, frame_stride: int) -> Any:
    """The settings a session of tracker `name` runs with at this frame rate and stride."""
    if fps < 0:
        raise InvalidArgument(f"fps must be positive, got {fps}")
    settings_type = tracker_kind(name).settings_type
    return settings_type(frame_rate=fps or DEFAULT_FPS, frame_stride=check_stride(frame_stride, "every frame") or 1)


def settings_record(name: str, fps: float, frame_stride: int) -> dict[str, Any]:
    """Name and settings as plain data, for manifests and job records."""
    return {"name": name or DEFAULT_TRACKER, **dataclasses.asdict(tracker_settings(name, fps, frame_stride))}


def describe_trackers(fps: float, frame_stride: int) -> tracker_pb2.DescribeTrackersResponse:
    """Every registered tracker with its settings at this fps and stride (DescribeTrackers)."""
    return tracker_pb2.DescribeTrackersResponse(
        default_tracker=DEFAULT_TRACKER,
        trackers=[
            tracker_pb2.TrackerDescription(
                name=name,
                uses_appearance=kind.uses_appearance,
                settings_json=json.dumps(settings_record(name, fps, frame_stride)),
            )
            for name, kind in sorted(TRACKERS.items())
        ],
    )


def make_tracker(config: tracker_pb2.TrackerConfig) -> Tracker:
    name = config.tracker or DEFAULT_TRACKER
    return tracker_kind(name).build(tracker_settings(name, config.fps, config.frame_stride))
