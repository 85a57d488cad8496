"""The sample episode generated from the real media: video, ground truth and enrolment are consistent."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from services.evaluation.sample_episode import DEFAULT_MODEL, ENROLMENTS, PHOTO_FACES, SHOTS, ClipShot, build_episode

REPO = Path(__file__).resolve().parents[2]
MEDIA = REPO / ".cache" / "faceflow" / "media"
MODEL = REPO / DEFAULT_MODEL
EPISODE_MEDIA = {*PHOTO_FACES, *(s.clip if isinstance(s, ClipShot) else s.background for s in SHOTS)}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    if not MODEL.is_file() or not all((MEDIA / name).is_file() for name in EPISODE_MEDIA):
        pytest.fail("real media or RetinaFace model missing under .cache/faceflow")
    out = tmp_path_factory.mktemp("episode")
    build_episode(MEDIA, out, seed=3, model_path=MODEL)
    return out, json.loads((out / "ground_truth.json").read_text())


def test_video_matches_ground_truth(episode: tuple[Path, dict[str, Any]]) -> None:
    out, truth = episode
    capture = cv2.VideoCapture(str(out / "episode.mp4"))
    assert capture.isOpened()
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (1280, 720)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert (truth["width"], truth["height"], truth["fps"]) == (1280, 720, 25)
    assert decoded == truth["frame_count"]
    assert 42 * 25 <= truth["frame_count"] <= 49 * 25  # 30 s of base scenes + 16 s of occlusion scenes


def test_boxes_are_inside_the_frame_and_not_degenerate(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    known = {p["person_id"] for p in truth["people"]}
    assert truth["faces"]
    for face in truth["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= truth["width"] and 0 <= y1 < y2 <= truth["height"], face
        assert x2 - x1 >= 2 and y2 - y1 >= 2, face
        assert 0.0 <= face["visible_fraction"] <= 1.0
        assert face["person_id"] in known
        assert 0 <= face["frame"] < truth["frame_count"]
    per_frame = Counter((f["frame"], f["person_id"]) for f in truth["faces"])
    assert max(per_frame.values()) == 1  # one face per person per frame


def test_episode_has_the_promised_situations(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    faces = truth["faces"]
    assert len({f["person_id"] for f in faces}) >= 4
    heights = [f["box"][3] - f["box"][1] for f in faces if f["visible_fraction"] >= 0.5]
    assert min(heights) <= 32  # a small face
    assert any(f["visible_fraction"] == 0.0 and f["box"][0] > 0 and f["box"][2] < truth["width"] for f in faces)
    assert any(f["box"][2] >= truth["width"] - 0.01 and 0 < f["visible_fraction"] < 0.5 for f in faces)
    shots_of_obama = {
        next(i for i, s in enumerate(truth["shots"]) if s["start_frame"] <= f["frame"] < s["end_frame"])
        for f in faces
        if f["person_id"] == "obama"
    }
    assert len(shots_of_obama) >= 2


def _shot_faces(truth: dict[str, Any], tag: str) -> list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]:
    """(shot, person_id -> faces in frame order) for every shot carrying `tag`."""
    result = []
    for shot in (s for s in truth["shots"] if tag in s["tags"]):
        faces: dict[str, list[dict[str, Any]]] = {}
        for face in truth["faces"]:
            if shot["start_frame"] <= face["frame"] < shot["end_frame"]:
                faces.setdefault(face["person_id"], []).append(face)
        result.append((shot, faces))
    return result


def test_occlusion_scenes_are_tagged_and_about_16_s_long(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    assert all(isinstance(s["tags"], list) for s in truth["shots"])
    occlusion = [s for s in truth["shots"] if "occlusion" in s["tags"]]
    kinds = {t for s in occlusion for t in s["tags"]} - {"occlusion"}
    assert kinds == {"crossing", "object", "reentry", "small-fast"}
    new_frames = sum(s["end_frame"] - s["start_frame"] for s in occlusion if s["start_frame"] >= 750)
    assert 14 * 25 <= new_frames <= 18 * 25
    assert all(any(t in s["tags"] for t in kinds) for s in occlusion)


def test_crossings_hide_a_face_behind_another_of_the_same_scale(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    same_scale = 0
    for shot, faces in _shot_faces(truth, "crossing"):
        assert len(faces) == 2, shot
        (a, fa), (b, fb) = faces.items()
        assert len(fa) == len(fb) == shot["end_frame"] - shot["start_frame"]  # both in frame all along
        for hidden in (fa, fb):
            vis = [f["visible_fraction"] for f in hidden]
            if min(vis) == 0.0:
                gone = vis.index(0.0)
                assert max(vis[:gone]) >= 0.5 and max(vis[gone:]) >= 0.5  # seen before and after
                assert vis.count(0.0) >= 5
        assert min(f["visible_fraction"] for f in fa + fb) == 0.0
        heights = [f["box"][3] - f["box"][1] for f in fa + fb]
        if max(heights) <= 1.1 * min(heights):
            same_scale += 1
            # The two boxes coincide at the crossing: near-identical positions as well as sizes.
            centres = [
                abs((x["box"][0] + x["box"][2]) / 2 - (y["box"][0] + y["box"][2]) / 2)
                for x, y in zip(fa, fb, strict=True)
            ]
            assert min(centres) <= 20
    assert same_scale >= 1


def test_an_object_hides_a_face_fully_and_another_partly(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    ((shot, faces),) = _shot_faces(truth, "object")
    boxes = {(f["frame"], f["person_id"]): f["box"] for person in faces.values() for f in person}
    full = partial = 0
    for person_id, person in faces.items():
        for face in person:
            others = [b for (frame, p), b in boxes.items() if frame == face["frame"] and p != person_id]
            x1, y1, x2, y2 = face["box"]
            # No other face's box overlaps: whatever hides this face is the object.
            assert not any(min(x2, o[2]) > max(x1, o[0]) and min(y2, o[3]) > max(y1, o[1]) for o in others)
            full += face["visible_fraction"] == 0.0
            partial += 0.5 <= face["visible_fraction"] < 0.7
    assert full >= 10  # a face fully covered for a while (not required)
    assert partial >= 10  # a face partly covered and still required


def test_a_person_leaves_and_re_enters_within_a_shot(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    ((shot, faces),) = _shot_faces(truth, "reentry")
    gaps = []
    for person in faces.values():
        frames = [f["frame"] for f in person]
        gaps += [b - a - 1 for a, b in zip(frames, frames[1:], strict=False) if b - a > 1]
    assert gaps and max(gaps) >= 25 * 1.5  # away for longer than a 1 s lost-track buffer
    leaving = next(p for p in faces.values() if len(p) < shot["end_frame"] - shot["start_frame"])
    assert leaving[0]["frame"] == shot["start_frame"] and leaving[-1]["frame"] == shot["end_frame"] - 1
    assert leaving[0]["visible_fraction"] >= 0.5 and leaving[-1]["visible_fraction"] >= 0.5


def test_shots_cover_all_frames_and_one_has_no_faces(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    shots = truth["shots"]
    assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == truth["frame_count"]
    for before, after in zip(shots, shots[1:], strict=False):
        assert before["end_frame"] == after["start_frame"]
        assert before["start_frame"] < before["end_frame"]
    face_frames = {f["frame"] for f in truth["faces"]}
    empty = [s for s in shots if not face_frames & set(range(s["start_frame"], s["end_frame"]))]
    assert empty


def test_enrolment_images_exist_and_are_not_episode_sources(episode: tuple[Path, dict[str, Any]]) -> None:
    out, truth = episode
    used = {hashlib.sha256((MEDIA / name).read_bytes()).hexdigest() for name in EPISODE_MEDIA}
    used_photos = [image for name in PHOTO_FACES if (image := cv2.imread(str(MEDIA / name))) is not None]
    enrollable = [p for p in truth["people"] if p["enrol_images"]]
    assert len(enrollable) >= 2 and len(enrollable) == len({e.person_id for e in ENROLMENTS})
    for person in enrollable:
        for relative in person["enrol_images"]:
            path = out / relative
            assert path.is_file() and path.parent.name == person["person_id"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() not in used
            image = cv2.imread(str(path))
            assert image is not None
            assert not any(p.shape == image.shape and np.array_equal(p, image) for p in used_photos)


def test_screentime_counts_half_visible_frames(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    fps = truth["fps"]
    counts = Counter(f["person_id"] for f in truth["faces"] if f["visible_fraction"] >= 0.5)
    assert set(truth["screentime"]) == set(counts)
    for person_id, entry in truth["screentime"].items():
        assert entry["seconds"] == pytest.approx(counts[person_id] / fps)
        assert sum(e - s for s, e in entry["intervals"]) == pytest.approx(entry["seconds"])


def test_mot_file_and_contact_sheet(episode: tuple[Path, dict[str, Any]]) -> None:
    out, truth = episode
    rows = [line.split(",") for line in (out / "gt.mot.txt").read_text().splitlines()]
    assert len(rows) == sum(1 for f in truth["faces"] if f["visible_fraction"] >= 0.5)
    assert all(len(r) == 10 and int(r[0]) >= 1 and r[6] == "1" for r in rows)
    assert cv2.imread(str(out / "contact.png")) is not None


def test_a_small_face_crosses_fast_behind_a_large_one(episode: tuple[Path, dict[str, Any]]) -> None:
    _, truth = episode
    ((shot, faces),) = _shot_faces(truth, "small-fast")
    small, large = sorted(faces.values(), key=lambda person: person[0]["box"][3] - person[0]["box"][1])
    assert all(38 <= f["box"][3] - f["box"][1] <= 42 for f in small)
    assert all(f["box"][3] - f["box"][1] >= 3 * 42 for f in large)
    # Constant speed, every frame: ~22 px per processed frame at stride 5, most of the face's width.
    centres = [(f["box"][0] + f["box"][2]) / 2 for f in small]
    steps = [b - a for a, b in zip(centres, centres[1:], strict=False)]
    assert len(steps) == shot["end_frame"] - shot["start_frame"] - 1 and 4.0 <= min(steps) <= max(steps) <= 5.0
    vis = [f["visible_fraction"] for f in small]
    hidden = [i for i, v in enumerate(vis) if v == 0.0]
    assert len(hidden) >= 25 and hidden == list(range(hidden[0], hidden[-1] + 1))  # fully behind, once
    assert min(vis[: hidden[0] - 5]) >= 0.5 and min(vis[hidden[-1] + 6 :]) >= 0.5  # seen on both sides
