"""Which faces of a reviewed identity are promoted into the facebank: pure functions on arrays."""

from __future__ import annotations

import numpy as np
from faceflow.v1 import common_pb2, storage_pb2

from services.cli.facebank import _origins
from services.common.alignment import ARCFACE_TEMPLATE_112
from services.orchestrator.facebank.enrolment import check_face
from services.orchestrator.facebank.face_choice import (
    MAX_REVIEW_EXEMPLARS,
    NEAR_DUPLICATE_COSINE,
    PER_CALL,
    Candidates,
    apply_cap,
    central_face,
    choose_faces,
    identity_candidates,
    near_duplicates,
    round_robin,
)

DIM = 8


def _basis(k: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[k % DIM] = 1.0
    return v


def _near(v: np.ndarray, cosine: float, k: int) -> np.ndarray:
    """A unit vector at the given cosine to unit vector v (tilted towards basis k, orthogonal to v)."""
    other = _basis(k) - float(_basis(k) @ v) * v
    other /= np.linalg.norm(other)
    return (cosine * v + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def _candidates(track: list[int], ts: list[float], quality: list[float], vectors: list[np.ndarray]) -> Candidates:
    n = len(track)
    return Candidates(
        track=np.asarray(track, np.int64),
        frame=np.round(np.asarray(ts) * 25).astype(np.int64),
        ts=np.asarray(ts, np.float64),
        quality=np.asarray(quality, np.float64),
        box=np.tile(np.array([10.0, 10.0, 110.0, 130.0]), (n, 1)),
        embedding=np.stack(vectors).astype(np.float32) if n else np.zeros((0, DIM), np.float32),
    )


def _none() -> np.ndarray:
    return np.zeros((0, DIM), np.float32)


def test_candidates_are_the_identity_s_faces_minus_those_deleted_in_review() -> None:
    rows = [
        {"row": 0, "frame": 10, "ts": 0.4, "track_id": 1, "box": [0, 0, 50, 60], "score": 0.99, "quality": 0.8},
        {"row": 1, "frame": 35, "ts": 1.4, "track_id": 1, "box": [1, 1, 51, 61], "score": 0.99, "quality": 0.7},
        {"row": 2, "frame": 10, "ts": 0.4, "track_id": 2, "box": [90, 0, 140, 60], "score": 0.99, "quality": 0.9},
        {"row": 3, "frame": 60, "ts": 2.4, "track_id": 3, "box": [0, 0, 50, 60], "score": 0.99, "quality": 0.6},
        {"row": 4, "frame": 85, "ts": 3.4, "track_id": 4, "box": [0, 0, 50, 60], "score": 0.99, "quality": 0.6},
    ]
    embeddings = np.stack([_basis(k) * (k + 1) for k in range(5)])
    got = identity_candidates(rows, embeddings, [1, 3, 4], deleted_faces={(1, 35)}, deleted_tracks={4})
    assert got.track.tolist() == [1, 3] and got.frame.tolist() == [10, 60]
    assert got.box.tolist() == [[0, 0, 50, 60], [0, 0, 50, 60]]
    np.testing.assert_array_equal(got.embedding, embeddings[[0, 3]])  # by faces.npy row, not by position
    assert len(identity_candidates(rows, embeddings, [9])) == 0


def test_round_robin_takes_the_best_face_of_every_track_before_a_second_of_any() -> None:
    track = np.array([1, 1, 1, 2, 2, 3])
    quality = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])
    # Tracks by their best face: 2 (0.95), 1 (0.9), 3 (0.5); then each one's second best.
    assert round_robin(track, quality) == [4, 0, 5, 3, 1, 2]
    assert round_robin(np.zeros(0, np.int64), np.zeros(0)) == []


def test_choice_spreads_over_tracks_and_time_and_prefers_quality() -> None:
    # Track 1 has the three best faces but two are 0.5 s apart; track 2 has one weaker face.
    vectors = [_basis(k) for k in range(5)]
    faces = _candidates([1, 1, 1, 1, 2], [0.0, 0.5, 3.0, 6.0, 1.0], [0.9, 0.89, 0.8, 0.3, 0.5], vectors)
    choice = choose_faces(faces, _none(), per_call=3)
    # Best of track 1, then track 2's only face, then track 1's best face >= 2 s from the first.
    assert choice.chosen == [0, 4, 2] and choice.rejected == []
    assert choose_faces(faces, _none(), per_call=10).chosen == [0, 4, 2, 3]  # 0.5 s: passed over, not rejected


def test_near_duplicates_of_chosen_faces_and_of_the_person_s_exemplars_are_rejected() -> None:
    a, b, c = _basis(0), _basis(1), _basis(2)
    faces = _candidates([1, 2, 3, 4], [0.0, 5.0, 10.0, 15.0], [0.9, 0.8, 0.7, 0.6], [a, _near(a, 0.97, 3), b, c])
    existing = np.stack([_near(c, 0.99, 4)])
    choice = choose_faces(faces, existing)
    assert choice.chosen == [0, 2]
    reasons = dict(choice.rejected)
    assert reasons[1].startswith("near-duplicate of track 1 frame 0")
    assert reasons[3].startswith("near-duplicate of an exemplar of the person")
    # Just below the threshold is a different look: kept.
    below = _candidates([1, 2], [0.0, 5.0], [0.9, 0.8], [a, _near(a, NEAR_DUPLICATE_COSINE - 0.01, 3)])
    assert choose_faces(below, _none()).chosen == [0, 1]


