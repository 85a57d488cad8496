"""Evaluation metrics on tiny hand-made ground truth and run folders, where every number is known."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from services.evaluation.metrics import EvalReport, evaluate, main

FPS = 10
FRAMES = 10
Box = tuple[float, ...]
Row = tuple[int, int, Box]  # (0-based frame, track id, x1y1x2y2)
BOX_A: Box = (10.0, 10.0, 50.0, 60.0)
BOX_B: Box = (100.0, 10.0, 140.0, 60.0)
FAR_BOX: Box = (300.0, 300.0, 340.0, 350.0)


def _write_gt(
    path: Path,
    faces: list[dict[str, Any]],
    shots: list[tuple[int, int]] | None = None,
    tags: dict[int, list[str]] | None = None,
) -> Path:
    """tags: shot index -> scene tags of that shot."""
    truth = {
        "version": 1,
        "fps": FPS,
        "frame_count": FRAMES,
        "width": 640,
        "height": 480,
        "people": [
            {"person_id": "alice", "name": "Alice Smith", "enrol_images": ["enrol/alice/a.jpg"]},
            {"person_id": "bob", "name": "Bob", "enrol_images": []},
        ],
        "shots": [
            {"start_frame": s, "end_frame": e, "description": "", "tags": (tags or {}).get(i, [])}
            for i, (s, e) in enumerate(shots or [(0, FRAMES)])
        ],
        "faces": faces,
        "screentime": {},
    }
    path.write_text(json.dumps(truth))
    return path


def _face(frame: int, person: str, box: tuple[float, ...], visible: float = 1.0) -> dict[str, Any]:
    return {"frame": frame, "person_id": person, "box": list(box), "visible_fraction": visible}


def _write_run(
    run_dir: Path,
    rows: Sequence[Row],
    identities: Sequence[tuple[str, str | None, Sequence[int]]],
    seconds: dict[str, float] | None = None,
    stride: int | None = None,
) -> Path:
    """rows: (0-based frame, track id, x1y1x2y2); identities: (id, label, track ids)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{f + 1},{t},{b[0]},{b[1]},{b[2] - b[0]},{b[3] - b[1]},0.99,-1,-1,-1" for f, t, b in rows]
    (run_dir / "tracks.mot.txt").write_text("\n".join(lines) + "\n")
    (run_dir / "identities.json").write_text(
        json.dumps(
            {"identities": [{"identity_id": i, "label": lab, "track_ids": list(ts)} for i, lab, ts in identities]}
        )
    )
    if seconds is None:
        frames: dict[str, set[int]] = {}
        track_owner = {t: i for i, _, ts in identities for t in ts}
        for f, t, _ in rows:
            frames.setdefault(track_owner[t], set()).add(f)
        seconds = {i: len(fs) * (stride or 1) / FPS for i, fs in frames.items()}
    screentime = {
        "ep_id": "ep",
        "fps": FPS,
        "duration_s": FRAMES / FPS,
        "identities": [{"identity_id": i, "label": None, "seconds": s, "intervals": []} for i, s in seconds.items()],
    }
    (run_dir / "screentime.json").write_text(json.dumps(screentime))
    if stride is not None:
        (run_dir / "manifest.json").write_text(json.dumps({"settings": {"stride": stride}}))
    return run_dir


@pytest.fixture
def two_people_gt(tmp_path: Path) -> Path:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)] + [_face(f, "bob", BOX_B) for f in range(FRAMES)]
    return _write_gt(tmp_path / "gt.json", faces)


def _perfect_rows() -> list[Row]:
    return [(f, 1, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(FRAMES)]


def test_perfect_run_scores_one(tmp_path: Path, two_people_gt: Path) -> None:
    run = _write_run(tmp_path / "run", _perfect_rows(), [("i1", "alice", [1]), ("i2", None, [2])])
    report = evaluate(run, two_people_gt)
    assert report.recall == 1.0 and report.precision == 1.0
    assert report.idf1 == pytest.approx(1.0) and report.mota == pytest.approx(1.0)
    assert report.id_switches == 0 and report.fragmentations == 0
    assert (report.true_person_count, report.predicted_identity_count) == (2, 2)
    assert report.bcubed_f == pytest.approx(1.0)
    alice = next(p for p in report.persons if p.person_id == "alice")
    assert alice.screentime_rel_error == pytest.approx(0.0) and alice.label_coverage == 1.0
    assert report.unenrolled_labelled_seconds == 0.0


def test_id_switch_halfway_is_counted(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [(f, 1 if f < FRAMES // 2 else 3, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(FRAMES)]
    run = _write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i3", None, [3]), ("i2", None, [2])])
    report = evaluate(run, two_people_gt)
    assert report.id_switches == 1
    assert report.idf1 is not None and report.idf1 < 1.0
    assert report.recall == 1.0
    # Two identities for one person: BCubed recall drops, precision stays.
    assert report.bcubed_precision == pytest.approx(1.0)
    assert report.bcubed_recall is not None and report.bcubed_recall < 1.0
    assert report.predicted_identity_count == 3


def test_missed_face_lowers_recall(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [r for r in _perfect_rows() if not (r[0] == 3 and r[1] == 1)]
    run = _write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2])])
    report = evaluate(run, two_people_gt)
    assert report.recall == pytest.approx(19 / 20)
    assert report.precision == 1.0
    assert report.fragmentations == 1


def test_false_positive_lowers_precision(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [*_perfect_rows(), (4, 9, FAR_BOX)]
    run = _write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2]), ("i9", None, [9])])
    report = evaluate(run, two_people_gt)
    assert report.recall == 1.0
    assert report.false_positives == 1
    assert report.precision == pytest.approx(20 / 21)
    assert report.mota == pytest.approx(1 - 1 / 20)


