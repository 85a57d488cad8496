"""Segment plans: contiguous, stride-aligned, bounded in length, one overlap frame at each border."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.run.segments import SEGMENT_S, Segment, link_tracks, plan_segments


def _check_plan(plan: list[Segment], frame_count: int, stride: int) -> None:
    assert plan[0].start == 0 and plan[0].overlap_start == 0 and plan[-1].end == frame_count
    for before, after in zip(plan, plan[1:], strict=False):
        assert after.start == before.end and after.start % stride == 0
        assert after.overlap_start == after.start - stride


def test_a_short_episode_on_one_endpoint_is_one_segment() -> None:
    assert plan_segments(750, 1, 25.0, 1) == [Segment(0, 0, 750, 0)]


@pytest.mark.parametrize(("minutes", "stride"), [(5, 5), (60, 5), (44, 1), (2.5, 6)])
def test_long_episodes_are_split_even_on_one_endpoint(minutes: float, stride: int) -> None:
    fps = 25.0
    frames = int(minutes * 60 * fps)
    plan = plan_segments(frames, stride, fps, 1)
    _check_plan(plan, frames, stride)
    assert len(plan) >= minutes * 60 / SEGMENT_S
    assert max(s.end - s.start for s in plan) <= SEGMENT_S * fps + stride


def test_every_endpoint_gets_a_segment() -> None:
    plan = plan_segments(750, 2, 25.0, 3)
    _check_plan(plan, 750, 2)
    assert len(plan) == 3


def test_too_few_frames_to_split_stay_whole() -> None:
    assert plan_segments(4, 1, 25.0, 3) == [Segment(0, 0, 4, 0)]
    assert plan_segments(100, 1, 0.0, 1) == [Segment(0, 0, 100, 0)]


def test_link_tracks_joins_identical_boxes_only() -> None:
    earlier = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    later = np.array([[50, 50, 60, 60], [0, 0, 10, 12]], np.float32)
    links = link_tracks(earlier, np.array([1, 2]), later, np.array([7, 8]))
    assert links == {7: 2}  # IoU 10/12 < LINK_IOU for the second pair: not the same detection
