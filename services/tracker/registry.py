"""The trackers a session can ask for, by name."""

from __future__ import annotations

from faceflow.v1 import tracker_pb2

from services.common.errors import InvalidArgument
from services.tracker.bytetrack import ByteTracker, ByteTrackSettings

TRACKERS = ("bytetrack",)
DEFAULT_TRACKER = "bytetrack"


def make_tracker(config: tracker_pb2.TrackerConfig) -> ByteTracker:
    name = config.tracker or DEFAULT_TRACKER
    if name not in TRACKERS:
        raise InvalidArgument(f"unknown tracker {name!r}; available: {', '.join(TRACKERS)}")
    if config.fps < 0 or config.frame_stride < 0:
        raise InvalidArgument(f"fps and frame_stride must be positive, got {config.fps} and {config.frame_stride}")
    settings = ByteTrackSettings(frame_rate=config.fps or 30.0, frame_stride=config.frame_stride or 1)
    return ByteTracker(settings)
