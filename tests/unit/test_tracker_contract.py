"""The tracker contract, run against every registered tracker (services/tracker/interface.py).

Appearance-aware trackers get what they ask for: each synthetic person has a fixed unit vector,
and the driver embeds exactly the faces a tracker wants, as the orchestrator does.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.tracker.interface import Tracker, TrackerFrame
from services.tracker.registry import TRACKERS, tracker_settings

FPS = 25.0
SIDE = 80.0  # px, synthetic face boxes


def _tracker(name: str, stride: int = 1) -> Tracker:
    return TRACKERS[name].build(tracker_settings(name, FPS, stride))


def _person_vectors(count: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


PEOPLE = _person_vectors(8)


def _box(x: float, y: float) -> list[float]:
    return [x, y, x + SIDE, y + SIDE]


Face = tuple[list[float], float, int, bool]  # box, score, person, candidate


def step(tracker: Tracker, faces: list[Face], embedded: list[int] | None = None) -> dict[int, int]:
    """One frame through appearance_wanted + update; returns {person: track id} after checking invariants."""
    boxes = np.array([f[0] for f in faces], float).reshape(-1, 4)
    scores = np.array([f[1] for f in faces], float)
    candidate = np.array([f[3] for f in faces], bool)
    probe = TrackerFrame.of(boxes, scores, candidate)
    wanted = tracker.appearance_wanted(probe)
    assert wanted == sorted(set(wanted)) and all(0 <= i < len(faces) for i in wanted)
    assert tracker.appearance_wanted(probe) == wanted, "appearance_wanted must not change the tracker's state"
    if embedded is not None:
        embedded.extend(wanted)
    frame = TrackerFrame.of(boxes, scores, candidate, {i: PEOPLE[faces[i][2]] for i in wanted})
    assignments = tracker.update(frame)
    indices = [a.detection_index for a in assignments]
    ids = [a.track_id for a in assignments]
    assert len(set(indices)) == len(indices) and len(set(ids)) == len(ids)
    assert all(i >= 1 for i in ids) and all(0 <= i < len(faces) for i in indices)
    assert indices == sorted(indices)
    for a in assignments:
        np.testing.assert_array_equal(a.box_xyxy, boxes[a.detection_index])
        assert not faces[a.detection_index][3] or a.track_id in _ever_seen(tracker), "a candidate started a track"
        _ever_seen(tracker).add(a.track_id)
    return {faces[a.detection_index][2]: a.track_id for a in assignments}


_SEEN: dict[int, set[int]] = {}


def _ever_seen(tracker: Tracker) -> set[int]:
    return _SEEN.setdefault(id(tracker), set())


@pytest.fixture(autouse=True)
def _forget_seen() -> None:
    _SEEN.clear()


parametrize = pytest.mark.parametrize("name", sorted(TRACKERS))


@parametrize
def test_registered_trackers_conform_to_the_protocol(name: str) -> None:
    tracker = _tracker(name)
    assert isinstance(tracker, Tracker)
    assert tracker.settings.frame_rate == FPS


@parametrize
def test_a_steady_face_keeps_one_id(name: str) -> None:
    tracker = _tracker(name)
    ids = {step(tracker, [(_box(100 + 2 * t, 200 + np.sin(t / 5)), 0.99, 0, False)])[0] for t in range(100)}
    assert len(ids) == 1


@parametrize
def test_two_faces_moving_apart_keep_distinct_ids(name: str) -> None:
    tracker = _tracker(name)
    seen = [
        step(tracker, [(_box(300 - 3 * t, 200), 0.99, 0, False), (_box(500 + 3 * t, 220), 0.98, 1, False)])
        for t in range(60)
    ]
    assert all(frame == seen[0] for frame in seen) and seen[0][0] != seen[0][1]


@parametrize
def test_empty_frames_are_valid_and_do_not_disturb_tracks(name: str) -> None:
    tracker = _tracker(name)
    assert step(tracker, []) == {}
    first = step(tracker, [(_box(100, 100), 0.99, 0, False)])
    assert step(tracker, []) == {}
    assert step(tracker, [(_box(102, 100), 0.99, 0, False)]) == first


@parametrize
@pytest.mark.parametrize("missing", [1, 5, 20])
def test_a_detection_set_that_vanishes_and_returns_keeps_its_ids(name: str, missing: int) -> None:
    tracker = _tracker(name)
    faces = [(_box(100, 100), 0.99, 0, False), (_box(600, 300), 0.97, 1, False)]
    before = [step(tracker, faces) for _ in range(10)][-1]
    for _ in range(missing):  # shorter than every tracker's lost buffer (1 s = 25 updates)
        assert step(tracker, []) == {}
    assert step(tracker, faces) == before


@parametrize
def test_reset_forgets_every_track_and_ids_are_never_reused(name: str) -> None:
    tracker = _tracker(name)
    used: set[int] = set()
    for round_ in range(3):
        ids = [step(tracker, [(_box(100, 100), 0.99, 0, False), (_box(400, 100), 0.99, 1, False)]) for _ in range(5)]
        current = set(ids[-1].values())
        assert len(current) == 2 and current.isdisjoint(used), f"round {round_} reused an id"
        used |= current
        tracker.reset()
    # after a reset nothing is remembered: a face appearing mid-nothing on frame 2 needs two hits again
    assert step(tracker, []) == {}
    assert step(tracker, [(_box(100, 100), 0.99, 0, False)]) == {}


@parametrize
def test_a_face_lost_for_longer_than_any_window_gets_a_new_id(name: str) -> None:
    tracker = _tracker(name)
    old = [step(tracker, [(_box(100, 100), 0.99, 0, False)]) for _ in range(5)][-1][0]
    for _ in range(int(10 * FPS)):  # 10 s: beyond every lost buffer and re-link window
        step(tracker, [])
    step(tracker, [(_box(100, 100), 0.99, 0, False)])
    new = step(tracker, [(_box(100, 100), 0.99, 0, False)])[0]
    assert new > old


@parametrize
def test_candidates_never_start_tracks(name: str) -> None:
    tracker = _tracker(name)
    for t in range(30):
        assert step(tracker, [(_box(100 + t, 100), 0.99, 0, True), (_box(500, 100), 0.7, 1, True)]) == {}


@parametrize
def test_candidates_continue_a_track(name: str) -> None:
    tracker = _tracker(name)
    track = [step(tracker, [(_box(100 + 2 * t, 100), 0.99, 0, False)]) for t in range(5)][-1][0]
    for t in range(5, 15):
        assert step(tracker, [(_box(100 + 2 * t, 100), 0.4, 0, True)]) == {0: track}


@parametrize
def test_a_new_face_mid_sequence_is_reported_from_its_second_hit(name: str) -> None:
    tracker = _tracker(name)
    step(tracker, [])
    assert step(tracker, [(_box(100, 100), 0.99, 0, False)]) == {}
    assert step(tracker, [(_box(101, 100), 0.99, 0, False)]).keys() == {0}


@parametrize
def test_stride_scales_the_lost_buffer(name: str) -> None:
    """1 s of absence is 5 updates at stride 5: a face back after 0.8 s keeps its id."""
    tracker = _tracker(name, stride=5)
    before = [step(tracker, [(_box(100, 100), 0.99, 0, False)]) for _ in range(4)][-1]
    for _ in range(4):
        step(tracker, [])
    assert step(tracker, [(_box(100, 100), 0.99, 0, False)]) == before


def test_the_registry_builds_every_tracker_with_its_settings() -> None:
    for name, kind in TRACKERS.items():
        settings = tracker_settings(name, 50.0, 2)
        assert isinstance(settings, kind.settings_type)
        assert (settings.frame_rate, settings.frame_stride) == (50.0, 2)


def _follow_uneven(name: str, even_clock: bool) -> tuple[set[int], list[int]]:
    """A 40 px face moving 1.5 px per frame, sampled every 10th frame, then every frame (adaptive
    sampling densifying around something), then every 10th again. Returns (ids, frames lost)."""
    tracker = _tracker(name, stride=10)
    frames = [*range(0, 100, 10), *range(100, 130), *range(130, 201, 10)]
    ids: set[int] = set()
    lost = []
    previous = None
    for frame in frames:
        x = 100.0 + 1.5 * frame
        steps = 1.0 if even_clock or previous is None else (frame - previous) / 10
        previous = frame
        assignments = tracker.update(TrackerFrame.of([[x, 100.0, x + 40.0, 140.0]], [0.95], steps=steps))
        ids.update(a.track_id for a in assignments)
        if not assignments:
            lost.append(frame)
    return ids, lost


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_uneven_gaps_keep_a_moving_face_on_one_track(name: str) -> None:
    """The tracker's clock moves by each gap (TrackerFrame.steps), so its velocity stays per stride
    when frames come closer."""
    ids, lost = _follow_uneven(name, even_clock=False)
    assert len(ids) == 1 and lost == []
