"""Unit tests for turning processed frames into on-screen intervals and per-person totals."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.analysis.screentime import (
    ScreenTimeSettings,
    frames_to_intervals,
    merge_by_label,
    screen_time,
    total_seconds,
    union_intervals,
)


def frames(*indices: int) -> np.ndarray:
    return np.array(indices, dtype=np.int64)


def approx_intervals(intervals: list[tuple[float, float]]) -> list[object]:
    return [pytest.approx(interval) for interval in intervals]


@pytest.mark.parametrize(
    ("case", "indices", "fps", "stride", "bridge", "expected"),
    [
        ("nothing seen", [], 10.0, 1, 0.5, []),
        ("one frame covers one frame", [0], 10.0, 1, 0.5, [(0.0, 0.1)]),
        ("one frame covers its stride", [10], 10.0, 5, 0.0, [(1.0, 1.5)]),
        ("consecutive strided frames touch", [0, 5, 10], 10.0, 5, 0.0, [(0.0, 1.5)]),
        ("one missed stride is bridged", [0, 5, 15], 10.0, 5, 0.5, [(0.0, 2.0)]),
        ("hole equal to the bridge is bridged", [0, 6], 10.0, 1, 0.5, [(0.0, 0.7)]),
        ("hole just above the bridge splits", [0, 7], 10.0, 1, 0.5, [(0.0, 0.1), (0.7, 0.8)]),
        ("boundary at 100 fps: equal", [0, 51], 100.0, 1, 0.5, [(0.0, 0.52)]),
        ("boundary at 100 fps: 10 ms above", [0, 52], 100.0, 1, 0.5, [(0.0, 0.01), (0.52, 0.53)]),
        ("boundary at 25 fps, stride 5", [0, 15], 25.0, 5, 0.4, [(0.0, 0.8)]),
        ("25 fps, stride 5, one frame too far", [0, 20], 25.0, 5, 0.4, [(0.0, 0.2), (0.8, 1.0)]),
        ("zero bridge keeps every hole", [0, 2, 3], 10.0, 1, 0.0, [(0.0, 0.1), (0.2, 0.4)]),
        ("unsorted and repeated frames", [5, 0, 5, 1], 10.0, 1, 0.0, [(0.0, 0.2), (0.5, 0.6)]),
        ("irregular frames overlap", [0, 3], 10.0, 5, 0.0, [(0.0, 0.8)]),
    ],
)
def test_frames_to_intervals(
    case: str, indices: list[int], fps: float, stride: int, bridge: float, expected: list[tuple[float, float]]
) -> None:
    result = frames_to_intervals(frames(*indices), fps, stride, bridge)
    assert result == approx_intervals(expected), case


@pytest.mark.parametrize(
    ("case", "indices", "stride", "cuts", "expected"),
    [
        ("a cut inside the hole stops bridging", [0, 3], 1, [2], [(0.0, 0.1), (0.3, 0.4)]),
        ("a cut at the later sighting stops bridging", [0, 3], 1, [3], [(0.0, 0.1), (0.3, 0.4)]),
        ("a cut before both sightings does not matter", [5, 8], 1, [2], [(0.5, 0.9)]),
        ("a cut after both sightings does not matter", [5, 8], 1, [20], [(0.5, 0.9)]),
        ("coverage is clipped at the next cut", [0], 5, [3], [(0.0, 0.3)]),
        ("a cut-aligned stride still touches", [0, 5], 5, [5], [(0.0, 1.0)]),
        ("clipped coverage is not bridged over a cut", [0, 5], 5, [3], [(0.0, 0.3), (0.5, 1.0)]),
        ("bridging resumes inside the next shot", [0, 10, 13], 1, [5], [(0.0, 0.1), (1.0, 1.4)]),
    ],
)
def test_cut_frames(
    case: str, indices: list[int], stride: int, cuts: list[int], expected: list[tuple[float, float]]
) -> None:
    result = frames_to_intervals(frames(*indices), 10.0, stride, 0.5, cut_frames=frames(*cuts))
    assert result == approx_intervals(expected), case


def test_coverage_is_clipped_to_the_duration() -> None:
    result = frames_to_intervals(frames(90, 95, 100, 105), 10.0, 5, 0.5, duration_s=10.2)
    assert result == approx_intervals([(9.0, 10.2)])


def test_frames_past_the_duration_cover_nothing() -> None:
    assert frames_to_intervals(frames(120), 10.0, 5, 0.5, duration_s=10.0) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"frame_stride": 0}, "frame_stride"),
        ({"frame_stride": 1.5}, "frame_stride"),
        ({"gap_bridge_s": -0.1}, "gap_bridge_s"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"frame_indices": np.array([0.5, 1.0])}, "integer"),
        ({"frame_indices": frames(-1, 2)}, "non-negative"),
        ({"cut_frames": np.array([2.0])}, "integer"),
    ],
)
def test_frames_to_intervals_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "frame_indices": frames(0, 1),
        "fps": 25.0,
        "frame_stride": 1,
        "gap_bridge_s": 0.5,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        frames_to_intervals(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "intervals", "expected"),
    [
        ("empty", [], []),
        ("disjoint stay apart", [(0.0, 1.0), (2.0, 3.0)], [(0.0, 1.0), (2.0, 3.0)]),
        ("overlapping merge", [(0.0, 2.0), (1.0, 3.0)], [(0.0, 3.0)]),
        ("touching merge", [(0.0, 1.0), (1.0, 2.0)], [(0.0, 2.0)]),
        ("nested is absorbed", [(0.0, 5.0), (1.0, 2.0)], [(0.0, 5.0)]),
        ("unsorted input", [(4.0, 5.0), (0.0, 1.0), (0.5, 2.0)], [(0.0, 2.0), (4.0, 5.0)]),
        ("empty interval dropped", [(1.0, 1.0), (2.0, 3.0)], [(2.0, 3.0)]),
        ("chain of overlaps", [(0.0, 1.0), (0.9, 2.0), (1.9, 3.0), (5.0, 6.0)], [(0.0, 3.0), (5.0, 6.0)]),
    ],
)
def test_union_intervals(case: str, intervals: list[tuple[float, float]], expected: list[tuple[float, float]]) -> None:
    assert union_intervals(intervals) == expected, case


def test_union_rejects_reversed_interval() -> None:
    with pytest.raises(ValueError, match="start <= end"):
        union_intervals([(2.0, 1.0)])


@pytest.mark.parametrize(
    ("intervals", "seconds"),
    [([], 0.0), ([(0.0, 1.5)], 1.5), ([(0.0, 2.0), (1.0, 3.0)], 3.0), ([(0.0, 1.0), (2.0, 2.5)], 1.5)],
)
def test_total_seconds_counts_overlap_once(intervals: list[tuple[float, float]], seconds: float) -> None:
    assert total_seconds(intervals) == pytest.approx(seconds)


def test_screen_time_per_identity() -> None:
    result = screen_time(
        {"a": frames(0, 5, 10), "b": frames(50, 100), "c": frames(500)},
        fps=10.0,
        frame_stride=5,
        duration_s=20.0,
        settings=ScreenTimeSettings(gap_bridge_s=0.5),
        cut_frames=frames(75),
    )
    assert result == {
        "a": approx_intervals([(0.0, 1.5)]),
        "b": approx_intervals([(5.0, 5.5), (10.0, 10.5)]),
        "c": [],
    }


def test_screen_time_default_bridges_half_a_second() -> None:
    assert ScreenTimeSettings().gap_bridge_s == 0.5
    result = screen_time({"a": frames(0, 15, 40)}, fps=25.0, frame_stride=5, duration_s=None)
    # Holes: 0.4 s (bridged) then 0.8 s (split).
    assert result["a"] == approx_intervals([(0.0, 0.8), (1.6, 1.8)])


def test_merge_by_label_unions_identities_of_one_person() -> None:
    per_identity = {
        "id0": [(0.0, 2.0), (5.0, 6.0)],
        "id1": [(1.0, 3.0)],
        "id2": [(10.0, 11.0)],
        "id3": [(0.0, 100.0)],
    }
    labels = {"id0": "Alice", "id1": "Alice", "id2": "Bob", "id3": None}
    merged = merge_by_label(per_identity, labels)
    assert merged == {"Alice": [(0.0, 3.0), (5.0, 6.0)], "Bob": [(10.0, 11.0)]}
    # Overlap is counted once: 4 s, not the 5 s a sum over identities would give.
    assert total_seconds(merged["Alice"]) == pytest.approx(4.0)
    assert sum(end - start for start, end in per_identity["id0"] + per_identity["id1"]) == pytest.approx(5.0)


def test_per_person_intervals_sum_to_the_total_of_all_sightings() -> None:
    rng = np.random.default_rng(7)
    identity_frames = {f"id{k}": np.sort(rng.choice(3000, size=200, replace=False)) for k in range(6)}
    labels = {"id0": "A", "id1": "A", "id2": "B", "id3": "B", "id4": "B", "id5": None}
    per_identity = screen_time(identity_frames, 25.0, 5, 120.0, ScreenTimeSettings(0.3))
    per_person = merge_by_label(per_identity, labels)
    for person in ("A", "B"):
        intervals = per_person[person]
        ids = [identity for identity, label in labels.items() if label == person]
        pooled = [interval for identity in ids for interval in per_identity[identity]]
        assert sum(end - start for start, end in intervals) == pytest.approx(total_seconds(pooled))
        assert all(a[1] < b[0] for a, b in zip(intervals, intervals[1:], strict=False))  # disjoint
        assert total_seconds(intervals) <= sum(total_seconds(per_identity[i]) for i in ids) + 1e-9
        assert total_seconds(intervals) >= max(total_seconds(per_identity[i]) for i in ids) - 1e-9
    assert "None" not in per_person and len(per_person) == 2


def test_screen_time_settings_validate() -> None:
    with pytest.raises(ValueError, match="gap_bridge_s"):
        ScreenTimeSettings(gap_bridge_s=-1.0)
