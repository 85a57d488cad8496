"""Opening and decoding videos inside the detector (paths or URLs), with errors a person can act on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.detector.sources import is_url, local_path

log = logging.getLogger(__name__)

# Container frame counts are estimates (edit lists, variable frame rate): a stream may end a little
# before the count without being damaged. Ending earlier than this is reported as truncation.
FRAME_COUNT_SLACK = 0.02
FRAME_COUNT_SLACK_MIN = 5

# Beyond 8K or 1000 fps a "video" is almost certainly a corrupt header, and decoding it would
# exhaust memory; refuse with a clear message instead.
MAX_SIDE_PX = 8192
MAX_FPS = 1000.0
MAX_FRAMES = 10_000_000


@dataclass(frozen=True)
class VideoProbe:
    uri: str
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps


def _slack(frame_count: int) -> int:
    return max(FRAME_COUNT_SLACK_MIN, int(FRAME_COUNT_SLACK * frame_count))


def display_uri(uri: str) -> str:
    """The URI without its query: presigned URLs carry credentials that must not reach logs or users."""
    return uri.split("?", 1)[0] if is_url(uri) else uri


def _open(uri: str) -> cv2.VideoCapture:
    """Open a video; errors name no path or URL (they travel to remote callers) and do not tell a
    missing file from an unreadable one."""
    if not is_url(uri):
        path = Path(local_path(uri))
        if not (path.is_file() and os.access(path, os.R_OK)):
            log.info("video not readable", extra={"uri": display_uri(uri)})
            raise NotFound("the video file does not exist or cannot be read")
        if path.stat().st_size == 0:
            raise InvalidArgument("the video file is empty (0 bytes)")
    capture = cv2.VideoCapture(local_path(uri), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise InvalidArgument("the file cannot be opened as a video (not a video, or a corrupt or truncated file)")
    return capture


def probe_video(uri: str) -> VideoProbe:
    """Open the video, read its first frame and check its header for sane values."""
    capture = _open(uri)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC) or 0)
        ok, frame = capture.read()
        # A cut-off file often keeps a valid header (frame count included) but loses its tail:
        # check that a frame near the announced end decodes, so the run fails here and not at 90%.
        tail_ok = True
        if ok and frame_count > 1:
            near_end = max(0, frame_count - 1 - _slack(frame_count))
            capture.set(cv2.CAP_PROP_POS_FRAMES, near_end)
            # FFmpeg clamps a seek past the data to the last decodable frame: check where it landed.
            tail_ok = capture.grab() and capture.get(cv2.CAP_PROP_POS_FRAMES) >= near_end
    finally:
        capture.release()
    if not ok or frame is None:
        raise InvalidArgument("the video has no decodable frame (not a video, or a corrupt or truncated file)")
    if not tail_ok:
        raise InvalidArgument(
            f"the video announces {frame_count} frames but its end cannot be decoded: the file is truncated or corrupt"
        )
    if not (0 < fps <= MAX_FPS):
        raise InvalidArgument(f"the video reports {fps:g} fps; expected a frame rate in (0, {MAX_FPS:g}]")
    if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
        raise InvalidArgument(f"the video is {width}x{height}; sides must be between 1 and {MAX_SIDE_PX} px")
    if not (0 < frame_count <= MAX_FRAMES):
        raise InvalidArgument(f"the video reports {frame_count} frames; expected 1 to {MAX_FRAMES}")
    codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") if fourcc else ""
    size = 0 if is_url(uri) else Path(local_path(uri)).stat().st_size
    return VideoProbe(uri, fps, frame_count, width, height, codec, size)


def iter_frames(uri: str, start: int, end: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, BGR frame) for start <= index < end, every `stride` frames.

    Frames are read sequentially (grab() skips without colour conversion); seeking is used only to
    reach `start`, because seeking to arbitrary frames of long-GOP video is slow and inexact.
    Raises InvalidArgument when the stream ends before `end` (a truncated or corrupt file).
    """
    capture = _open(uri)
    try:
        index = 0
        if start > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            index = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
            while index < start:  # some containers land before the asked frame
                if not capture.grab():
                    break
                index += 1
        while index < end:
            if (index - start) % stride == 0:
                ok, frame = capture.read()
                if ok:
                    yield index, frame
            else:
                ok = capture.grab()
            if not ok:
                if end - index <= _slack(end):
                    return
                if is_url(uri):
                    raise Unavailable(
                        f"reading the video stopped at frame {index} of {end}: the video source became "
                        "unreachable (or the file is truncated)"
                    )
                raise InvalidArgument(f"the video ended at frame {index} of {end}: the file is truncated or corrupt")
            index += 1
    finally:
        capture.release()
