"""The whole product path on real models and real media: the `faceflow` CLI, an ephemeral stack of
the five services, the sample episode, and the evaluation against its exact ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.stack import LocalStack
from services.evaluation.metrics import evaluate
from services.evaluation.shots import FPS, SHOTS
from services.orchestrator.run.options import default_stride

pytestmark = pytest.mark.e2e
ENROLLED = {"obama": "Barack Obama", "pexels_woman": "Pexels woman", "single_face_man": "Single-face clip man"}
FRAMES = sum(shot.frames for shot in SHOTS)  # 1150: 30 s of base scenes + 16 s of occlusion scenes


def faceflow(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def sample_run(
    sample_episode: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    data = tmp_path_factory.mktemp("demo-data")
    for person_id, name in ENROLLED.items():
        images = sorted(str(p) for p in (sample_episode / "enrol" / person_id).iterdir())
        added = faceflow("--data-root", str(data), "facebank", "add", "--name", name, *images)
        assert added.returncode == 0, added.stderr
    # The default sampling (adaptive): what users run, scored on every frame like stride 1.
    run = faceflow("--data-root", str(data), "run", str(sample_episode / "episode.mp4"), "--episode", "sample")
    assert run.returncode == 0, run.stderr[-3000:]
    return data / "episodes" / "sample", run


def test_sample_episode_meets_the_acceptance_numbers(
    sample_run: tuple[Path, subprocess.CompletedProcess[str]], sample_episode: Path
) -> None:
    run_dir, _ = sample_run
    report = evaluate(run_dir, sample_episode / "ground_truth.json")
    assert report.frames_evaluated == FRAMES  # adaptive runs are scored on every frame
    # Issue #15's acceptance at the default settings (measured: recall 0.989, precision 1.000, IDF1
    # 0.967, every person within 2.1 %; stride 1: 0.984 / 1.000 / 0.966, within 1.0 %).
    assert report.recall is not None and report.recall >= 0.97, report.format_table()
    assert report.precision is not None and report.precision >= 0.95, report.format_table()
    assert report.idf1 is not None and report.idf1 >= 0.95, report.format_table()
    assert abs(report.predicted_identity_count - report.true_person_count) <= 1, report.format_table()
    assert report.tracks_spanning_cut == 0, report.format_table()
    # ByteTrack alone (--no-track-refine) would not hold these: in the same-scale crossing it swaps
    # Obama onto Biden's lost track (docs/evaluation.md). At the old uniform default (every 5th
    # frame) the small-fast Obama and the 30 px Biden lost 7 % and 15 % of their screen time.
    for person in report.persons:
        assert person.screentime_rel_error is not None and abs(person.screentime_rel_error) <= 0.03, person
        if person.person_id in ENROLLED:
            assert person.label_coverage is not None and person.label_coverage >= 0.95, person
            assert person.wrong_label_seconds == 0, person
    assert report.unenrolled_labelled_seconds == 0


def test_occlusion_scenes_are_scored_on_their_own(
    sample_run: tuple[Path, subprocess.CompletedProcess[str]], sample_episode: Path
) -> None:
    run_dir, _ = sample_run
    report = evaluate(run_dir, sample_episode / "ground_truth.json")
    occlusion = report.subsets["occlusion"]
    assert occlusion.frames_evaluated == sum(s.frames for s in SHOTS if "occlusion" in s.tags) == 500
    assert set(report.subsets) == {"occlusion", "crossing", "object", "reentry", "small-fast"}
    # Measured at the default sampling: recall 1.000, precision 1.000, IDF1 0.944; at stride 1
    # 1.000 / 1.000 / 0.947 (two
    # switches: the man who walks back in after ~2 s and the small face that comes out from behind the
    # t1 man after ~1.8 s get new ids). Before the small-fast shot, ByteTrack alone had IDF1 0.831 here
    # (4 switches); the 0.90 floor keeps the repair that track refinement does. Tracker against
    # tracker: `make bench-trackers` (docs/evaluation.md).
    assert occlusion.recall is not None and occlusion.recall >= 0.95, report.format_table()
    assert occlusion.precision is not None and occlusion.precision >= 0.95, report.format_table()
    assert occlusion.idf1 is not None and occlusion.idf1 >= 0.90, report.format_table()


def test_cli_prints_progress_and_the_screen_time_table(
    sample_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, run = sample_run
    base = len(range(0, FRAMES, default_stride(FPS)))  # progress counts the base frames
    assert "frame" in run.stderr and f"{base}/{base}" in run.stderr  # the progress bar reached the end
    assert "detector=retinaface tracker=bytetrack device=cpu" in run.stderr
    for name in ENROLLED.values():
        assert name in run.stdout


def test_output_contract(sample_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    run_dir, _ = sample_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["stride"] == default_stride(FPS) and manifest["settings"]["adaptive"] is True
    assert manifest["settings"]["tracker"] == "bytetrack"
    assert manifest["models"]["detector"]["name"] == "retinaface_mnet025" and manifest["video"]["sha256"]
    assert set(manifest["timings_s"]) >= {"detect_track_embed_s", "cluster_label_screentime_s", "write_s", "total_s"}
    rows = [line.split(",") for line in (run_dir / "tracks.mot.txt").read_text().splitlines()]
    assert rows and all(len(r) == 10 and r[7:] == ["-1", "-1", "-1"] and int(r[0]) >= 1 for r in rows)
    identities = json.loads((run_dir / "identities.json").read_text())["identities"]
    tracked = {int(r[1]) for r in rows}
    assert {t for i in identities for t in i["track_ids"]} == tracked
    screentime = json.loads((run_dir / "screentime.json").read_text())
    assert screentime["ep_id"] == "sample" and screentime["fps"] == FPS
    assert abs(screentime["duration_s"] - FRAMES / FPS) < 0.1
    for entry in screentime["identities"]:
        assert abs(sum(e - s for s, e in entry["intervals"]) - entry["seconds"]) < 0.01
    faces = [json.loads(line) for line in (run_dir / "faces.jsonl").read_text().splitlines()]
    import numpy as np

    vectors = np.load(run_dir / "faces.npy")
    assert vectors.shape == (len(faces), 512) and all(f["embedding_model"].startswith("arcface_mbf@") for f in faces)
    # detections.jsonl lists the processed frames: every base frame and the ones densified between;
    # tracks.mot.txt covers the frames between sightings too.
    processed = [json.loads(line)["frame"] for line in (run_dir / "detections.jsonl").read_text().splitlines()]
    assert processed == sorted(set(processed)) and set(range(0, FRAMES, default_stride(FPS))) <= set(processed)
    assert len(processed) < FRAMES / 2
    assert len({int(r[0]) for r in rows}) > len(processed)


def test_real_cuts_split_tracks_and_no_face_video_gives_nothing(stack: LocalStack, media: Path) -> None:
    env = {
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_DATA_ROOT": str(stack.data_root),  # this machine's user: the stack's service token
    }
    for ep_id, name in (("cut-a", "face_noface.mov"), ("cut-b", "noface_face.mov"), ("noface", "no_face.mp4")):
        run = faceflow("run", str(media / name), "--episode", ep_id, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
    for ep_id in ("cut-a", "cut-b"):
        out = stack.data_root / "episodes" / ep_id
        cuts = [
            d["frame"]
            for d in map(json.loads, (out / "detections.jsonl").read_text().splitlines())
            if d["shot_boundary"]
        ]
        assert cuts
        for track in map(json.loads, (out / "tracks.jsonl").read_text().splitlines()):
            assert not any(track["start_frame"] < c <= track["end_frame"] for c in cuts), (ep_id, track, cuts)
    out = stack.data_root / "episodes" / "noface"
    assert (out / "tracks.mot.txt").read_text() == ""
    assert json.loads((out / "screentime.json").read_text())["identities"] == []


def test_bad_input_from_the_cli(stack: LocalStack, media: Path, tmp_path: Path) -> None:
    # This machine's user, against the running stack (no FACEFLOW_TOKEN): videos are uploaded.
    env = {
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_DATA_ROOT": str(stack.data_root),
        "FACEFLOW_TOKEN": "",
    }
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((media / "WolfgangLanger_Pexels.mp4").read_bytes()[:300_000])
    cases = [
        (("run", str(tmp_path / "missing.mp4"), "--episode", "bad-1"), "does not exist"),
        (("run", str(text), "--episode", "bad-2"), "does not start like a video file"),  # uploaded, sniffed
        (("run", str(truncated), "--episode", "bad-3"), "truncated"),
        (("run", "--episode", "never-made"), "does not exist"),
        (("run", str(media / "single_face.mp4"), "--episode", "../etc"), "episode id"),
        (("run", str(media / "single_face.mp4"), "--episode", "bad-4", "--stride", "999"), "stride"),
        (("facebank", "add", "--name", "Crowd", str(media / "multi_face.jpg")), "5 faces found"),
        (("episodes", "show", "never-made"), "does not exist"),
    ]
    for args, message in cases:
        result = faceflow(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    episodes = stack.data_root / "episodes"
    assert not any((episodes / f"bad-{i}").exists() for i in (1, 2, 3))
    assert not (stack.data_root.parent / "etc").exists()
    assert not list((stack.data_root / "staging").glob("*"))  # failed uploads are discarded


def test_a_remote_user_uploads_with_a_token_and_only_admins_delete(
    stack: LocalStack, media: Path, tmp_path: Path
) -> None:
    """The CLI with FACEFLOW_TOKEN is a remote client: it streams the video (the services never open a
    path it names), and its role decides what it may do; every delete is audited with its name."""
    from services.common.local_issuer import LocalIssuer

    issuer = LocalIssuer.at(stack.data_root)
    remote = {
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_DATA_ROOT": str(tmp_path / "elsewhere"),  # another machine: no service token here
    }
    nobody = faceflow("episodes", "list", env=remote | {"FACEFLOW_TOKEN": ""})
    assert nobody.returncode == 2 and "needs credentials" in nobody.stderr and "FACEFLOW_TOKEN" in nobody.stderr

    video = tmp_path / "clip.mp4"
    video.write_bytes((media / "single_face.mp4").read_bytes())
    reviewer = remote | {"FACEFLOW_TOKEN": issuer.mint("reviewer", "rita", 600)}
    run = faceflow("run", str(video), "--episode", "remote-1", "--stride", "5", env=reviewer)
    assert run.returncode == 0, run.stderr[-2000:]
    stored = list((stack.data_root / "episodes" / "remote-1").glob("video.*"))
    assert stored and stored[0].read_bytes() == video.read_bytes()  # uploaded into the store
    video.unlink()
    rerun = faceflow("run", "--episode", "remote-1", "--stride", "5", env=reviewer)
    assert rerun.returncode == 0, rerun.stderr[-2000:]

    denied = faceflow("episodes", "delete", "remote-1", env=reviewer)
    assert denied.returncode == 2 and "rita is a reviewer; DeleteEpisode needs the admin role" in denied.stderr
    assert (stack.data_root / "episodes" / "remote-1").is_dir()

    admin = remote | {"FACEFLOW_TOKEN": issuer.mint("admin", "ada", 600)}
    deleted = faceflow("episodes", "delete", "remote-1", env=admin)
    assert deleted.returncode == 0, deleted.stderr
    assert not (stack.data_root / "episodes" / "remote-1").exists()
    audit = [
        json.loads(line)
        for line in stack.processes["storage"].log_path.read_text().splitlines()
        if '"audit"' in line and "remote-1" in line
    ]
    assert any(a.get("principal") == "ada (admin)" and a.get("local_dirs_removed") == 1 for a in audit), audit
