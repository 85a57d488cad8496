"""The hard episode's script (services/evaluation/hard_shots.py), checked without rendering video."""

from __future__ import annotations

import numpy as np
import pytest

from services.evaluation.hard_shots import (
    BLUR_TAPS,
    CONDITIONS,
    CROWD_FACE_PX,
    HARD_PEOPLE,
    HARD_SCRIPT,
    HARD_SHOTS,
    LOW_LIGHT_GAIN,
    PAN_PX_PER_FRAME,
    compress,
    low_light,
    motion_blur,
)
from services.evaluation.sample_episode import SAMPLE_SCRIPT, Degradation
from services.evaluation.shots import ENROLMENTS, FPS, PHOTO_FACES, SHOTS, ClipShot, PhotoShot

DEGRADATIONS: tuple[Degradation, ...] = (compress, motion_blur, low_light)


def _frame(seed: int = 0) -> np.ndarray:
    """A 1280x720 frame with structure (gradients and noise), not a flat colour."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 1280, dtype=np.float32)[None, :, None]
    return np.clip(ramp + rng.normal(0, 40, (720, 1280, 3)), 0, 255).astype(np.uint8)


def test_every_condition_has_a_tagged_shot() -> None:
    tags = [tag for shot in HARD_SCRIPT.shots for tag in shot.tags]
    for condition in CONDITIONS:
        assert 1 <= tags.count(condition) <= 2, condition
    assert all(shot.tags for shot in HARD_SCRIPT.shots)  # every shot is scored under some tag


def test_durations() -> None:
    total = sum(shot.frames for shot in HARD_SCRIPT.shots)
    assert 40 * FPS <= total <= 60 * FPS
    assert all(shot.frames >= 2 * FPS for shot in HARD_SCRIPT.shots)  # long enough to track and to sample
    assert len(HARD_SCRIPT.effects) == len(HARD_SCRIPT.shots)


def _crowd_heights(t: float) -> list[float]:
    """Face heights on screen at time t of every small-crowd shot: group faces and actors."""
    heights = []
    for hard in HARD_SHOTS:
        if "small-crowd" not in hard.shot.tags:
            continue
        assert isinstance(hard.shot, PhotoShot) and hard.effects.groups
        heights += [actor.at(t)[2] for actor in hard.shot.actors]
        for group in hard.effects.groups:
            scale = group.at(t)[2] / group.faces[0].face.height
            heights += [scale * g.face.height for g in group.faces]
    return heights


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_crowd_faces_are_the_size_issue_19_reports(t: float) -> None:
    heights = _crowd_heights(t)
    assert len(heights) >= 8
    assert all(CROWD_FACE_PX[0] <= h <= CROWD_FACE_PX[1] for h in heights), heights


def test_crowd_annotates_every_person_of_the_group_photo_once() -> None:
    (group,) = next(h.effects.groups for h in HARD_SHOTS if "small-crowd" in h.shot.tags)
    ids = [g.person_id for g in group.faces]
    assert ids[0] == "t1_standing_man" and group.faces[0].face == PHOTO_FACES["t1.jpg"]
    assert sorted(ids[1:]) == [f"crowd_{i}" for i in range(1, 6)]
    lefts = [g.face.box[0] for g in group.faces[1:]]
    assert lefts == sorted(lefts)  # crowd_1..crowd_5 left to right


def test_people_and_enrolment_are_the_samples() -> None:
    ids = [p.person_id for p in HARD_PEOPLE]
    assert len(set(ids)) == len(ids) and len({p.numeric_id for p in HARD_PEOPLE}) == len(ids)
    assert HARD_SCRIPT.enrolments == ENROLMENTS and HARD_SCRIPT.photo_faces == PHOTO_FACES
    on_screen = {a.person_id for s in HARD_SCRIPT.shots if isinstance(s, PhotoShot) for a in s.actors}
    on_screen |= {s.person_id for s in HARD_SCRIPT.shots if isinstance(s, ClipShot)}
    on_screen |= {g.person_id for e in HARD_SCRIPT.effects for group in e.groups for g in group.faces}
    assert on_screen <= set(ids)
    assert {e.person_id for e in ENROLMENTS} <= on_screen  # every enrolled person is in the episode


def test_hand_stays_on_the_upper_face() -> None:
    hand_shots = [h.shot for h in HARD_SHOTS if "hand-over-face" in h.shot.tags]
    assert {round(s.actors[0].at(0.5)[2] / 30) * 30 for s in hand_shots if isinstance(s, PhotoShot)} == {30, 120}
    for shot in hand_shots:
        assert isinstance(shot, PhotoShot) and len(shot.props) == 1
        actor, prop = shot.actors[0], shot.props[0]
        assert prop.keys[0][0] == 0 and prop.keys[-1][0] == 1  # over the face for the whole shot
        for t in np.linspace(0, 1, 11):
            (fx, fy, fh), (px, py, _) = actor.at(t), prop.at(t)
            assert abs(px - fx) < 0.2 * fh and fy - 0.5 * fh < py < fy  # centred over the upper half


def test_pans_are_blurred_by_their_own_speed() -> None:
    pans = [h for h in HARD_SHOTS if "motion-blur" in h.shot.tags]
    assert pans and all(abs(h.effects.pan_px_per_frame) == PAN_PX_PER_FRAME for h in pans)
    assert all(h.effects.degrade is motion_blur for h in pans)
    assert BLUR_TAPS - 1 == PAN_PX_PER_FRAME  # the smear spans exactly one frame's motion


@pytest.mark.parametrize("degrade", DEGRADATIONS, ids=lambda d: d.__name__)
def test_degradations_are_deterministic_and_pure(degrade: Degradation) -> None:
    image = _frame()
    before = image.copy()
    first, second = degrade(image, 42), degrade(image.copy(), 42)
    assert np.array_equal(image, before)  # the input is not touched
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert not np.array_equal(first, image)


def test_low_light_is_dark_with_fresh_noise_per_frame() -> None:
    image = np.full((720, 1280, 3), 200, np.uint8)
    a, b = low_light(image, 0), low_light(image, 1)
    assert abs(float(a.mean()) - 200 * LOW_LIGHT_GAIN) < 0.5
    assert 5.0 < float(a.astype(np.float32).std()) < 7.0
    assert not np.array_equal(a, b)


def test_motion_blur_does_not_move_an_edge_centred_object() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[300:400, 600:640] = 255  # a 40 px wide bar centred on x = 620
    blurred = motion_blur(image, 0)[350, :, 0].astype(np.float64)
    centre = float((blurred * (np.arange(1280) + 0.5)).sum() / blurred.sum())
    assert centre == pytest.approx(620.0, abs=0.05)
    assert np.count_nonzero(blurred) == 40 + BLUR_TAPS - 1


def test_compression_loses_detail() -> None:
    image = _frame()
    out = compress(image, 0)
    # Noise at full resolution does not survive 1/3 resolution at quality 10.
    assert float(np.abs(np.diff(out.astype(np.float32), axis=1)).mean()) < 0.3 * float(
        np.abs(np.diff(image.astype(np.float32), axis=1)).mean()
    )


def test_the_sample_script_is_unchanged() -> None:
    assert SAMPLE_SCRIPT.shots is SHOTS and not SAMPLE_SCRIPT.effects
    assert all(e.degrade is None and not e.groups and not e.pan_px_per_frame for e in SAMPLE_SCRIPT.shot_effects())
