"""The season sample's scripts (services/evaluation/season_shots.py), checked without rendering video."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.face_quality import DEFAULT_QUALITY_SETTINGS, face_quality
from services.evaluation.compositing import CUTOUT_HALF_WIDTH_FACE_WIDTHS
from services.evaluation.hard_shots import CROWD_PEOPLE, T1_GROUP_FACES
from services.evaluation.sample_episode import SAMPLE_SCRIPT, SHOT_JITTER_PX, EpisodeScript
from services.evaluation.season_episodes import format_table
from services.evaluation.season_shots import (
    CROWD_5_CUTOUT,
    MIN_RECURRING_SECONDS,
    PROMOTED_PERSON,
    SEASON,
    SEASON_PEOPLE,
    UNKNOWN_PERSON,
    people_in,
    scripted_seconds,
)
from services.evaluation.shots import ENROLMENTS, FPS, HEIGHT, PEOPLE, PHOTO_FACES, SHOTS, WIDTH, ClipShot, PhotoShot

# The table of docs/evaluation.md#the-season-sample: true seconds on screen per person per episode.
EXPECTED_SECONDS = {
    "ep1": {"biden": 7.0, "crowd_5": 9.0, "obama": 4.0, "pexels_woman": 4.0},
    "ep2": {"biden": 8.6, "crowd_5": 8.0, "obama": 7.6, "single_face_man": 2.4},
    "ep3": {"biden": 11.0, "obama": 4.0, "pexels_woman": 3.0, "single_face_man": 2.0, "t1_standing_man": 4.0},
}
ENROLLED = {e.person_id for e in ENROLMENTS}

# Background frames known to hold no face (fps as OpenCV reads the file): the sample's and the hard
# episode's ranges; no_face.mp4 decodes 95 frames, noface_face.mov shows the single_face man from 96,
# face_noface.mov shows him up to 71 (72 is black).
FACE_FREE_BACKGROUNDS = {
    "no_face.mp4": (0, 94, 23.67),
    "noface_face.mov": (0, 80, 26.49),
    "face_noface.mov": (73, 168, 26.40),
    "bikes.mp4": (187, 236, 25.0),
    "bigbuckbunny.mp4": (0, 131, 25.0),
}
# Kinds of background: consecutive shots of one kind would hide the cut (docs/evaluation.md, shot 12).
SKY = {"no_face.mp4", "noface_face.mov", "face_noface.mov"}


def _scripts() -> list[tuple[str, EpisodeScript]]:
    return list(SEASON.items())


def _kind(shot: PhotoShot | ClipShot) -> str:
    if isinstance(shot, ClipShot):
        return f"clip:{shot.clip}"
    return "sky" if shot.background in SKY else shot.background


def test_three_episodes_of_12_to_20_s_with_4_to_6_shots() -> None:
    assert list(SEASON) == ["ep1", "ep2", "ep3"]
    for name, script in _scripts():
        total = sum(shot.frames for shot in script.shots)
        assert 12 * FPS <= total <= 20 * FPS, name
        assert 4 <= len(script.shots) <= 6, name
        assert all(shot.frames >= 2 * FPS for shot in script.shots), name  # long enough to track and sample
        kinds = [_kind(shot) for shot in script.shots]
        assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), (name, kinds)  # every cut visible


@pytest.mark.parametrize(("name", "script"), _scripts())
def test_true_seconds_per_person(name: str, script: EpisodeScript) -> None:
    assert scripted_seconds(script) == pytest.approx(EXPECTED_SECONDS[name])


def test_one_cast_and_one_facebank_for_the_season() -> None:
    ids = [p.person_id for p in SEASON_PEOPLE]
    assert len(set(ids)) == len(ids) and len({p.numeric_id for p in SEASON_PEOPLE}) == len(ids)
    assert SEASON_PEOPLE[: len(PEOPLE)] == PEOPLE  # the sample's ids and MOT ids
    assert next(p for p in SEASON_PEOPLE if p.person_id == PROMOTED_PERSON) in CROWD_PEOPLE  # the hard episode's
    for script in SEASON.values():
        assert script.people == SEASON_PEOPLE and script.enrolments == ENROLMENTS
        assert not script.effects  # clean shots: no pan, group or degradation
        on_screen = {p for shot in script.shots for p in people_in(shot)}
        assert on_screen <= set(ids)


def test_crowd_5_is_cut_from_t1_with_the_hard_episodes_annotation() -> None:
    script = SEASON["ep1"]
    assert script.photo_file(CROWD_5_CUTOUT) == "t1.jpg" and script.photo_file("biden.jpg") == "biden.jpg"
    crowd_5 = next(g.face for g in T1_GROUP_FACES if g.person_id == PROMOTED_PERSON)
    assert script.photo_faces[CROWD_5_CUTOUT] == crowd_5
    assert all(script.photo_faces[name] == face for name, face in PHOTO_FACES.items())
    actors = [a for shot in script.shots if isinstance(shot, PhotoShot) for a in shot.actors]
    assert all((a.photo == CROWD_5_CUTOUT) == (a.person_id == PROMOTED_PERSON) for a in actors)


def test_enrolled_people_are_in_at_least_two_episodes() -> None:
    for person_id in ENROLLED:
        assert sum(person_id in EXPECTED_SECONDS[name] for name in SEASON) >= 2, person_id
    used_photos = {
        script.photo_file(a.photo)
        for script in SEASON.values()
        for shot in script.shots
        if isinstance(shot, PhotoShot)
        for a in shot.actors
    }
    assert not used_photos & {e.source for e in ENROLMENTS if e.frame is None}  # obama3.jpg stays unseen


def _frontalness(person_id: str) -> float:
    """Frontalness (face_quality's, 0-1) of every photo a person is cut from in the season: the lowest."""
    values = []
    for script in SEASON.values():
        for shot in script.shots:
            for actor in shot.actors if isinstance(shot, PhotoShot) else ():
                if actor.person_id == person_id:
                    face = script.photo_faces[actor.photo]
                    crop = np.zeros((112, 112, 3), np.uint8)
                    values.append(face_quality(crop, np.array(face.box), np.array(face.landmarks), 1.0).frontalness)
    return min(values)


def test_the_unknown_person_is_in_every_episode_never_enrolled_and_frontal() -> None:
    assert UNKNOWN_PERSON not in ENROLLED
    for script in SEASON.values():
        assert scripted_seconds(script)[UNKNOWN_PERSON] >= MIN_RECURRING_SECONDS
        assert all(shot.person_id != UNKNOWN_PERSON for shot in script.shots if isinstance(shot, ClipShot))
    assert _frontalness(UNKNOWN_PERSON) >= 0.8  # embedded well


def test_the_person_to_promote_is_named_in_ep1_and_seen_again_in_ep2() -> None:
    assert PROMOTED_PERSON not in ENROLLED and PROMOTED_PERSON != UNKNOWN_PERSON
    seconds = {name: scripted_seconds(script).get(PROMOTED_PERSON, 0.0) for name, script in SEASON.items()}
    assert seconds["ep1"] >= MIN_RECURRING_SECONDS and seconds["ep2"] >= MIN_RECURRING_SECONDS
    # Fit as a reference face: facebank enrolment refuses a face below min_frontalness.
    assert _frontalness(PROMOTED_PERSON) >= 0.8 > DEFAULT_QUALITY_SETTINGS.min_frontalness


def _face_box(script: EpisodeScript, photo: str, cx: float, cy: float, height: float) -> tuple[float, ...]:
    face = script.photo_faces[photo]
    half_w = 0.5 * height * face.width / face.height
    return (cx - half_w, cy - 0.5 * height, cx + half_w, cy + 0.5 * height)


@pytest.mark.parametrize(("name", "script"), _scripts())
def test_every_face_stays_in_frame_and_uncovered(name: str, script: EpisodeScript) -> None:
    """So each person's true screen time is the length of the shots they are in (no occlusion, no exit)."""
    j = SHOT_JITTER_PX
    for shot in script.shots:
        if not isinstance(shot, PhotoShot):
            continue
        assert not shot.props
        for t in np.linspace(0, 1, 21):
            boxes = [_face_box(script, a.photo, *a.at(t)) for a in shot.actors]
            for x1, y1, x2, y2 in boxes:
                assert j <= x1 and x2 <= WIDTH - j and j <= y1 and y2 <= HEIGHT - j, (name, shot.description, t)
            for below, box in enumerate(boxes):
                for above in range(below + 1, len(boxes)):
                    cx = 0.5 * (boxes[above][0] + boxes[above][2])
                    reach = CUTOUT_HALF_WIDTH_FACE_WIDTHS * (boxes[above][2] - boxes[above][0]) + 10
                    assert box[2] < cx - reach or box[0] > cx + reach, (name, shot.description, t)


@pytest.mark.parametrize(("name", "script"), _scripts())
def test_backgrounds_stay_in_their_face_free_frames(name: str, script: EpisodeScript) -> None:
    for shot in script.shots:
        if not isinstance(shot, PhotoShot):
            continue
        first, last, fps = FACE_FREE_BACKGROUNDS[shot.background]
        end = shot.bg_start + math.floor((shot.frames - 1) * shot.bg_speed * fps / FPS + 1e-6)
        assert first <= shot.bg_start and end <= last, (name, shot.description, end)


def test_episodes_are_not_copies() -> None:
    def signature(shot: PhotoShot | ClipShot) -> tuple[object, ...]:
        if isinstance(shot, ClipShot):
            return (shot.clip, shot.start_s)
        return (shot.background, shot.bg_start, tuple((a.photo, a.keys) for a in shot.actors))

    signatures = [signature(shot) for script in SEASON.values() for shot in script.shots]
    assert len(set(signatures)) == len(signatures)
    assert not set(signatures) & {signature(shot) for shot in SHOTS}  # nor copies of the sample's shots
    # The recurring people change photo, size or place between episodes.
    for person_id in (UNKNOWN_PERSON, PROMOTED_PERSON, "obama"):
        layouts = {
            (a.photo, round(a.keys[0][3]), round(a.keys[0][1], -1))
            for script in SEASON.values()
            for shot in script.shots
            if isinstance(shot, PhotoShot)
            for a in shot.actors
            if a.person_id == person_id
        }
        assert len(layouts) >= 3, person_id


def test_format_table() -> None:
    table = format_table({"ep1": {"biden": 7.0}, "ep2": {"biden": 8.6, "obama": 4.0}})
    assert table.splitlines() == [
        "person                 ep1     ep2",
        "biden                 7.00    8.60",
        "obama                 0.00    4.00",
    ]


def test_the_sample_script_reads_photos_by_their_names() -> None:
    assert not SAMPLE_SCRIPT.photo_files
    assert all(SAMPLE_SCRIPT.photo_file(name) == name for name in PHOTO_FACES)
