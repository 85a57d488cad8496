"""OrchestratorService over real gRPC, driving the real detector, embedder, tracker and storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import grpc
from faceflow.client import Client
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

from services.cli.main import build_parser
from services.cli.stack import LocalStack
from tests.contract.helpers import expect_status

SUCCEEDED = orchestrator_pb2.JOB_STATE_SUCCEEDED


def _create(stubs: dict, ep_id: str, path: Path) -> storage_pb2.Episode:
    return stubs["orchestrator"].CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_path=str(path)))


def test_run_streams_progress_and_publishes_outputs(stubs: dict, stack: LocalStack, media: Path) -> None:
    _create(stubs, "orch-single", media / "single_face.mp4")
    request = orchestrator_pb2.SubmitJobRequest(ep_id="orch-single", options=orchestrator_pb2.RunOptions(stride=2))
    progress = list(stubs["orchestrator"].RunEpisode(request))
    final = progress[-1]
    assert final.state == SUCCEEDED, final.message
    assert final.detector == "retinaface" and final.tracker == "bytetrack" and final.device == "cpu"
    tracker = json.loads(final.tracker_settings)  # the job record carries the tracker's settings
    assert tracker["name"] == "bytetrack" and tracker["frame_stride"] == 2 and tracker["lost_buffer_s"] == 1.0
    stages = [p.stage for p in progress]
    assert orchestrator_pb2.STAGE_DETECT_TRACK in stages and stages[-1] == orchestrator_pb2.STAGE_DONE
    assert final.frames_done == final.frames_total == 36
    summary = final.summary
    assert summary.tracks == 1 and summary.identities == 1 and summary.faces == 36
    assert abs(summary.screen_time[0].seconds - 2.4) < 0.05
    out = stack.data_root / "episodes" / "orch-single"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["stride"] == 2 and manifest["run_id"] == summary.run_id
    assert manifest["tracker"] == tracker and "track_refine" in manifest["settings"]
    assert manifest["models"]["detector"]["sha256"] and manifest["video"]["sha256"]
    rows = (out / "tracks.mot.txt").read_text().splitlines()
    assert len(rows) == 36 and rows[0].startswith("1,1,") and rows[1].startswith("3,1,")
    # Segment checkpoints are written as segments finish and removed before publishing: not outputs.
    assert manifest["counts"]["segments_resumed"] == 0
    assert not (out / "checkpoints").exists() and not (out / "runs" / summary.run_id / "checkpoints").exists()


def test_submit_is_idempotent_per_key_and_jobs_can_be_watched(stubs: dict, media: Path) -> None:
    _create(stubs, "orch-idem", media / "single_face.mp4")
    request = orchestrator_pb2.SubmitJobRequest(
        ep_id="orch-idem", options=orchestrator_pb2.RunOptions(stride=4), idempotency_key="key-1"
    )
    first = stubs["orchestrator"].SubmitJob(request)
    second = stubs["orchestrator"].SubmitJob(request)
    assert first.job_id == second.job_id
    final = list(stubs["orchestrator"].WatchJob(orchestrator_pb2.WatchJobRequest(job_id=first.job_id)))[-1]
    assert final.state == SUCCEEDED
    assert stubs["orchestrator"].GetJob(orchestrator_pb2.GetJobRequest(job_id=first.job_id)).progress.state == SUCCEEDED
    listed = stubs["orchestrator"].ListJobs(orchestrator_pb2.ListJobsRequest(ep_id="orch-idem")).jobs
    assert [j.job_id for j in listed] == [first.job_id]


def test_cancel_stops_a_running_job_and_keeps_previous_outputs(stubs: dict, stack: LocalStack, media: Path) -> None:
    _create(stubs, "orch-cancel", media / "WolfgangLanger_Pexels.mp4")
    job = stubs["orchestrator"].SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id="orch-cancel"))
    for progress in stubs["orchestrator"].WatchJob(orchestrator_pb2.WatchJobRequest(job_id=job.job_id)):
        if progress.frames_done > 0:
            stubs["orchestrator"].CancelJob(orchestrator_pb2.CancelJobRequest(job_id=job.job_id))
    final = stubs["orchestrator"].GetJob(orchestrator_pb2.GetJobRequest(job_id=job.job_id))
    assert final.progress.state == orchestrator_pb2.JOB_STATE_CANCELLED
    assert not (stack.data_root / "episodes" / "orch-cancel" / "manifest.json").exists()
    # No leftovers: the run that will never be published (its checkpoints, its crops) is gone.
    assert job.run_id and not (stack.data_root / "episodes" / "orch-cancel" / "runs" / job.run_id).exists()


def test_bad_requests_fail_before_any_work(stubs: dict, stack: LocalStack, media: Path, tmp_path: Path) -> None:
    orch = stubs["orchestrator"]
    not_video = tmp_path / "notes.txt"
    not_video.write_text("hello\n")
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _create(stubs, "orch-bad", not_video), "video")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _create(stubs, "orch-bad", zero), "empty")
    expect_status(
        grpc.StatusCode.NOT_FOUND, lambda: _create(stubs, "orch-bad", tmp_path / "missing.mp4"), "does not exist"
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: _create(stubs, "../escape", media / "single_face.mp4"), "episode id"
    )
    assert not (stack.data_root / "episodes" / "orch-bad").exists()
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: orch.SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id="never-created")),
        "does not exist",
    )
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: orch.RunEpisode(orchestrator_pb2.SubmitJobRequest(ep_id="never-created")),
        "does not exist",
    )
    _create(stubs, "orch-opts", media / "single_face.mp4")
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: orch.SubmitJob(
            orchestrator_pb2.SubmitJobRequest(ep_id="orch-opts", options=orchestrator_pb2.RunOptions(stride=1000))
        ),
        "stride",
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: orch.SubmitJob(
            orchestrator_pb2.SubmitJobRequest(ep_id="orch-opts", options=orchestrator_pb2.RunOptions(tracker="nope"))
        ),
        "tracker",
    )
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: orch.GetJob(orchestrator_pb2.GetJobRequest(job_id="job-404")))
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: orch.GetJob(orchestrator_pb2.GetJobRequest(job_id="../x")))


def test_enrolment_gates_seed_images_with_reasons(stubs: dict, media: Path) -> None:
    orch = stubs["orchestrator"]
    seed = orchestrator_pb2.EnrollPersonRequest.SeedImage
    response = orch.EnrollPerson(
        orchestrator_pb2.EnrollPersonRequest(
            show_id="contract",
            name="Barack Obama",
            images=[
                seed(name="obama3.jpg", data=(media / "obama3.jpg").read_bytes()),
                seed(name="group.jpg", data=(media / "multi_face.jpg").read_bytes()),
            ],
        )
    )
    assert response.person.person_id == "barack-obama" and len(response.person.exemplars) == 1
    assert response.person.exemplars[0].model_id.startswith("arcface_mbf@")
    assert [(r.name, "5 faces" in r.reason) for r in response.rejected] == [("group.jpg", True)]
    capture = cv2.VideoCapture(str(media / "no_face.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    no_face_jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    detail = expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: orch.EnrollPerson(
            orchestrator_pb2.EnrollPersonRequest(
                show_id="contract",
                name="Nobody",
                images=[seed(name="text.jpg", data=b"not an image"), seed(name="street.jpg", data=no_face_jpeg)],
            )
        ),
    )
    assert "text.jpg: the data is not a decodable image" in detail and "street.jpg: no face found" in detail
    people = stubs["storage"].ListPeople(storage_pb2.ListPeopleRequest(show_id="contract")).people
    assert [p.name for p in people] == ["Barack Obama"]


def _upload(stubs: dict, ep_id: str, data: bytes, filename: str = "clip.mp4") -> storage_pb2.Episode:
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id=ep_id, filename=filename)
    messages = [orchestrator_pb2.UploadEpisodeRequest(header=header)] + [
        orchestrator_pb2.UploadEpisodeRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)
    ]
    return stubs["orchestrator"].UploadEpisode(iter(messages))


def test_streamed_upload_becomes_an_episode_and_bad_uploads_leave_nothing(
    stubs: dict, stack: LocalStack, media: Path
) -> None:
    data = (media / "single_face.mp4").read_bytes()
    episode = _upload(stubs, "uploaded-1", data)
    assert Path(episode.video_uri).read_bytes() == data and episode.video.frame_count == 72
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: _upload(stubs, "uploaded-2", b"not a video" * 1000),
        "does not start like a video file",
    )
    # Starts like an MP4 but is not one: the detector's probe decides, and the message names no path.
    details = expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: _upload(stubs, "uploaded-2", data[:4000]), "not a readable video"
    )
    assert str(stack.data_root) not in details
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _upload(stubs, "uploaded-3", b""), "empty")
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["orchestrator"].UploadEpisode(iter([orchestrator_pb2.UploadEpisodeRequest(chunk=b"x")])),
        "header",
    )
    assert not (stack.data_root / "episodes" / "uploaded-2").exists()
    assert not (stack.data_root / "episodes" / "uploaded-3").exists()
    assert list((stack.data_root / "staging").iterdir()) == []


def test_exemplars_of_another_model_are_reembedded_not_matched(stubs: dict, media: Path) -> None:
    orch, storage = stubs["orchestrator"], stubs["storage"]
    seed = orchestrator_pb2.EnrollPersonRequest.SeedImage
    enrolled = orch.EnrollPerson(
        orchestrator_pb2.EnrollPersonRequest(
            show_id="reembed",
            name="Joe Biden",
            images=[seed(name="biden.jpg", data=(media / "biden.jpg").read_bytes())],
        )
    )
    current = enrolled.person.exemplars[0]
    old = storage_pb2.Exemplar()
    old.CopyFrom(current)
    old.model_id, old.exemplar_id, old.source_name = "older_model@000000000000", "", "biden-old.jpg"
    old.embedding[:] = [0.0] * 511 + [1.0]
    storage.RemovePerson(storage_pb2.RemovePersonRequest(show_id="reembed", person_id="joe-biden"))
    storage.AddPerson(storage_pb2.AddPersonRequest(show_id="reembed", name="Joe Biden", exemplars=[old]))
    result = orch.ReembedFacebank(orchestrator_pb2.ReembedFacebankRequest(show_id="reembed"))
    assert (result.people, result.exemplars_reembedded, result.model_id) == (1, 1, current.model_id)
    person = storage.GetPerson(storage_pb2.GetPersonRequest(show_id="reembed", person_id="joe-biden"))
    fresh = [e for e in person.exemplars if e.model_id == current.model_id]
    assert len(fresh) == 1 and len(person.exemplars) == 2
    similarity = sum(a * b for a, b in zip(fresh[0].embedding, current.embedding, strict=True))
    assert similarity > 0.95  # from the stored JPEG crop: nearly the original vector
    again = orch.ReembedFacebank(orchestrator_pb2.ReembedFacebankRequest(show_id="reembed"))
    assert again.exemplars_reembedded == 0


# ---- an episode's show, season and number ------------------------------------------------------------


def _placed_upload(stubs: dict, ep_id: str, data: bytes, **placement: Any) -> storage_pb2.Episode:
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id=ep_id, filename="clip.mp4", **placement)
    messages = [orchestrator_pb2.UploadEpisodeRequest(header=header)] + [
        orchestrator_pb2.UploadEpisodeRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)
    ]
    return stubs["orchestrator"].UploadEpisode(iter(messages))


def _placement(episode: storage_pb2.Episode) -> tuple[str, int, int]:
    return episode.show_id, episode.season, episode.episode_number


def _set_show(orch: Any, ep_id: str, show_id: str = "", season: int = 0, number: int = 0) -> storage_pb2.Episode:
    request = orchestrator_pb2.SetEpisodeShowRequest(ep_id=ep_id, show_id=show_id, season=season, episode_number=number)
    return orch.SetEpisodeShow(request)


def test_every_way_in_keeps_the_season_and_set_show_moves_the_episode(stubs: dict, media: Path) -> None:
    orch, storage = stubs["orchestrator"], stubs["storage"]
    data = (media / "single_face.mp4").read_bytes()
    streamed = _placed_upload(stubs, "placed-1", data, show_id="show-p", season=2, episode_number=7)
    assert _placement(streamed) == ("show-p", 2, 7)
    header = orchestrator_pb2.UploadEpisodeRequest.Header(
        ep_id="placed-2", filename="clip.mp4", show_id="show-p", season=2, episode_number=8
    )
    session = orch.BeginUpload(orchestrator_pb2.BeginUploadRequest(header=header, size_bytes=len(data)))
    orch.UploadChunk(orchestrator_pb2.UploadChunkRequest(session_id=session.session_id, offset=0, data=data))
    chunked = orch.FinishUpload(orchestrator_pb2.FinishUploadRequest(session_id=session.session_id))
    assert _placement(chunked) == ("show-p", 2, 8)
    created = orch.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(
            ep_id="placed-3", source_path=str(media / "single_face.mp4"), show_id="show-q", season=1, episode_number=1
        )
    )
    assert _placement(created) == ("show-q", 1, 1)
    for ep_id, expected in (("placed-1", ("show-p", 2, 7)), ("placed-2", ("show-p", 2, 8))):
        assert _placement(storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=ep_id))) == expected

    moved = _set_show(orch, "placed-3", "show-p", 3, 1)
    assert _placement(moved) == ("show-p", 3, 1) and moved.video_sha256 == created.video_sha256
    listed = storage.ListEpisodes(storage_pb2.ListEpisodesRequest(show_id="show-p")).episodes
    assert [(e.ep_id, e.season, e.episode_number) for e in listed] == [
        ("placed-1", 2, 7),
        ("placed-2", 2, 8),
        ("placed-3", 3, 1),
    ]
    assert storage.ListEpisodes(storage_pb2.ListEpisodesRequest(show_id="show-q")).episodes == []
    assert _placement(_set_show(orch, "placed-3")) == ("default", 0, 0)  # no show named: the default, unset


def test_set_show_and_uploads_refuse_bad_values_and_unknown_episodes(
    stubs: dict, stack: LocalStack, media: Path
) -> None:
    orch = stubs["orchestrator"]
    _create(stubs, "placed-bad", media / "single_face.mp4")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expect_status(
        invalid, lambda: _set_show(orch, "placed-bad", "show-p", -1), "season must be 0 (not set) to 1000, got -1"
    )
    expect_status(invalid, lambda: _set_show(orch, "placed-bad", "show-p", 1001), "season", "got 1001")
    expect_status(invalid, lambda: _set_show(orch, "placed-bad", "show-p", 1, 10_001), "episode_number", "got 10001")
    expect_status(invalid, lambda: _set_show(orch, "placed-bad", "../x", 1, 1), "show id '../x'")
    expect_status(invalid, lambda: _set_show(orch, "../x", "show-p", 1, 1), "episode id")
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _set_show(orch, "never-made", "show-p", 1, 1), "never-made")
    stored = stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="placed-bad"))
    assert _placement(stored) == ("default", 0, 0)  # nothing changed

    data = (media / "single_face.mp4").read_bytes()
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id="placed-bad-2", filename="clip.mp4", season=5000)
    expect_status(
        invalid,
        lambda: orch.BeginUpload(orchestrator_pb2.BeginUploadRequest(header=header, size_bytes=len(data))),
        "season must be 0 (not set) to 1000, got 5000",
    )
    expect_status(invalid, lambda: _placed_upload(stubs, "placed-bad-2", data, episode_number=-3), "episode_number")
    expect_status(
        invalid,
        lambda: orch.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(
                ep_id="placed-bad-2", source_path=str(media / "single_face.mp4"), season=1001
            )
        ),
        "season",
    )
    assert not (stack.data_root / "episodes" / "placed-bad-2").exists()
    assert list((stack.data_root / "staging").iterdir()) == []  # the refused upload left nothing staged


def test_only_reviewers_set_an_episodes_show_and_storage_keeps_it_internal(
    stubs: dict, stack: LocalStack, media: Path
) -> None:
    from services.common.auth import ClientCredentials
    from services.common.local_issuer import LocalIssuer
    from services.common.server import CHANNEL_OPTIONS
    from services.common.tls import open_channel

    _create(stubs, "placed-roles", media / "single_face.mp4")
    issuer = LocalIssuer.at(stack.data_root)

    def channel(role: str, service: str) -> grpc.Channel:
        credentials = ClientCredentials(bearer=issuer.mint(role, f"{role}-placer", 600))
        return open_channel(stack.address(service), None, CHANNEL_OPTIONS, credentials)

    with channel("viewer", "orchestrator") as viewer, channel("reviewer", "orchestrator") as reviewer:
        expect_status(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: _set_show(orchestrator_pb2_grpc.OrchestratorServiceStub(viewer), "placed-roles", "show-r", 1, 2),
            "SetEpisodeShow",
        )
        moved = _set_show(orchestrator_pb2_grpc.OrchestratorServiceStub(reviewer), "placed-roles", "show-r", 1, 2)
    assert _placement(moved) == ("show-r", 1, 2)
    assert moved.video_uri == "" and moved.video.uri == ""  # where the video lives is the services' business
    with channel("admin", "storage") as admin:
        expect_status(
            grpc.StatusCode.PERMISSION_DENIED,
            lambda: storage_pb2_grpc.StorageServiceStub(admin).UpdateEpisode(
                storage_pb2.UpdateEpisodeRequest(ep_id="placed-roles", show_id="show-x")
            ),
            "UpdateEpisode",
        )
    stored = stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="placed-roles"))
    assert _placement(stored) == ("show-r", 1, 2)


def _faceflow(stack: LocalStack, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI against the contract stack as a running stack (the trusted local user, or a token's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEFLOW_ORCHESTRATOR_", "FACEFLOW_STORAGE_"))}
    env |= {
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_TOKEN": token,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "--data-root", str(stack.data_root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_cli_creates_lists_and_moves_episodes_by_show(stubs: dict, stack: LocalStack, media: Path) -> None:
    from services.cli.run import Placement, create_episode
    from services.cli.session import Session
    from services.common.local_issuer import LocalIssuer

    token = LocalIssuer.at(stack.data_root).mint("reviewer", "cli-placer", 600)
    parsed = build_parser().parse_args(
        ["run", "x.mp4", "--episode", "e", "--show", "cli-placed", "--season", "4", "--episode-number", "2"]
    )
    place = Placement(parsed.show, parsed.season, parsed.episode_number)
    assert place == Placement("cli-placed", 4, 2)
    video = str(media / "single_face.mp4")
    # `faceflow run VIDEO ...` creates the episode as the local stack's CLI (a path) or a remote user (an upload).
    create_episode(Session(stubs["orchestrator"], stubs["storage"], stack.data_root), video, "cli-1", place, False)
    with Client(stack.address("orchestrator"), token=token, storage_address=stack.address("storage")) as client:
        session = Session(stubs["orchestrator"], stubs["storage"], None, client=client)
        create_episode(session, video, "cli-2", Placement("cli-placed", 4, 3), False)
        assert [(e.ep_id, e.season, e.episode_number) for e in client.episodes(show="cli-placed")] == [
            ("cli-1", 4, 2),
            ("cli-2", 4, 3),
        ]

    moved = _faceflow(stack, "episodes", "set-show", "cli-2", "--show", "cli-placed", "--season", "5", token=token)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "cli-2: show cli-placed, season 5"  # no number given: cleared
    listed = _faceflow(stack, "episodes", "list", "--show", "cli-placed")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["EPISODE", "SHOW", "SEASON", "NUMBER", "VIDEO", "DURATION", "RUN"]
    assert [row.split()[:6] for row in rows] == [
        ["cli-1", "cli-placed", "4", "2", "640x360", "2.4s"],
        ["cli-2", "cli-placed", "5", "-", "640x360", "2.4s"],
    ]
    assert all(row.split()[6] == "-" for row in rows)  # never run
    nothing = _faceflow(stack, "episodes", "list", "--show", "no-such-show")
    assert nothing.returncode == 0 and nothing.stdout.splitlines()[1:] == [] and "no episodes" in nothing.stderr
    bad = _faceflow(stack, "episodes", "set-show", "cli-2", "--episode-number", "10001", token=token)
    assert bad.returncode == 2 and "episode_number must be 0 (not set) to 10000, got 10001" in bad.stderr
    missing = _faceflow(stack, "episodes", "set-show", "never-made", "--season", "1", token=token)
    assert missing.returncode == 2 and "never-made" in missing.stderr and "does not exist" in missing.stderr
