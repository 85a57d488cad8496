"""The whole stack in S3 mode against a real S3 server (SeaweedFS) on loopback."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

from services.cli.seaweed import SeaweedServer
from services.cli.stack import LocalStack
from services.common.auth import ClientCredentials
from services.common.local_issuer import LocalIssuer

pytestmark = pytest.mark.e2e
SUCCEEDED = orchestrator_pb2.JOB_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with SeaweedServer(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_stack(s3: SeaweedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict]]:
    # Two attempts: an outage must surface in seconds in the fault test, not after a minute of backoff.
    env = {**s3.env(), "FACEFLOW_S3_MAX_ATTEMPTS": "2"}
    with LocalStack(tmp_path_factory.mktemp("s3-cache"), extra_env=env) as stack:
        channels = [stack.channel(n) for n in ("orchestrator", "storage")]
        yield (
            stack,
            {
                "orchestrator": orchestrator_pb2_grpc.OrchestratorServiceStub(channels[0]),
                "storage": storage_pb2_grpc.StorageServiceStub(channels[1]),
            },
        )
        for channel in channels:
            channel.close()


def _objects(s3: SeaweedServer, ep_id: str) -> int:
    client = _boto(s3)
    paginator = client.get_paginator("list_objects_v2")
    return sum(
        len(page.get("Contents", []))
        for page in paginator.paginate(
            Bucket=s3.bucket, Prefix=f"faceflow/episodes/{ep_id}/" if ep_id else "faceflow/episodes/"
        )
    )


def _run(stubs: dict, ep_id: str, stride: int) -> orchestrator_pb2.Progress:
    request = orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, options=orchestrator_pb2.RunOptions(stride=stride))
    return list(stubs["orchestrator"].RunEpisode(request))[-1]


def _screentime(read) -> dict:  # type: ignore[no-untyped-def]
    data = json.loads(read("screentime.json"))
    return {round(i["seconds"], 2) for i in data["identities"]}  # type: ignore[return-value]


def _read(storage, ep_id: str, name: str) -> bytes:  # type: ignore[no-untyped-def]
    ref = storage_pb2.ArtifactRef(ep_id=ep_id, name=name)
    return b"".join(c.chunk for c in storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref)))


def test_s3_run_matches_local_run_and_serves_crops(
    s3_stack: tuple[LocalStack, dict], s3: SeaweedServer, stubs: dict, sample_episode: Path
) -> None:
    stack, s3_stubs = s3_stack
    video = str(sample_episode / "episode.mp4")
    for target in (s3_stubs, stubs):  # the S3-mode stack and the local-mode stack
        target["orchestrator"].CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id="s3-cmp", source_path=video))
        final = _run(target, "s3-cmp", 3)
        assert final.state == SUCCEEDED, final.message
    # The video lives in S3 and the detector read it there through a presigned URL.
    episode = s3_stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="s3-cmp"))
    assert episode.video_uri.startswith(s3.endpoint_url) and "Signature" in episode.video_uri
    in_s3 = {
        json.dumps(i["track_ids"])
        for i in json.loads(_read(s3_stubs["storage"], "s3-cmp", "identities.json"))["identities"]
    }
    local = {
        json.dumps(i["track_ids"])
        for i in json.loads(_read(stubs["storage"], "s3-cmp", "identities.json"))["identities"]
    }
    assert in_s3 == local
    assert _screentime(lambda n: _read(s3_stubs["storage"], "s3-cmp", n)) == _screentime(
        lambda n: _read(stubs["storage"], "s3-cmp", n)
    )

    # Crop listing pages through S3 with presigned URLs that fetch over HTTP.
    track = json.loads(_read(s3_stubs["storage"], "s3-cmp", "identities.json"))["identities"][0]["track_ids"][0]
    keys, cursor = [], ""
    while True:
        page = s3_stubs["storage"].ListTrackCrops(
            storage_pb2.ListTrackCropsRequest(ep_id="s3-cmp", track_id=track, sample=1, limit=3, start_after=cursor)
        )
        keys += [item.key for item in page.items]
        cursor = page.next_start_after
        if not cursor:
            break
    assert len(keys) >= 4 and keys == sorted(keys)  # a 4 s track, one crop per second: two pages of 3
    body = urllib.request.urlopen(page.items[-1].url if page.items else "", timeout=10).read()
    assert body[:2] == b"\xff\xd8"  # a JPEG


def test_an_episode_from_a_video_already_in_the_bucket(
    s3_stack: tuple[LocalStack, dict], s3: SeaweedServer, stubs: dict, sample_episode: Path, media: Path
) -> None:
    """s3://BUCKET/KEY sources: a user (a reviewer's JWT, not the trusted CLI) names an object of the
    configured bucket; storage stages a copy and the orchestrator probes it like an upload. Other
    buckets, faceflow's own keys, missing objects and non-videos are refused, and the local backend
    says it needs S3."""
    stack, _ = s3_stack
    client = _boto(s3)
    client.upload_file(str(sample_episode / "episode.mp4"), s3.bucket, "ingest/season-1/episode.mp4")
    client.upload_file(str(media / "multi_face.jpg"), s3.bucket, "ingest/season-1/still.jpg")
    token = LocalIssuer.at(stack.data_root).mint("reviewer", "ingest-tester", 600)
    with stack.channel("orchestrator", ClientCredentials(bearer=token)) as channel:
        orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

        def create(ep_id: str, uri: str) -> storage_pb2.Episode:
            return orchestrator.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_uri=uri))

        episode = create("from-bucket", f"s3://{s3.bucket}/ingest/season-1/episode.mp4")
        assert (episode.video.width, episode.video.height, episode.video.frame_count) == (1280, 720, 1150)
        stored = _read_episode(s3_stack[1]["storage"], "from-bucket")
        assert stored.video_sha256 == hashlib.sha256((sample_episode / "episode.mp4").read_bytes()).hexdigest()
        refused = {
            "s3://other-bucket/ingest/season-1/episode.mp4": grpc.StatusCode.PERMISSION_DENIED,
            f"s3://{s3.bucket}/faceflow/episodes/from-bucket/video.mp4": grpc.StatusCode.PERMISSION_DENIED,
            f"s3://{s3.bucket}/ingest/../faceflow/x.mp4": grpc.StatusCode.INVALID_ARGUMENT,
            f"s3://{s3.bucket}/ingest/missing.mp4": grpc.StatusCode.NOT_FOUND,
            f"s3://{s3.bucket}/ingest/season-1/still.jpg": grpc.StatusCode.INVALID_ARGUMENT,
            "https://example.org/episode.mp4": grpc.StatusCode.INVALID_ARGUMENT,
        }
        for index, (uri, code) in enumerate(refused.items()):
            with pytest.raises(grpc.RpcError) as caught:
                create(f"refused-{index}", uri)
            assert caught.value.code() == code, (uri, caught.value.details())
            if uri.endswith("still.jpg"):  # named by its file name, never by where it was staged
                assert "still.jpg" in str(caught.value.details()) and "staging" not in str(caught.value.details())
        # Nothing half-written: no refused episode, no staged copy left behind.
        listed = {e.ep_id for e in s3_stack[1]["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes}
        assert not any(ep.startswith("refused-") for ep in listed)
        staged = client.list_objects_v2(Bucket=s3.bucket, Prefix="faceflow/staging/").get("KeyCount", 0)
        assert staged == 0
    with pytest.raises(grpc.RpcError) as caught:  # the local backend has no bucket to take it from
        stubs["orchestrator"].CreateEpisode(
            storage_pb2.CreateEpisodeRequest(ep_id="local-s3", source_uri=f"s3://{s3.bucket}/ingest/season-1/episode.mp4")
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "S3" in caught.value.details()


def _read_episode(storage, ep_id: str) -> storage_pb2.Episode:  # type: ignore[no-untyped-def]
    return storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=ep_id))


def _boto(s3: SeaweedServer):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name="us-east-1",
    )


def test_delete_keeps_or_removes_s3_objects_as_asked(
    s3_stack: tuple[LocalStack, dict], s3: SeaweedServer, media: Path
) -> None:
    stack, stubs = s3_stack
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="s3-del-1", source_path=str(media / "single_face.mp4"))
    )
    # The second one arrives as a streamed upload (what a remote client does): staged in S3, probed, committed.
    data = (media / "single_face.mp4").read_bytes()
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id="s3-del-2", filename="clip.mp4")
    uploaded = stubs["orchestrator"].UploadEpisode(
        iter(
            [orchestrator_pb2.UploadEpisodeRequest(header=header)]
            + [orchestrator_pb2.UploadEpisodeRequest(chunk=data[i : i + 65536]) for i in range(0, len(data), 65536)]
        )
    )
    assert uploaded.video.frame_count == 72 and uploaded.video_sha256
    bad = [
        orchestrator_pb2.UploadEpisodeRequest(
            header=orchestrator_pb2.UploadEpisodeRequest.Header(ep_id="s3-del-3", filename="x.mp4")
        ),
        orchestrator_pb2.UploadEpisodeRequest(chunk=b"not a video" * 100),
    ]
    with pytest.raises(grpc.RpcError) as refused:
        stubs["orchestrator"].UploadEpisode(iter(bad))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _objects(s3, "s3-del-3") == 0
    for ep_id in ("s3-del-1", "s3-del-2"):
        assert _run(stubs, ep_id, 2).state == SUCCEEDED
    before = _objects(s3, "s3-del-1")
    assert before >= 8  # video, record, run artifacts, crops
    kept = stubs["storage"].DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="s3-del-1", include_s3=False))
    assert kept.s3_objects_removed == 0 and _objects(s3, "s3-del-1") == before
    removed = stubs["storage"].DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="s3-del-2", include_s3=True))
    assert removed.s3_objects_removed > 0 and _objects(s3, "s3-del-2") == 0


def test_s3_outage_mid_run_fails_clearly_and_keeps_the_previous_run(
    s3_stack: tuple[LocalStack, dict], s3: SeaweedServer, media: Path
) -> None:
    stack, stubs = s3_stack
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="s3-fault", source_path=str(media / "WolfgangLanger_Pexels.mp4"))
    )
    first = _run(stubs, "s3-fault", 4)
    assert first.state == SUCCEEDED
    job = stubs["orchestrator"].SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id="s3-fault"))
    for progress in stubs["orchestrator"].WatchJob(orchestrator_pb2.WatchJobRequest(job_id=job.job_id)):
        if progress.frames_done >= 30 and s3.running:
            s3.stop()
    final = stubs["orchestrator"].GetJob(orchestrator_pb2.GetJobRequest(job_id=job.job_id)).progress
    assert final.state == orchestrator_pb2.JOB_STATE_FAILED
    assert "unavailable" in final.message.lower() or "unreachable" in final.message.lower(), final.message
    assert "Signature" not in final.message  # presigned credentials never leak into messages
    s3.restart()
    deadline = time.monotonic() + 30
    while True:
        try:
            episode = stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="s3-fault"))
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert episode.current_run_id == first.summary.run_id  # the failed run was never published
    assert json.loads(_read(stubs["storage"], "s3-fault", "manifest.json"))["run_id"] == first.summary.run_id


def test_delete_all_with_the_phrase(s3_stack: tuple[LocalStack, dict], s3: SeaweedServer) -> None:
    _, stubs = s3_stack
    count = len(stubs["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes)
    result = stubs["storage"].DeleteAllEpisodes(
        storage_pb2.DeleteAllEpisodesRequest(confirm="delete all episodes", include_s3=True)
    )
    assert result.episodes_deleted == count > 0
    assert list(stubs["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes) == []
    assert _objects(s3, "") == 0
