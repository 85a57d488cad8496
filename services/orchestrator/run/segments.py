"""Sharding one episode across detector replicas: segment plan and track stitching at the borders.

Each segment is detected and tracked independently (its own detector call and tracker session).
Every segment but the first starts one processed frame early: that overlap frame is detected by
both neighbours, so the same faces come out with identical boxes (same model, same frame) and the
tracks on either side are joined through them. The overlap frame's faces belong to the earlier
segment; the later one uses them only to link. A cut between the overlap frame and the next one is
seen by the later segment's shot detector, whose tracker then starts fresh: nothing is joined
across a cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.common.boxes import iou_matrix

# Seconds of video per segment (the default of Settings.segment_s), with one replica too: short
# enough that a replica lost mid-run (or a crash: segments are the unit of checkpoints) costs little
# rework, that replicas stay busy to the end, and that the orchestrator holds only one segment's
# sampled crops at a time (a segment's samples are embedded when it is merged, so with a single
# segment per episode memory grew with length and embedding waited for the last frame); long enough
# that the per-segment start-up (decoder seek, tracker warm-up at the border) is noise.
SEGMENT_S = 60.0
# Boxes of the same face on the overlap frame are identical from both segments; anything above
# this IoU is that face (two faces never overlap this much after NMS at 0.4).
LINK_IOU = 0.9


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # first frame owned by this segment (a multiple of the stride)
    end: int  # exclusive
    overlap_start: int  # where detection starts: one processed frame before `start` (or `start`)

    def owns(self, frame: int) -> bool:
        """Frames after the overlap frame are this segment's: with adaptive sampling that includes
        the frames densified between the overlap frame and `start` (the earlier segment stops at
        the overlap frame, its last base frame)."""
        return frame > self.overlap_start or self.overlap_start == self.start


def plan_segments(
    frame_count: int, stride: int, fps: float, endpoints: int, segment_s: float = SEGMENT_S
) -> list[Segment]:
    """At least one segment per endpoint and at most ~segment_s of video each, in processed frames."""
    processed = len(range(0, frame_count, stride))
    count = max(endpoints, math.ceil(frame_count / fps / segment_s) if fps > 0 else 1)
    if count <= 1 or processed < 2 * count:
        return [Segment(0, 0, frame_count, 0)]
    per = math.ceil(processed / count)
    starts = [i * per * stride for i in range(count) if i * per < processed]
    bounds = [*starts, frame_count]
    return [Segment(i, bounds[i], bounds[i + 1], bounds[i] - stride if i else 0) for i in range(len(starts))]


def link_tracks(
    earlier_boxes: np.ndarray, earlier_tracks: np.ndarray, later_boxes: np.ndarray, later_tracks: np.ndarray
) -> dict[int, int]:
    """later local track id -> earlier track id, for faces both segments found on the overlap frame."""
    links: dict[int, int] = {}
    keep_e, keep_l = earlier_tracks > 0, later_tracks > 0
    if not keep_e.any() or not keep_l.any():
        return links
    overlap = iou_matrix(later_boxes[keep_l], earlier_boxes[keep_e])
    later_ids, earlier_ids = later_tracks[keep_l], earlier_tracks[keep_e]
    for row in range(overlap.shape[0]):
        best = int(np.argmax(overlap[row]))
        if overlap[row, best] >= LINK_IOU:
            links[int(later_ids[row])] = int(earlier_ids[best])
    return links