def test_the_gate_decides_and_a_near_duplicate_of_a_refused_face_gets_its_chance() -> None:
    a = _basis(0)
    # Three tracks of one look (a still photo on screen): the best face is in profile, refused.
    faces = _candidates([1, 2, 3], [0.0, 5.0, 10.0], [0.9, 0.8, 0.7], [a, _near(a, 0.99, 3), _near(a, 0.98, 4)])
    asked: list[int] = []

    def gate(i: int) -> str:
        asked.append(i)
        return "extreme pose" if i == 0 else ""

    choice = choose_faces(faces, _none(), gate)
    assert choice.chosen == [1] and asked == [0, 1]  # face 2 duplicates the chosen 1: never gated
    assert choice.rejected[0] == (0, "extreme pose") and choice.rejected[1][1].startswith("near-duplicate of track 2")
    # Every face refused: each is looked at, up to max_examined gate calls.
    refused = choose_faces(faces, _none(), lambda i: "too blurred", max_examined=2)
    assert refused.chosen == [] and refused.rejected == [(0, "too blurred"), (1, "too blurred")]


def test_faces_already_promoted_from_this_run_are_not_promoted_again() -> None:
    faces = _candidates([1, 2], [0.0, 5.0], [0.9, 0.8], [_basis(0), _basis(1)])
    choice = choose_faces(faces, _none(), already={(1, 0)})
    assert choice.chosen == [1] and choice.rejected == [(0, "already in the facebank")]


def test_at_most_per_call_faces_are_chosen_and_max_examined_looked_at() -> None:
    n = 3 * PER_CALL
    tracks, times = list(range(1, n + 1)), [float(k) for k in range(n)]
    varied = list(np.random.default_rng(0).normal(size=(n, 64)))  # random directions: no two near-duplicates
    assert (
        len(choose_faces(_candidates(tracks, times, [1 - k / n for k in range(n)], varied), _none()).chosen) == PER_CALL
    )
    # Every face a duplicate of an exemplar: the look stops after max_examined faces.
    same = _candidates(tracks, times, [0.5] * n, [_basis(0)] * n)
    choice = choose_faces(same, np.stack([_basis(0)]), max_examined=5)
    assert choice.chosen == [] and len(choice.rejected) == 5


def test_exemplars_of_another_model_are_not_compared() -> None:
    faces = _candidates([1], [0.0], [0.9], [_basis(0)])
    assert choose_faces(faces, np.zeros((0, 0), np.float32)).chosen == [0]
    assert choose_faces(faces, np.ones((1, DIM + 4), np.float32)).chosen == [0]  # other dimension: never compared


def test_after_embedding_duplicates_keep_the_better_face() -> None:
    a, b = _basis(0), _basis(1)
    vectors = np.stack([_near(a, 0.98, 2), a, b, _near(b, 0.2, 3)])
    reasons = near_duplicates(vectors, [0.5, 0.9, 0.7, 0.6], existing=np.stack([_near(b, 0.97, 4)]))
    assert set(reasons) == {0, 2}
    assert "promoted with it" in reasons[0] and "an exemplar of the person" in reasons[2]
    assert near_duplicates(np.zeros((0, DIM)), [], _none()) == {}


def test_the_cap_drops_the_lowest_quality_faces() -> None:
    assert apply_cap([0.5, 0.9, 0.7, 0.6], room=2) == ([1, 2], [0, 3])
    assert apply_cap([0.5, 0.9], room=5) == ([0, 1], [])
    assert apply_cap([0.5, 0.9], room=0) == ([], [0, 1])
    assert apply_cap([0.5], room=-3) == ([], [0])
    assert MAX_REVIEW_EXEMPLARS >= PER_CALL  # one call can fill an empty person's room


def test_the_face_of_a_review_crop_is_the_one_at_its_centre() -> None:
    # 160x200 crop: the person's face in the middle, a neighbour's cut at the edge.
    boxes = np.array([[120.0, 60.0, 160.0, 140.0], [40.0, 40.0, 120.0, 160.0]])
    assert central_face(boxes, 160, 200) == 1
    assert central_face(boxes[:1], 160, 200) is None
    # Two boxes over the centre (overlapping faces): the one centred nearest.
    assert central_face(np.array([[0.0, 0.0, 100.0, 120.0], [50.0, 60.0, 110.0, 140.0]]), 160, 200) == 1


def _face(box: list[float]) -> common_pb2.Face:
    """A frontal, sharp, well-lit aligned face detected with the given box."""
    rng = np.random.default_rng(0)
    crop = np.clip(128 + rng.normal(0, 40, (112, 112, 3)), 0, 255).astype(np.uint8)
    return common_pb2.Face(
        box=common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
        score=0.99,
        landmarks=ARCFACE_TEMPLATE_112.reshape(-1).tolist(),
        aligned_crop_bgr=crop.tobytes(),
    )


def test_the_gate_judges_a_crop_s_face_by_its_size_in_the_video() -> None:
    in_crop = [20.0, 37.0, 120.0, 162.0]  # ~125 px tall in a 160x200 review crop, whatever it was
    passed, reason = check_face(_face(in_crop))
    assert passed is not None and reason == "" and 0 < passed.quality <= 1
    # The same crop cut around a 30 px face of the video: too small to be a reference face.
    failed, reason = check_face(_face(in_crop), size_box=[500.0, 300.0, 524.0, 330.0])
    assert failed is None and "too small (24 px" in reason


def test_the_cli_counts_a_person_s_exemplars_by_origin() -> None:
    person = storage_pb2.Person(
        exemplars=[storage_pb2.Exemplar(origin="review"), storage_pb2.Exemplar(origin="seed"), storage_pb2.Exemplar()]
    )
    assert _origins(person) == "exemplars=3 (review 1, seed 2)"  # no origin: stored before origins, a seed
