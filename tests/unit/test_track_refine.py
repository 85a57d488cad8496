"""Track post-processing on synthetic face tables: splits at identity jumps, merges of fragments."""

from __future__ import annotations

import numpy as np

from services.orchestrator.analysis.face_table import FaceTable, FaceTableBuilder
from services.orchestrator.analysis.track_refine import TrackRefineSettings, refine_tracks

FPS = 25.0
DIM = 32
PEOPLE = np.linalg.qr(np.random.default_rng(0).normal(size=(DIM, DIM)))[0][:4]  # orthonormal "people"


def _vector(person: int, seed: int) -> np.ndarray:
    noisy = PEOPLE[person] + np.random.default_rng(seed).normal(scale=0.05, size=DIM)
    return noisy / np.linalg.norm(noisy)


Track = list[tuple[int, float, int]]  # (frame, x, person)


def _table(tracks: dict[int, Track], cuts: tuple[int, ...] = (), sample_every: int = 5) -> FaceTable:
    builder = FaceTableBuilder()
    rows: list[int] = []
    vectors: list[np.ndarray] = []
    for tid, faces in tracks.items():
        for frame, x, person in faces:
            row = builder.add(frame, [x, 100.0, x + 60.0, 160.0], 0.99, 0.9, [0.0] * 10, tid)
            if frame % sample_every == 0:
                rows.append(row)
                vectors.append(_vector(person, row))
    builder.frames.extend(range(0, max(f for faces in tracks.values() for f, _, _ in faces) + 1))
    builder.cut_frames.extend(cuts)
    return builder.build(np.asarray(rows, np.int64), np.asarray(vectors, np.float32))


def _ids(table: FaceTable, track_id: np.ndarray, frames: range) -> set[int]:
    return {int(t) for f, t in zip(table.frame, track_id, strict=True) if f in frames}


def test_a_track_that_jumps_to_another_person_is_split_where_its_box_jumps() -> None:
    faces = [(f, 100.0 + f, 0) for f in range(27)] + [(f, 400.0 + f, 1) for f in range(27, 60)]
    table = _table({1: faces})
    track_id, report = refine_tracks(table, FPS)
    assert _ids(table, track_id, range(27)) == {1}
    assert _ids(table, track_id, range(27, 60)) == {2}
    assert report.splits == [{"track": 1, "new_track": 2, "at_frame": 27, "distance": report.splits[0]["distance"]}]


def test_one_odd_sample_does_not_split() -> None:
    faces = [(f, 100.0 + f, 1 if f == 30 else 0) for f in range(60)]
    track_id, report = refine_tracks(_table({1: faces}), FPS)
    assert set(track_id.tolist()) == {1} and not report.splits


def test_fragments_of_one_person_in_one_shot_are_merged() -> None:
    first = [(f, 100.0 + 2 * f, 0) for f in range(20)]
    second = [(f, 100.0 + 2 * f, 0) for f in range(35, 60)]  # 0.6 s unseen, on the same path
    third = [(f, 500.0, 1) for f in range(60)]  # someone else, all along
    table = _table({1: first, 2: second, 3: third})
    track_id, report = refine_tracks(table, FPS)
    assert _ids(table, track_id, range(60)) == {1, 3}
    assert [(m["kept"], m["merged"]) for m in report.merges] == [(1, 2)]


def test_a_chain_of_three_fragments_becomes_one_track() -> None:
    tracks = {1: [(f, 100.0, 0) for f in range(0, 20)], 2: [(f, 100.0, 0) for f in range(30, 50)]}
    tracks[3] = [(f, 100.0, 0) for f in range(60, 80)]
    track_id, _ = refine_tracks(_table(tracks), FPS)
    assert set(track_id.tolist()) == {1}


def test_no_merge_across_a_cut_for_another_person_or_far_away() -> None:
    settings = TrackRefineSettings()
    across_cut = _table({1: [(f, 100.0, 0) for f in range(20)], 2: [(f, 100.0, 0) for f in range(30, 50)]}, cuts=(25,))
    assert set(refine_tracks(across_cut, FPS, settings)[0].tolist()) == {1, 2}
    other_person = _table({1: [(f, 100.0, 0) for f in range(20)], 2: [(f, 100.0, 1) for f in range(30, 50)]})
    assert set(refine_tracks(other_person, FPS, settings)[0].tolist()) == {1, 2}
    far_away = _table({1: [(f, 100.0, 0) for f in range(20)], 2: [(f, 900.0, 0) for f in range(30, 50)]})
    assert set(refine_tracks(far_away, FPS, settings)[0].tolist()) == {1, 2}
    too_late = _table({1: [(f, 100.0, 0) for f in range(20)], 2: [(f, 100.0, 0) for f in range(100, 120)]})
    assert set(refine_tracks(too_late, FPS, settings)[0].tolist()) == {1, 2}


def test_tracks_sharing_a_frame_are_never_merged() -> None:
    overlapping = _table({1: [(f, 100.0, 0) for f in range(30)], 2: [(f, 110.0, 0) for f in range(29, 60)]})
    assert set(refine_tracks(overlapping, FPS)[0].tolist()) == {1, 2}


def test_untracked_faces_and_tables_without_embeddings_are_left_alone() -> None:
    table = _table({1: [(f, 100.0, 0) for f in range(20)], 0: [(f, 300.0, 1) for f in range(20)]})
    track_id, _ = refine_tracks(table, FPS)
    assert (track_id[table.track_id == 0] == 0).all()
    bare = FaceTableBuilder()
    bare.add(0, [0.0, 0.0, 10.0, 10.0], 0.9, 0.9, [0.0] * 10, 1)
    empty = bare.build(np.zeros(0, np.int64), np.zeros((0, DIM), np.float32))
    assert refine_tracks(empty, FPS)[0].tolist() == [1]
