"""The client against scripted servicers on a real gRPC server: credentials and deadlines on every
call, resumable uploads, jobs followed across reconnects, results from the right endpoint, asyncio."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from faceflow.client import (
    Backoff,
    Client,
    FailedPrecondition,
    InvalidArgument,
    JobCancelled,
    JobFailed,
    JobState,
    NotFound,
    Progress,
    RunOptions,
    Unavailable,
)
from faceflow.client.aio import AsyncClient
from faceflow.v1 import orchestrator_pb2, storage_pb2

from tests.client.fakes import JS, Servers, WatchScript, progress, serve
from tests.client.test_models import TRACKS_JSONL, screen_time_proto

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
QUICK = Backoff(first_delay_s=0.01, max_delay_s=0.05)
CHUNK = 64 * 1024
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 1000  # 256,012 bytes: 4 chunks of 64 KiB


@pytest.fixture()
def servers() -> Iterator[Servers]:
    with serve() as running:
        yield running


@pytest.fixture()
def client(servers: Servers) -> Iterator[Client]:
    with Client(servers.address, token="tok-1", timeout_s=7.0) as made:
        made.backoff = QUICK
        yield made


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(VIDEO)
    return path


def test_every_call_carries_the_token_and_unary_calls_a_deadline(servers: Servers, client: Client) -> None:
    servers.orchestrator.screen_time = screen_time_proto()
    servers.orchestrator.watch_scripts = [WatchScript([progress(JS.JOB_STATE_SUCCEEDED)])]
    servers.shared_storage.artifacts["tracks.jsonl"] = TRACKS_JSONL
    client.screen_time("ep1")
    client.submit("ep1")
    list(client.watch("job-1"))
    client.tracks("ep1")
    for recorder in (servers.orchestrator, servers.shared_storage):
        for method, seen in recorder.metadata.items():
            assert seen and all(m.get("authorization") == "Bearer tok-1" for m in seen), method
    for method in ("GetScreenTime", "SubmitJob"):
        (remaining,) = servers.orchestrator.deadlines[method]
        assert remaining is not None and 0 < remaining <= 7.5  # the deadline travels rounded up
    (watch_deadline,) = servers.orchestrator.deadlines["WatchJob"]
    assert watch_deadline is None or watch_deadline > 1e9  # none: a progress stream lasts as long as the job


def test_a_token_function_is_asked_before_each_call(servers: Servers) -> None:
    tokens = iter(["first", "second"])
    with Client(servers.address, token=lambda: next(tokens)) as client:
        client.job("job-1")
        client.job("job-1")
    assert [m["authorization"] for m in servers.orchestrator.metadata["GetJob"]] == ["Bearer first", "Bearer second"]


def test_without_a_token_no_authorization_is_sent(servers: Servers) -> None:
    with Client(servers.address) as client:
        client.job("job-1")
    assert "authorization" not in servers.orchestrator.metadata["GetJob"][0]


def test_storage_calls_go_to_the_storage_address_when_it_differs(servers: Servers) -> None:
    servers.storage.artifacts["tracks.jsonl"] = TRACKS_JSONL
    with Client(servers.address, token="t", storage_address=servers.storage_address) as client:
        tracks = client.tracks("ep1")
        assert client.episode("ep1").fps == 25.0
    assert [t.track_id for t in tracks] == [1, 2]
    (ref,) = servers.storage.refs
    assert (ref.ep_id, ref.run_id, ref.name) == ("ep1", "", "tracks.jsonl")  # the current run's
    assert servers.shared_storage.calls == []


def test_upload_sends_the_file_in_chunks_and_reports_progress(servers: Servers, client: Client, video: Path) -> None:
    seen: list[tuple[int, int]] = []
    episode = client.upload(video, "ep1", show="s1", chunk_bytes=CHUNK, on_progress=lambda *a: seen.append(a))
    assert (episode.ep_id, episode.show_id, episode.size_bytes) == ("ep1", "s1", len(VIDEO))
    assert list(servers.orchestrator.uploaded.values()) == [VIDEO]
    assert servers.orchestrator.headers.filename == "clip.mp4"
    assert seen == [(0, len(VIDEO)), (CHUNK, len(VIDEO)), (2 * CHUNK, len(VIDEO)), (3 * CHUNK, len(VIDEO))] + [
        (len(VIDEO), len(VIDEO))
    ]


def test_an_upload_places_the_episode_in_its_show_season_and_number(
    servers: Servers, client: Client, video: Path
) -> None:
    episode = client.upload(video, "ep1", show="s1", season=2, episode_number=7, chunk_bytes=CHUNK)
    header = servers.orchestrator.headers
    assert (header.show_id, header.season, header.episode_number) == ("s1", 2, 7)
    assert (episode.show_id, episode.season, episode.episode_number) == ("s1", 2, 7)
    plain = client.upload(video, "ep2", chunk_bytes=CHUNK)
    assert (plain.season, plain.episode_number) == (0, 0)  # not set unless given
    assert servers.orchestrator.headers.show_id == "default"


def test_episodes_of_a_show_and_moving_an_episode_to_another(servers: Servers, client: Client) -> None:
    servers.shared_storage.episodes = [
        storage_pb2.Episode(ep_id="ep1", show_id="s1", season=1, episode_number=1),
        storage_pb2.Episode(ep_id="ep2", show_id="s2"),
    ]
    assert [e.ep_id for e in client.episodes()] == ["ep1", "ep2"]
    [only] = client.episodes(show="s1")
    assert (only.ep_id, only.season, only.episode_number) == ("ep1", 1, 1)
    assert servers.shared_storage.listed_shows == ["", "s1"]
    moved = client.set_episode_show("ep2", "s1", season=1, episode_number=2)
    (request,) = servers.orchestrator.placed
    assert (request.ep_id, request.show_id, request.season, request.episode_number) == ("ep2", "s1", 1, 2)
    assert (moved.ep_id, moved.show_id, moved.season, moved.episode_number) == ("ep2", "s1", 1, 2)


def test_a_chunk_whose_answer_was_lost_is_sent_again_at_the_same_offset(
    servers: Servers, client: Client, video: Path
) -> None:
    # 6 lost answers: the channel's own retries (5 attempts) give up once, the client sends it again
    servers.orchestrator.lost_answers = {CHUNK: 6}
    client.upload(video, "ep1", chunk_bytes=CHUNK)
    assert list(servers.orchestrator.uploaded.values()) == [VIDEO]
    assert servers.orchestrator.chunk_offsets.count(CHUNK) == 7 and servers.orchestrator.aborted == []


def test_an_upload_that_never_lands_gives_up_after_the_patience_and_aborts(
    servers: Servers, client: Client, video: Path
) -> None:
    servers.orchestrator.lost_answers = {CHUNK: 1000}
    with pytest.raises(Unavailable, match="gave up uploading clip.mp4"):
        client.upload(video, "ep1", chunk_bytes=CHUNK, patience_s=1.0)
    assert servers.orchestrator.aborted == ["upl-1"] and servers.orchestrator.uploaded == {}


def test_a_lost_session_is_uploaded_again_from_the_start(servers: Servers, client: Client, video: Path) -> None:
    servers.orchestrator.restart_at = 2 * CHUNK
    seen: list[int] = []
    client.upload(video, "ep1", chunk_bytes=CHUNK, on_progress=lambda sent, total: seen.append(sent))
    assert list(servers.orchestrator.uploaded.values()) == [VIDEO]
    assert servers.orchestrator.calls.count("BeginUpload") == 2 and seen.count(0) == 2


def test_a_lost_session_of_a_stream_that_cannot_rewind_is_an_error(servers: Servers, client: Client) -> None:
    servers.orchestrator.restart_at = CHUNK
    with pytest.raises(NotFound, match="cannot be rewound"):
        client.upload(_Unseekable(VIDEO), "ep1", size=len(VIDEO), chunk_bytes=CHUNK)


def test_a_not_found_from_finishing_is_the_servers_answer_not_a_lost_session(
    servers: Servers, client: Client, video: Path
) -> None:
    servers.orchestrator.failures["FinishUpload"] = [(grpc.StatusCode.NOT_FOUND, "episode 'ep1' does not exist")]
    with pytest.raises(NotFound, match="episode 'ep1' does not exist"):
        client.upload(video, "ep1", replace_video=True, chunk_bytes=CHUNK)
    assert servers.orchestrator.calls.count("BeginUpload") == 1 and servers.orchestrator.aborted == ["upl-1"]
    assert servers.orchestrator.headers.replace_video


def test_a_file_object_is_read_from_where_it_stands(servers: Servers, client: Client) -> None:
    stream = io.BytesIO(b"junk" + VIDEO)
    stream.seek(4)
    client.upload(stream, "ep1", chunk_bytes=CHUNK, filename="named.mp4")
    assert list(servers.orchestrator.uploaded.values()) == [VIDEO]
    assert servers.orchestrator.headers.filename == "named.mp4"


def test_a_stream_shorter_than_its_size_is_refused_and_aborted(servers: Servers, client: Client) -> None:
    with pytest.raises(InvalidArgument, match="ended after"):
        client.upload(io.BytesIO(VIDEO), "ep1", size=len(VIDEO) + 10, chunk_bytes=CHUNK)
    assert servers.orchestrator.aborted == ["upl-1"]


def test_run_follows_the_job_across_a_broken_stream(servers: Servers, client: Client) -> None:
    summary = orchestrator_pb2.RunSummary(run_id="run-9", frames_processed=100, identities=3)
    servers.orchestrator.watch_scripts = [
        WatchScript([progress(JS.JOB_STATE_QUEUED), progress(JS.JOB_STATE_RUNNING, 10)], UNAVAILABLE),
        WatchScript([progress(JS.JOB_STATE_RUNNING, 20)]),  # ended before the job did
        WatchScript([progress(JS.JOB_STATE_RUNNING, 60), progress(JS.JOB_STATE_SUCCEEDED, 100, summary=summary)]),
    ]
    events: list[Progress] = []
    result = client.run("ep1", RunOptions(stride=5, show="s1"), on_progress=events.append)
    assert (result.run_id, result.frames_processed, result.identities) == ("run-9", 100, 3)
    assert [e.frames_done for e in events] == [0, 10, 20, 60, 100]
    assert events[-1].state is JobState.SUCCEEDED
    (submit,) = servers.orchestrator.submits
    assert submit.options.stride == 5 and submit.options.show_id == "s1" and len(submit.idempotency_key) == 32


def test_a_submit_that_found_no_orchestrator_is_sent_again_with_the_same_key(servers: Servers, client: Client) -> None:
    servers.orchestrator.failures["SubmitJob"] = [(UNAVAILABLE, "restarting")] * 6  # more than the channel retries
    job = client.submit("ep1", idempotency_key="my-key")
    assert job.idempotency_key == "my-key" and job.state is JobState.QUEUED
    assert {s.idempotency_key for s in servers.orchestrator.submits} == {"my-key"}


@pytest.mark.parametrize(("state", "error"), [(JS.JOB_STATE_FAILED, JobFailed), (JS.JOB_STATE_CANCELLED, JobCancelled)])
def test_run_of_a_job_that_did_not_succeed_raises_with_its_message(
    servers: Servers, client: Client, state: int, error: type[Exception]
) -> None:
    servers.orchestrator.watch_scripts = [WatchScript([progress(state, 40, message="out of memory")])]
    with pytest.raises(error, match="out of memory") as caught:
        client.run("ep1")
    assert caught.value.progress.frames_done == 40  # type: ignore[attr-defined]


def test_a_job_gone_after_a_reconnect_is_not_found(servers: Servers, client: Client) -> None:
    servers.orchestrator.watch_scripts = [WatchScript([progress(JS.JOB_STATE_RUNNING, 5)], UNAVAILABLE)]
    with pytest.raises(NotFound, match="job job-1 is gone"):
        list(client.watch("job-1"))


def test_following_gives_up_after_the_patience(servers: Servers, client: Client) -> None:
    servers.orchestrator.watch_scripts = [WatchScript([], UNAVAILABLE) for _ in range(200)]
    with pytest.raises(Unavailable, match="gave up following job job-1"):
        list(client.watch("job-1", patience_s=0.5))


def test_jobs_cancel_identities(servers: Servers, client: Client) -> None:
    servers.orchestrator.review = orchestrator_pb2.ReviewState(
        ep_id="ep1", identities=[orchestrator_pb2.ReviewedIdentity(identity_id="id-1", label="Ann")]
    )
    assert [j.job_id for j in client.jobs("ep1")] == ["job-1", "job-1"]
    assert client.cancel("job-1").job_id == "job-1"
    assert [i.label for i in client.identities("ep1")] == ["Ann"]
    assert client.timeline("ep1").rows == ()


def test_bad_arguments_are_refused_before_any_call(servers: Servers, client: Client, video: Path) -> None:
    with pytest.raises(InvalidArgument, match="chunk_bytes"):
        client.upload(video, "ep1", chunk_bytes=10 * 1024 * 1024)
    with pytest.raises(InvalidArgument, match="non-seekable"):
        client.upload(_Unseekable(), "ep1")
    with pytest.raises(InvalidArgument, match="timeout_s"):
        Client(servers.address, timeout_s=0)
    assert servers.orchestrator.calls == []


class _Unseekable(io.RawIOBase):
    """A pipe-like stream: readable, not seekable, no file descriptor."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