def test_badly_placed_box_is_a_miss_and_a_false_positive(tmp_path: Path, two_people_gt: Path) -> None:
    shifted: Box = (BOX_A[0] + 30, BOX_A[1], BOX_A[2] + 30, BOX_A[3])  # IoU with BOX_A = 10/70 < 0.5
    rows = [r if not (r[0] == 0 and r[1] == 1) else (0, 1, shifted) for r in _perfect_rows()]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2])]), two_people_gt)
    assert report.true_positives == 19 and report.false_positives == 1


def test_low_visibility_faces_are_neither_required_nor_penalised(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)]
    faces += [_face(f, "bob", BOX_B, visible=0.3) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces)
    # Bob, hidden, is not detected on frames 0-4 and detected on 5-9: neither counts.
    rows = [(f, 1, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(5, FRAMES)]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2])]), gt)
    assert report.gt_faces_required == FRAMES and report.gt_faces_ignored == FRAMES
    assert report.recall == 1.0 and report.precision == 1.0
    assert report.ignored_detections == 5 and report.false_positives == 0
    assert report.mota == pytest.approx(1.0)
    assert report.true_person_count == 1


def test_screentime_error_sums_the_identities_of_a_person(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [(f, 1 if f < 6 else 3, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(FRAMES)]
    seconds = {"i1": 0.6, "i3": 0.65, "i2": 0.8}  # alice GT 1.0 s -> 1.25 s; bob 1.0 s -> 0.8 s
    run = _write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i3", None, [3]), ("i2", None, [2])], seconds)
    report = evaluate(run, two_people_gt)
    alice = next(p for p in report.persons if p.person_id == "alice")
    bob = next(p for p in report.persons if p.person_id == "bob")
    assert alice.identities == ["i1", "i3"]
    assert alice.gt_seconds == pytest.approx(1.0) and alice.predicted_seconds == pytest.approx(1.25)
    assert alice.screentime_rel_error == pytest.approx(0.25)
    assert bob.screentime_rel_error == pytest.approx(-0.2)
    assert report.mean_abs_screentime_rel_error == pytest.approx(0.225)


def test_merged_identity_belongs_to_the_majority_person(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(3)] + [_face(f, "bob", BOX_B) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces)
    rows = [(f, 1, BOX_A) for f in range(3)] + [(f, 2, BOX_B) for f in range(FRAMES)]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1, 2])], {"i1": 1.3}), gt)
    alice = next(p for p in report.persons if p.person_id == "alice")
    bob = next(p for p in report.persons if p.person_id == "bob")
    assert bob.identities == ["i1"] and bob.screentime_rel_error == pytest.approx(0.3)
    assert alice.identities == [] and alice.predicted_seconds == 0.0 and alice.screentime_rel_error == -1.0
    assert report.bcubed_recall == pytest.approx(1.0)
    assert report.bcubed_precision is not None and report.bcubed_precision < 1.0


def test_labels_right_wrong_and_unenrolled(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [(f, 1 if f < 4 else 3, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(FRAMES)]
    identities = [("i1", "Alice Smith", [1]), ("i3", "carol", [3]), ("i2", "alice", [2])]
    report = evaluate(_write_run(tmp_path / "run", rows, identities), two_people_gt)
    alice = next(p for p in report.persons if p.person_id == "alice")
    assert alice.enrolled
    assert alice.label_coverage == pytest.approx(0.4)  # the name matches too, case and spaces aside
    assert alice.wrong_label_seconds == pytest.approx(0.6)
    bob = next(p for p in report.persons if p.person_id == "bob")
    assert not bob.enrolled and bob.label_coverage is None
    assert report.unenrolled_labelled_seconds == pytest.approx(1.0)  # bob was called "alice"


def test_only_strided_frames_are_scored(tmp_path: Path, two_people_gt: Path) -> None:
    rows = [r for r in _perfect_rows() if r[0] % 2 == 0]
    run = _write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2])], stride=2)
    report = evaluate(run, two_people_gt)
    assert report.stride == 2 and report.frames_evaluated == FRAMES // 2
    assert report.recall == 1.0 and report.precision == 1.0 and report.fragmentations == 0
    assert report.persons[0].screentime_rel_error == pytest.approx(0.0)


