"""Screen time: from the processed frames an identity was seen in, to time intervals on screen.

Not every frame is processed, so one sighting stands for the frames that follow it up to the next
processed frame (at most a stride: every `frame_stride`-th frame is processed, and adaptive sampling
adds frames between). Short holes (a missed detection, a face turned away for a few frames) are bridged
so one appearance stays one interval; holes across a shot cut are never bridged, because after a
cut the picture is new and absence there is real. Totals are always computed on the union of
intervals, so overlapping sightings (two tracks of one person) are never counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

Interval = tuple[float, float]

# Seconds. Frame times are frame/fps in floating point; gaps that are equal to the bridging
# threshold on paper can land a few ulps above it. A nanosecond is far below one frame.
_TIME_EPSILON_S = 1e-9


@dataclass(frozen=True)
class ScreenTimeSettings:
    """How sightings become intervals."""

    # Seconds. Holes in coverage up to this long are bridged: a detector miss on a few frames, a
    # head turn or a stride gap should not split one appearance, while a person who leaves the
    # picture and comes back after more than ~0.5 s (a cutaway, a walk behind someone) starts a
    # new interval. 0.5 s is 12-15 frames at TV frame rates, a couple of strides.
    gap_bridge_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.gap_bridge_s >= 0.0:
            raise ValueError(f"gap_bridge_s must be a non-negative number of seconds; got {self.gap_bridge_s}")


def frames_to_intervals(
    frame_indices: np.ndarray,
    fps: float,
    frame_stride: int,
    gap_bridge_s: float,
    *,
    duration_s: float | None = None,
    cut_frames: np.ndarray | None = None,
    processed_frames: np.ndarray | None = None,
) -> list[Interval]:
    """Disjoint, sorted [start, end) intervals in seconds covered by the given processed frames.

    A processed frame f covers [f/fps, (f + stride)/fps), or up to the next of `processed_frames`
    when that comes sooner: the frames skipped after it are assumed to look like it. That coverage
    is clipped at the video duration and at the next shot cut (a sighting says nothing about the
    next shot). `cut_frames` are the first frame indices of new
    shots. Neighbouring coverage separated by a hole of at most `gap_bridge_s` is bridged unless
    a cut lies between the two sightings; coverage that touches or overlaps is always joined.
    Frame indices may repeat or come unsorted (several tracks of one identity); they are sorted
    and de-duplicated first.
    """
    _check_timing(fps, frame_stride, duration_s)
    if not gap_bridge_s >= 0.0:
        raise ValueError(f"gap_bridge_s must be a non-negative number of seconds; got {gap_bridge_s}")
    frames = _frame_array(frame_indices, "frame_indices")
    if frames.size == 0:
        return []
    cuts = _frame_array(cut_frames if cut_frames is not None else np.zeros(0, dtype=np.int64), "cut_frames")

    end_frames = frames + frame_stride
    if processed_frames is not None:
        processed = _frame_array(processed_frames, "processed_frames")
        after = np.searchsorted(processed, frames, side="right")
        has_next = after < processed.size
        next_processed = processed[np.minimum(after, max(processed.size - 1, 0))] if processed.size else end_frames
        end_frames = np.where(has_next, np.minimum(end_frames, next_processed), end_frames)
    shot = np.searchsorted(cuts, frames, side="right")
    has_next_cut = shot < cuts.size
    next_cut = cuts[np.minimum(shot, max(cuts.size - 1, 0))] if cuts.size else end_frames
    end_frames = np.where(has_next_cut, np.minimum(end_frames, next_cut), end_frames)

    starts = frames / fps
    ends = end_frames / fps
    if duration_s is not None:
        ends = np.minimum(ends, duration_s)
        keep = starts < ends
        starts, ends, shot = starts[keep], ends[keep], shot[keep]
        if starts.size == 0:
            return []

    reach = np.maximum.accumulate(ends)
    holes = starts[1:] - reach[:-1]
    new_shot = shot[1:] != shot[:-1]
    splits = (holes > gap_bridge_s + _TIME_EPSILON_S) | (new_shot & (holes > _TIME_EPSILON_S))
    group_starts = np.concatenate(([0], np.flatnonzero(splits) + 1))
    group_ends = np.maximum.reduceat(ends, group_starts)
    return [(float(s), float(e)) for s, e in zip(starts[group_starts], group_ends, strict=True)]


def union_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint union of [start, end) intervals; touching intervals become one.

    Empty intervals (start == end) cover nothing and are dropped.
    """
    pairs = [(float(start), float(end)) for start, end in intervals]
    for start, end in pairs:
        if not (np.isfinite(start) and np.isfinite(end) and start <= end):
            raise ValueError(f"an interval must be finite with start <= end; got ({start}, {end})")
    merged: list[Interval] = []
    for start, end in sorted(pair for pair in pairs if pair[1] > pair[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def total_seconds(intervals: Iterable[Interval]) -> float:
    """Seconds covered by the intervals, counting overlapping time once."""
    return float(sum(end - start for start, end in union_intervals(intervals)))


def screen_time(
    identity_frames: Mapping[str, np.ndarray],
    fps: float,
    frame_stride: int,
    duration_s: float | None,
    settings: ScreenTimeSettings | None = None,
    cut_frames: np.ndarray | None = None,
    processed_frames: np.ndarray | None = None,
) -> dict[str, list[Interval]]:
    """Intervals on screen per identity, from the processed frames each identity was seen in.

    Identities whose frames all fall outside the video duration get an empty list rather than
    disappearing, so the caller sees every identity it passed in.
    """
    settings = settings or ScreenTimeSettings()
    return {
        identity: frames_to_intervals(
            frames,
            fps,
            frame_stride,
            settings.gap_bridge_s,
            duration_s=duration_s,
            cut_frames=cut_frames,
            processed_frames=processed_frames,
        )
        for identity, frames in identity_frames.items()
    }


def merge_by_label(
    intervals_by_identity: Mapping[str, list[Interval]], labels: Mapping[str, str | None]
) -> dict[str, list[Interval]]:
    """Intervals per label (person), the union over all identities carrying that label.

    One person is often split into several identities (e.g. two clusters both named after them);
    their intervals overlap whenever two of their tracks are on screen together, so they are
    unioned, never summed. Identities with no label (missing or None) are left out: they are
    reported per identity by screen_time.
    """
    grouped: dict[str, list[Interval]] = {}
    for identity, intervals in intervals_by_identity.items():
        label = labels.get(identity)
        if label is not None:
            grouped.setdefault(label, []).extend(intervals)
    return {label: union_intervals(intervals) for label, intervals in grouped.items()}


def _check_timing(fps: float, frame_stride: int, duration_s: float | None) -> None:
    if not (np.isfinite(fps) and fps > 0.0):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps}")
    if int(frame_stride) != frame_stride or frame_stride < 1:
        raise ValueError(f"frame_stride must be a positive whole number of frames; got {frame_stride}")
    if duration_s is not None and not (np.isfinite(duration_s) and duration_s >= 0.0):
        raise ValueError(f"duration_s must be a non-negative number of seconds or None; got {duration_s}")


def _frame_array(values: np.ndarray, what: str) -> np.ndarray:
    """Sorted unique non-negative int64 frame indices."""
    array = np.asarray(values).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be integer frame indices; got dtype {array.dtype}")
    array = np.unique(array.astype(np.int64))
    if array.size and array[0] < 0:
        raise ValueError(f"{what} must be non-negative frame indices; got {array[0]}")
    return array
