"""Adaptive sampling (services/detector/adaptive.py) on scripted scenes: which frames get detected."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from services.common.detections import Detections
from services.detector.adaptive import AdaptiveSampler, AdaptiveSettings, Chunk, faces_agree

# A scene: frame index -> confident face boxes. Frames are stand-in arrays holding their index.
Scene = Callable[[int], list[tuple[float, float, float, float]]]


def _box(cx: float, size: float = 60.0) -> tuple[float, float, float, float]:
    return (cx - size / 2, 100.0, cx + size / 2, 100.0 + size)


def _run(scene: Scene, frames: int, stride: int, shot_starts: Sequence[int] = ()) -> tuple[list[int], list[int]]:
    """(processed frames, cut frames) of one stream of the scene, as the detector service chunks it."""
    detected: list[int] = []

    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        out = []
        for frame in batch:
            index = int(frame[0])
            detected.append(index)
            boxes = scene(index)
            out.append(
                Detections(np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.99), np.zeros((len(boxes), 5, 2)))
            )
        return out

    def shot(index: int) -> int:
        return int(np.searchsorted(np.asarray(shot_starts), index, side="right"))

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 if shot(int(a[0])) == shot(int(b[0])) else 0.0

    sampler = AdaptiveSampler(detect, correlation, 0.45, AdaptiveSettings())
    base = list(range(0, frames, stride))
    if base[-1] != frames - 1:
        base.append(frames - 1)
    processed, cuts, previous = [], [], None
    for i in range(0, len(base), 2):
        chunk_base = base[i : i + 2]
        first = previous + 1 if previous is not None else 0
        decoded = {f: np.array([f]) for f in range(first, chunk_base[-1] + 1)}
        cut_before = {b: previous is not None and shot(b) != shot(previous) for b in chunk_base}
        for j in range(1, len(chunk_base)):
            cut_before[chunk_base[j]] = shot(chunk_base[j]) != shot(chunk_base[j - 1])
        for p in sampler.process(Chunk(decoded, chunk_base, cut_before)):
            processed.append(p.index)
            if p.cut:
                cuts.append(p.index)
        previous = chunk_base[-1]
    assert processed == sorted(set(processed)), "frames must come out once each, in order"
    assert sorted(detected) == processed, "every detected frame is emitted, and nothing twice"
    return processed, cuts


def test_a_static_scene_costs_only_the_base_frames() -> None:
    processed, cuts = _run(lambda f: [_box(200), _box(600)], 101, 10)
    assert processed == [*range(0, 101, 10)] and cuts == []


def test_the_frame_a_face_enters_is_found_by_bisection() -> None:
    processed, _ = _run(lambda f: [_box(200)] + ([_box(600)] if f >= 37 else []), 101, 10)
    extra = sorted(set(processed) - set(range(0, 101, 10)))
    assert 36 in processed and 37 in processed  # the last frame without and the first with it
    assert len(extra) <= 4  # log2(10) rounded up, not the 9 frames of the window


def test_faces_that_touch_get_every_frame_while_they_do() -> None:
    # A face walks past a static one; their boxes overlap while |x - 400| < 60 (frames ~34-66).
    def scene(f: int) -> list[tuple[float, float, float, float]]:
        return [_box(400), _box(50 + 10 * f)]

    processed, _ = _run(scene, 101, 10)
    touching = [f for f in range(101) if abs(50 + 10 * f - 400) < 60]
    assert set(touching) <= set(processed)


def test_a_fast_face_is_sampled_until_consecutive_sightings_overlap() -> None:
    # 60 px face moving 15 px/frame: 150 px per base step (no overlap at all); 2 frames apart it
    # keeps IoU 0.33 < 0.5, so the sampler goes down to every frame.
    processed, _ = _run(lambda f: [_box(100 + 15 * f)], 41, 10)
    assert processed == list(range(41))


def test_a_cut_is_located_to_the_frame_and_both_sides_are_detected() -> None:
    processed, cuts = _run(lambda f: [_box(200)] if f < 43 else [_box(800)], 101, 10, shot_starts=[43])
    assert cuts == [43] and 42 in processed and 43 in processed


def test_a_gradual_change_is_not_a_cut() -> None:
    # The base frames differ like a cut, but no two consecutive frames do (a dissolve, a fast pan).
    decoded = {f: np.array([f]) for f in range(0, 21)}

    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        return [Detections.empty() for _ in batch]

    sampler = AdaptiveSampler(detect, lambda a, b: 1.0 - abs(int(a[0]) - int(b[0])) / 10, 0.45, AdaptiveSettings())
    out = sampler.process(Chunk(decoded, [0, 10, 20], {0: False, 10: True, 20: True}))
    assert [p.index for p in out] == [0, 10, 20] and not any(p.cut for p in out)


def test_large_candidates_do_not_ask_for_frames() -> None:
    # 60 px clutter flickering below the confidence rule: no confident face changes, no extra frames.
    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        out = []
        for frame in batch:
            flicker = int(frame[0]) % 20 == 0
            boxes = [_box(200)] + ([_box(700)] if flicker else [])
            out.append(
                Detections(
                    np.array(boxes), np.full(len(boxes), 0.7), np.zeros((len(boxes), 5, 2)), [True, False][: len(boxes)]
                )
            )
        return out

    sampler = AdaptiveSampler(detect, lambda a, b: 1.0, 0.45, AdaptiveSettings())
    out = sampler.process(Chunk({f: np.array([f]) for f in range(0, 31)}, [0, 10, 20, 30], {}))
    assert [p.index for p in out] == [0, 10, 20, 30]


def test_faces_agree_needs_every_face_to_keep_overlapping_itself() -> None:
    settings = AdaptiveSettings()
    a = np.array([_box(200), _box(600)])
    assert faces_agree(a, a + [[5, 0, 5, 0]], settings)
    assert not faces_agree(a, a[:1], settings)  # one left
    assert not faces_agree(a, a + [[40, 0, 40, 0]], settings)  # moved 2/3 of its width
    touching = np.array([_box(200), _box(250)])
    assert not faces_agree(touching, touching, settings)
    assert faces_agree(np.zeros((0, 4)), np.zeros((0, 4)), settings)
    with pytest.raises(ValueError, match="follow_iou"):
        AdaptiveSettings(follow_iou=0)


def test_small_candidates_ask_for_frames() -> None:
    # A 30 px face scoring below the confidence rule, moving 6 px per frame: a real small face.
    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        return [
            Detections(np.array([_box(100 + 6 * int(f[0]), 30)]), [0.7], np.zeros((1, 5, 2)), [False]) for f in batch
        ]

    sampler = AdaptiveSampler(detect, lambda a, b: 1.0, 0.45, AdaptiveSettings())
    out = sampler.process(Chunk({f: np.array([f]) for f in range(0, 21)}, [0, 10, 20], {}))
    assert len(out) > 3


def _sized_run(face_px: float, frames: int = 121) -> dict[int, bool]:
    """frame -> detected on the reduced input, for a static 1280x720 shot with one face of face_px."""
    sizes: dict[int, bool] = {}

    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        for frame in batch:
            sizes[int(frame[0, 0])] = reduced
        box = np.array([[600, 300, 600 + face_px, 300 + face_px]])
        return [Detections(box, [0.99], np.zeros((1, 5, 2))) for _ in batch]

    sampler = AdaptiveSampler(detect, lambda a, b: 1.0, 0.45, AdaptiveSettings())
    base = list(range(0, frames, 10))
    for i in range(0, len(base), 2):
        first = base[i - 1] + 1 if i else 0
        decoded = {
            f: np.broadcast_to(np.int32(f), (720, 1280)) for f in range(first, base[min(i + 1, len(base) - 1)] + 1)
        }
        sampler.process(Chunk(decoded, base[i : i + 2], {}))
    return sizes


def test_shots_of_large_faces_run_on_the_reduced_input_with_a_full_size_frame_now_and_then() -> None:
    sizes = _sized_run(face_px=150)
    full = sorted(f for f, reduced in sizes.items() if not reduced)
    assert full == [0, 50, 100]  # the shot's first frame, then every 5th base frame
    assert all(sizes[f] for f in (10, 20, 30, 40, 60))


def test_shots_with_small_faces_stay_at_full_size() -> None:
    # 40 px at 720p is 20 px on the 640 px input: too close to the smallest anchor.
    assert not any(_sized_run(face_px=40).values())


def test_a_cut_costs_one_full_size_frame_when_both_shots_show_large_faces() -> None:
    # Two 720p shots of 150 px faces, cut at frame 43. The new shot's first frame is detected at
    # full size; the base frame after it and the old shot's last frame stay on the reduced input.
    sizes: dict[int, bool] = {}

    def detect(batch: Sequence[np.ndarray], reduced: bool) -> list[Detections]:
        for frame in batch:
            sizes[int(frame[0, 0])] = reduced
        return [Detections(np.array([[600, 300, 750, 450]]), [0.99], np.zeros((1, 5, 2))) for _ in batch]

    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 if (int(a[0, 0]) < 43) == (int(b[0, 0]) < 43) else 0.0

    sampler = AdaptiveSampler(detect, correlation, 0.45, AdaptiveSettings())
    base = list(range(0, 101, 10))
    for i in range(0, len(base), 2):
        first = base[i - 1] + 1 if i else 0
        chunk_base = base[i : i + 2]
        decoded = {f: np.broadcast_to(np.int32(f), (720, 1280)) for f in range(first, chunk_base[-1] + 1)}
        cut_before = {b: (b < 43) != ((b - 10) < 43) for b in chunk_base if b}
        out = sampler.process(Chunk(decoded, chunk_base, cut_before))
        assert all(p.cut == (p.index == 43) for p in out)
    assert sorted(f for f, reduced in sizes.items() if not reduced) == [0, 43, 90]
    assert sizes[42] and sizes[50]