def test_tracks_are_not_expected_to_survive_a_cut(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces, shots=[(0, 5), (5, FRAMES)])
    rows = [(f, 1 if f < 5 else 2, BOX_A) for f in range(FRAMES)]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1, 2])]), gt)
    assert report.id_switches == 0 and report.idf1 == pytest.approx(1.0)
    assert report.tracks_spanning_cut == 0 and report.cut_spanning_track_ids == []


def test_a_track_carried_across_a_cut_is_counted(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)] + [_face(f, "bob", BOX_B) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces, shots=[(0, 4), (4, 7), (7, FRAMES)])
    # Track 1 runs through both cuts; bob's track 2 ends on the last frame of shot 0 and track 3 starts
    # on the first frame of shot 1 (touching the boundary from each side is not spanning it).
    rows = [(f, 1, BOX_A) for f in range(FRAMES)] + [(f, 2, BOX_B) for f in range(4)]
    rows += [(f, 3, BOX_B) for f in range(4, 7)] + [(f, 4, BOX_B) for f in range(7, FRAMES)]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2, 3, 4])]), gt)
    assert report.tracks_spanning_cut == 1 and report.cut_spanning_track_ids == [1]
    # A track seen only on strided frames still spans the cut between them.
    strided = [r for r in rows if r[0] % 3 == 0]
    report = evaluate(
        _write_run(tmp_path / "run3", strided, [("i1", None, [1]), ("i2", None, [2, 3, 4])], stride=3), gt
    )
    assert report.cut_spanning_track_ids == [1]


def test_fragmentations_count_interruptions_of_a_matched_track(tmp_path: Path, two_people_gt: Path) -> None:
    # Alice: lost on frames 2 and 5-6, same id afterwards: 2 fragmentations, no switch. Bob: lost on
    # frame 4 and back under a new id: 1 fragmentation and 1 switch.
    rows: list[Row] = [(f, 1, BOX_A) for f in range(FRAMES) if f not in (2, 5, 6)]
    rows += [(f, 2 if f < 4 else 7, BOX_B) for f in range(FRAMES) if f != 4]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2, 7])]), two_people_gt)
    assert report.fragmentations == 3
    assert report.id_switches == 1
    assert report.recall == pytest.approx(16 / 20)


def test_swapped_ids_at_a_crossing_are_two_switches(tmp_path: Path) -> None:
    # Alice walks right, Bob left; after frame 5 the tracker gives each one the other's id.
    def box(x: float) -> Box:
        return (x, 10.0, x + 40.0, 60.0)

    xs = [10.0 + 20 * f for f in range(FRAMES)]
    faces = [_face(f, "alice", box(xs[f])) for f in range(FRAMES)]
    faces += [_face(f, "bob", box(xs[FRAMES - 1 - f])) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces)
    rows: list[Row] = []
    for f in range(FRAMES):
        swapped = f >= 5
        rows += [(f, 2 if swapped else 1, box(xs[f])), (f, 1 if swapped else 2, box(xs[FRAMES - 1 - f]))]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1]), ("i2", None, [2])]), gt)
    assert report.id_switches == 2 and report.fragmentations == 0
    assert report.idf1 == pytest.approx(0.5)
    assert report.recall == 1.0 and report.mota == pytest.approx(1 - 2 / 20)