def test_create_episode_from_s3_sends_the_uri(servers: Servers, client: Client) -> None:
    episode = client.create_episode_from_s3(
        "s3://videos/s01/e01.mp4", "ep1", show="s1", season=1, episode_number=1, replace_video=True
    )
    (request,) = servers.orchestrator.created
    assert request.source_uri == "s3://videos/s01/e01.mp4" and not request.source_path
    assert (request.ep_id, request.show_id, request.replace_video, episode.ep_id) == ("ep1", "s1", True, "ep1")
    assert (request.season, request.episode_number, episode.season, episode.episode_number) == (1, 1, 1, 1)


def test_create_episode_from_s3_checks_the_uri(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="s3://bucket/key"):
        client.create_episode_from_s3("https://example.org/e01.mp4", "ep1")


def test_async_client_submits_follows_and_reads(servers: Servers) -> None:
    summary = orchestrator_pb2.RunSummary(run_id="run-3")
    servers.orchestrator.screen_time = screen_time_proto()
    servers.orchestrator.watch_scripts = [
        WatchScript([progress(JS.JOB_STATE_RUNNING, 10)], UNAVAILABLE),
        WatchScript([progress(JS.JOB_STATE_SUCCEEDED, 100, summary=summary)]),
        WatchScript([progress(JS.JOB_STATE_RUNNING, 50), progress(JS.JOB_STATE_CANCELLED, 50, message="stop")]),
    ]
    servers.storage.artifacts["tracks.jsonl"] = TRACKS_JSONL

    async def main() -> None:
        async with AsyncClient(servers.address, token="tok-a", storage_address=servers.storage_address) as client:
            client.backoff = QUICK
            events: list[int] = []
            result = await client.run("ep1", RunOptions(stride=2), on_progress=lambda p: events.append(p.frames_done))
            assert result.run_id == "run-3" and events == [10, 100]
            assert [p.state async for p in client.watch("job-1")] == [JobState.RUNNING, JobState.CANCELLED]
            assert (await client.screen_time("ep1")).seconds_by_label() == {"Ann": 12.0}
            assert len(await client.tracks("ep1")) == 2
            assert (await client.job("job-1")).job_id == "job-1"
            servers.orchestrator.failures["GetJob"].append((grpc.StatusCode.FAILED_PRECONDITION, "no run yet"))
            with pytest.raises(FailedPrecondition, match="no run yet"):
                await client.job("job-1")

    asyncio.run(main())
    for method in ("SubmitJob", "WatchJob", "GetScreenTime", "GetJob"):
        seen = servers.orchestrator.metadata[method]
        assert seen and all(m.get("authorization") == "Bearer tok-a" for m in seen), (method, seen)
    assert servers.storage.metadata["GetArtifact"][0]["authorization"] == "Bearer tok-a"
    (remaining,) = servers.orchestrator.deadlines["GetScreenTime"]
    assert remaining is not None and remaining <= 30.5  # the default deadline, rounded up on the wire
