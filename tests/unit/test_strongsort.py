"""StrongSortTracker on synthetic scenes with synthetic embeddings: what appearance and camera motion buy.

Each person has a fixed unit vector plus per-frame noise (cosine similarity ~0.8 to their own
vector, ~0 to others'), like ArcFace on clear video faces. The driver embeds only what the tracker
asks for and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from services.tracker.bytetrack import ByteTracker, ByteTrackSettings
from services.tracker.interface import Tracker, TrackerFrame
from services.tracker.kalman import warp_states
from services.tracker.strongsort import StrongSortSettings, StrongSortTracker

FPS = 25.0
SIDE = 80.0
DIM = 128


def _box(x: float, y: float = 200.0) -> list[float]:
    return [x, y, x + SIDE, y + SIDE]


@dataclass
class Driver:
    tracker: Tracker
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    people: np.ndarray = field(default_factory=lambda: np.zeros(0))
    embedded: int = 0
    history: list[dict[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        vectors = np.random.default_rng(1).normal(size=(6, DIM))
        self.people = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def vector(self, person: int) -> np.ndarray:
        noisy = self.people[person] + self.rng.normal(scale=0.6 / np.sqrt(DIM), size=DIM)
        return noisy / np.linalg.norm(noisy)

    def step(
        self, faces: dict[str, list[float]], motion: np.ndarray | None = None, cut: bool = False
    ) -> dict[str, int]:
        if cut:
            self.tracker.reset()
        names = list(faces)
        boxes = np.array([faces[n] for n in names], float).reshape(-1, 4)
        scores = np.full(len(names), 0.95)
        frame = TrackerFrame.of(boxes, scores, camera_motion=motion)
        wanted = self.tracker.appearance_wanted(frame)
        self.embedded += len(wanted)
        person = {"a": 0, "b": 1, "c": 2}
        frame = TrackerFrame.of(
            boxes, scores, embeddings={i: self.vector(person[names[i]]) for i in wanted}, camera_motion=motion
        )
        result = {names[a.detection_index]: a.track_id for a in self.tracker.update(frame)}
        self.history.append(result)
        return result

    def ids_of(self, name: str) -> set[int]:
        return {frame[name] for frame in self.history if name in frame}


def _strongsort(**overrides: object) -> StrongSortTracker:
    return StrongSortTracker(StrongSortSettings(frame_rate=FPS, **overrides))  # type: ignore[arg-type]


def _bytetrack() -> ByteTracker:
    return ByteTracker(ByteTrackSettings(frame_rate=FPS))


def _meet_and_turn_back(driver: Driver) -> None:
    """A and B walk towards each other, meet (boxes overlap heavily) and both walk back."""
    for t in range(60):
        offset = 6.0 * (t if t < 30 else 60 - t)  # 0 -> 180 -> 0
        driver.step({"a": _box(200 + offset), "b": _box(500 - offset, 210)})


def test_two_faces_that_meet_and_turn_back_keep_their_ids() -> None:
    driver = Driver(_strongsort())
    _meet_and_turn_back(driver)
    assert len(driver.ids_of("a")) == 1 and len(driver.ids_of("b")) == 1
    assert driver.ids_of("a") != driver.ids_of("b")


def test_bytetrack_swaps_ids_when_faces_meet_and_turn_back() -> None:
    """The failure strongsort exists for: motion alone carries each id through the other face."""
    driver = Driver(_bytetrack())
    _meet_and_turn_back(driver)
    assert driver.history[-1]["a"] == driver.history[0]["b"]


def test_a_face_hidden_behind_another_for_two_seconds_is_relinked() -> None:
    """A walks behind B, stops there unseen for 2 s (past the 1 s lost buffer), comes back out the way it came."""
    driver = Driver(_strongsort())
    for t in range(20):
        driver.step({"a": _box(200 + 10 * t), "b": _box(420, 205)})
    for _ in range(50):
        driver.step({"b": _box(420, 205)})
    for t in range(20):
        driver.step({"a": _box(330 - 5 * t), "b": _box(420, 205)})
    assert len(driver.ids_of("a")) == 1 and len(driver.ids_of("b")) == 1


def test_a_person_leaving_and_re_entering_keeps_the_id() -> None:
    driver = Driver(_strongsort())
    for t in range(30):
        driver.step({"a": _box(900 + 10 * t)})  # walks out through the right border
    for _ in range(50):
        driver.step({})
    for t in range(20):
        driver.step({"a": _box(10 * t)})  # comes back in on the left 2 s later
    assert len(driver.ids_of("a")) == 1


def test_someone_else_in_the_place_of_a_lost_face_gets_a_new_id() -> None:
    driver = Driver(_strongsort())
    for _ in range(20):
        driver.step({"a": _box(300)})
    for _ in range(5):
        driver.step({})
    for _ in range(10):
        driver.step({"c": _box(300)})
    assert driver.ids_of("a").isdisjoint(driver.ids_of("c"))
    assert len(driver.ids_of("c")) == 1


def test_a_lone_face_turning_to_profile_keeps_its_id() -> None:
    """A refresh embedding far from the track's average (a profile view) is no reason to drop a face
    that motion alone explains: the veto needs doubt (a lost track or a rival nearby)."""
    tracker = _strongsort()
    frontal, profile = Driver(tracker).people[0], Driver(tracker).people[3]
    ids = set()
    for t in range(150):  # 6 s: several refreshes, the head turned from 2 s on
        box = np.array([_box(100 + t)])
        frame = TrackerFrame.of(box, [0.95])
        wanted = tracker.appearance_wanted(frame)
        look = frontal if t < 50 else profile
        frame = TrackerFrame.of(box, [0.95], embeddings={i: look for i in wanted})
        ids |= {a.track_id for a in tracker.update(frame)}
    assert len(ids) == 1


def test_embeddings_are_bounded_by_the_refresh_period_for_lone_faces() -> None:
    driver = Driver(_strongsort())
    for t in range(250):  # 10 s, two faces apart
        driver.step({"a": _box(100 + t), "b": _box(700 - t, 300)})
    assert driver.embedded <= 2 * (10 / 2.0 + 1)  # one refresh per track per 2 s


def test_max_embeddings_per_frame_caps_a_crowd() -> None:
    driver = Driver(_strongsort(max_embeddings_per_frame=2))
    names = ["a", "b", "c"]
    for t in range(60):  # apart long enough for every track to get its appearance, then squeezed together
        spacing = 200.0 if t < 50 else 30.0
        driver.step({name: _box(100 + spacing * i) for i, name in enumerate(names)})
    boxes = [_box(100 + 30.0 * i) for i in range(3)]
    wanted = driver.tracker.appearance_wanted(TrackerFrame.of(boxes, np.full(3, 0.95)))
    assert len(wanted) == 2


def test_camera_motion_keeps_a_face_through_a_jerky_pan() -> None:
    """The camera jumps 70 px left every 5th frame: the face jumps 70 px right on screen."""

    def run(use_camera_motion: bool) -> set[int]:
        driver = Driver(_strongsort(use_camera_motion=use_camera_motion, relink_window_s=0.0))
        x = 100.0
        for t in range(40):
            jump = 70.0 if t % 5 == 4 else 0.0
            x += jump
            motion = np.array([[1.0, 0.0, jump], [0.0, 1.0, 0.0]])
            driver.step({"a": _box(x)}, motion=motion)
        return driver.ids_of("a")

    assert len(run(True)) == 1
    assert len(run(False)) > 1  # without it IoU (< 0.1) cannot follow the jump


def test_a_cut_resets_strongsort() -> None:
    driver = Driver(_strongsort())
    for _ in range(10):
        driver.step({"a": _box(100)})
    before = driver.ids_of("a")
    driver.step({"a": _box(100)}, cut=True)
    driver.step({"a": _box(100)})
    assert driver.ids_of("a") - before and before < driver.ids_of("a")


def test_warp_states_moves_centres_and_scales_heights() -> None:
    mean = np.array([[100.0, 50.0, 0.8, 40.0, 2.0, 0.0, 0.0, 1.0]])
    zoom_and_shift = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, -5.0]])
    warped, covariance = warp_states(mean, np.eye(8)[np.newaxis], zoom_and_shift)
    np.testing.assert_allclose(warped[0], [210.0, 95.0, 0.8, 80.0, 4.0, 0.0, 0.0, 2.0])
    assert covariance[0, 0, 0] == pytest.approx(4.0) and covariance[0, 2, 2] == pytest.approx(1.0)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="appearance_veto_distance"):
        StrongSortSettings(appearance_veto_distance=3.0)
    with pytest.raises(ValueError, match="frame_stride"):
        StrongSortSettings(frame_stride=0)