def test_tagged_scenes_get_their_own_metrics(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)] + [_face(f, "bob", BOX_B) for f in range(FRAMES)]
    # Shot 0 (frames 0-5) is an occlusion scene, shot 1 (6-9) is not; shot 1 also carries "calm".
    gt = _write_gt(tmp_path / "gt.json", faces, shots=[(0, 6), (6, FRAMES)], tags={0: ["occlusion"], 1: ["calm"]})
    # In shot 0 Alice switches id at frame 3 and Bob is missed on frame 1; shot 1 is perfect.
    rows: list[Row] = [(f, 1 if f < 3 else 3, BOX_A) for f in range(6)] + [(f, 2, BOX_B) for f in range(6) if f != 1]
    rows += [(f, 4, BOX_A) for f in range(6, FRAMES)] + [(f, 5, BOX_B) for f in range(6, FRAMES)]
    identities = [("i1", None, [1, 3, 4]), ("i2", None, [2, 5])]
    report = evaluate(_write_run(tmp_path / "run", rows, identities), gt)
    assert set(report.subsets) == {"occlusion", "calm"}
    occlusion, calm = report.subsets["occlusion"], report.subsets["calm"]
    assert (occlusion.frames_evaluated, occlusion.gt_faces_required) == (6, 12)
    assert occlusion.id_switches == 1 and occlusion.fragmentations == 1
    assert occlusion.recall == pytest.approx(11 / 12) and occlusion.idf1 is not None and occlusion.idf1 < 1.0
    assert (calm.frames_evaluated, calm.id_switches, calm.fragmentations) == (4, 0, 0)
    assert calm.recall == 1.0 and calm.idf1 == pytest.approx(1.0)
    # The whole episode counts the same events once.
    assert (report.id_switches, report.fragmentations, report.true_positives) == (1, 1, 19)
    assert report.tracks_spanning_cut == 0


def test_subsets_follow_the_stride(tmp_path: Path) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "gt.json", faces, shots=[(0, 5), (5, FRAMES)], tags={1: ["occlusion"]})
    rows: list[Row] = [(f, 1 if f < 5 else 2, BOX_A) for f in range(0, FRAMES, 2)]
    report = evaluate(_write_run(tmp_path / "run", rows, [("i1", None, [1, 2])], stride=2), gt)
    assert report.subsets["occlusion"].frames_evaluated == 2  # frames 6 and 8
    assert report.subsets["occlusion"].recall == 1.0


def test_missing_run_file_is_reported(tmp_path: Path, two_people_gt: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="tracks.mot.txt"):
        evaluate(tmp_path / "run", two_people_gt)


def test_cli_prints_table_and_json(tmp_path: Path, two_people_gt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write_run(tmp_path / "run", _perfect_rows(), [("i1", "alice", [1]), ("i2", None, [2])])
    assert main([str(run), str(two_people_gt)]) == 0
    assert "IDF1" in capsys.readouterr().out
    assert main([str(run), str(two_people_gt), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recall"] == 1.0 and len(data["persons"]) == 2
    assert data["tracks_spanning_cut"] == 0 and data["subsets"] == {}


def test_table_and_json_show_scene_subsets(
    tmp_path: Path, two_people_gt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faces = [_face(f, "alice", BOX_A) for f in range(FRAMES)]
    gt = _write_gt(tmp_path / "tagged.json", faces, shots=[(0, 5), (5, FRAMES)], tags={1: ["occlusion"]})
    run = _write_run(tmp_path / "run", [(f, 1, BOX_A) for f in range(FRAMES)], [("i1", None, [1])])
    assert main([str(run), str(gt)]) == 0
    table = capsys.readouterr().out
    assert "tracks spanning a cut 1 (tracks 1)" in table
    occlusion_line = next(line for line in table.splitlines() if line.startswith("occlusion"))
    assert occlusion_line.split()[1:3] == ["5", "5"]  # frames, required faces
    assert main([str(run), str(gt), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["subsets"]["occlusion"]["recall"] == 1.0 and data["cut_spanning_track_ids"] == [1]
    assert isinstance(evaluate(run, two_people_gt), EvalReport)


def test_table_and_json_show_screen_time_per_person(
    tmp_path: Path, two_people_gt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Alice found on half of her frames, labelled; Bob on all of his, unlabelled.
    rows = [(f, 1, BOX_A) for f in range(FRAMES // 2)] + [(f, 2, BOX_B) for f in range(FRAMES)]
    run = _write_run(tmp_path / "run", rows, [("i1", "alice", [1]), ("i2", None, [2])])
    assert main([str(run), str(two_people_gt)]) == 0
    lines = capsys.readouterr().out.splitlines()

    def row(first: str) -> list[str]:
        return next(line for line in lines if line.startswith(first)).split()

    assert " ".join(row("person")) == "person GT s pred s error % label cov wrong s identities"
    assert row("alice") == ["alice", "1.00", "0.50", "-50.0", "0.500", "0.00", "i1"]
    assert row("bob") == ["bob", "1.00", "1.00", "+0.0", "-", "-", "i2"]
    assert any(x.startswith("screen time error %   25.0 ") for x in lines)
    assert main([str(run), str(two_people_gt), "--json"]) == 0
    persons = {p["person_id"]: p for p in json.loads(capsys.readouterr().out)["persons"]}
    assert persons["alice"]["gt_seconds"] == 1.0 and persons["alice"]["predicted_seconds"] == 0.5
    assert persons["alice"]["screentime_rel_error"] == pytest.approx(-0.5)
    assert persons["alice"]["label_coverage"] == 0.5 and persons["bob"]["label_coverage"] is None
