"""The calls added for the web UI, over real gRPC: the chunked upload session (BeginUpload / UploadChunk /
FinishUpload / AbortUpload), which a browser uses instead of the client-streaming UploadEpisode with the
same validation, and the run choices."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.stack import LocalStack
from tests.contract.helpers import expect_status

CHUNK = 64 * 1024
# Starts like an MP4 (an `ftyp` box), so it passes the first-chunk check and reaches the detector's probe.
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _begin(stubs: dict, ep_id: str, size: int) -> orchestrator_pb2.UploadSession:
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id=ep_id, filename="clip.mp4")
    return stubs["orchestrator"].BeginUpload(orchestrator_pb2.BeginUploadRequest(header=header, size_bytes=size))


def _chunk(stubs: dict, session_id: str, offset: int, data: bytes) -> orchestrator_pb2.UploadSession:
    request = orchestrator_pb2.UploadChunkRequest(session_id=session_id, offset=offset, data=data)
    return stubs["orchestrator"].UploadChunk(request)


def _staging_empty(stack: LocalStack) -> bool:
    staging = stack.data_root / "staging"
    return not staging.exists() or not list(staging.iterdir())


def test_chunks_in_order_with_a_retry_become_an_episode(stubs: dict, stack: LocalStack, media: Path) -> None:
    data = (media / "single_face.mp4").read_bytes()
    session = _begin(stubs, "chunked-1", len(data))
    offset = 0
    while offset < len(data):
        piece = data[offset : offset + CHUNK]
        status = _chunk(stubs, session.session_id, offset, piece)
        # A retried chunk (the response was lost, say) is taken once.
        assert _chunk(stubs, session.session_id, offset, piece).received_bytes == status.received_bytes
        offset = status.received_bytes
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: _chunk(stubs, session.session_id, 0, data[:CHUNK]),
        f"expects the chunk at offset {len(data)}",
    )
    finish = orchestrator_pb2.FinishUploadRequest(session_id=session.session_id)
    episode = stubs["orchestrator"].FinishUpload(finish)
    assert Path(episode.video_uri).read_bytes() == data and episode.video.frame_count == 72
    assert stubs["orchestrator"].FinishUpload(finish).ep_id == "chunked-1"  # a retried finish
    assert _staging_empty(stack)


def test_bad_sessions_fail_and_leave_nothing_staged(stubs: dict, stack: LocalStack) -> None:
    junk = b"not a video" * 1000
    session = _begin(stubs, "chunked-2", len(junk))
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, lambda: _chunk(stubs, session.session_id, 10, junk), "offset 0")
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: _chunk(stubs, session.session_id, 0, junk + b"x"),
        "past the declared size",
    )
    # Not a video container: refused at the first chunk, before storage sees a byte; the session is gone.
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: _chunk(stubs, session.session_id, 0, junk),
        "the upload 'clip.mp4' does not start like a video file",
    )
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _chunk(stubs, session.session_id, 0, junk), "does not exist")

    # Starts like an MP4 but is not one: the probe refuses it, naming the upload, not where it was staged.
    fake = MP4_HEAD + junk
    session = _begin(stubs, "chunked-2", len(fake))
    _chunk(stubs, session.session_id, 0, fake)
    finish = orchestrator_pb2.FinishUploadRequest(session_id=session.session_id)
    details = expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["orchestrator"].FinishUpload(finish),
        "the upload 'clip.mp4' is not a readable video",
    )
    assert str(stack.data_root) not in details and "staging" not in details, details
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: stubs["orchestrator"].FinishUpload(finish), "does not exist")

    short = _begin(stubs, "chunked-3", 100)
    _chunk(stubs, short.session_id, 0, (MP4_HEAD + b"x" * 40)[:40])
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: stubs["orchestrator"].FinishUpload(orchestrator_pb2.FinishUploadRequest(session_id=short.session_id)),
        "has 40 of 100 bytes",
    )
    stubs["orchestrator"].AbortUpload(orchestrator_pb2.AbortUploadRequest(session_id=short.session_id))
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _chunk(stubs, short.session_id, 40, b"y"), "does not exist")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _begin(stubs, "../x", 10), "episode")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _begin(stubs, "chunked-4", 0), "size_bytes")

    # Aborted and failed sessions leave nothing in staging (storage may take a moment to discard).
    deadline = time.monotonic() + 10
    while not _staging_empty(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _staging_empty(stack)
    episodes = {e.ep_id for e in stubs["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes}
    assert not {"chunked-2", "chunked-3"} & episodes


def test_uploads_are_admitted_before_a_byte_is_sent(stubs: dict, stack: LocalStack) -> None:
    # A 10 TiB declaration is refused at BeginUpload: nothing is streamed or staged.
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _begin(stubs, "chunked-5", 10 * 1024**4), "10.0 TiB")
    assert _staging_empty(stack)

    # A caller has a few sessions open at most (the global limit is higher); aborting one frees a slot.
    opened = []
    try:
        for _ in range(16):
            try:
                opened.append(_begin(stubs, "chunked-5", 1000).session_id)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
                assert f"you have {len(opened)} uploads open; finish or abort one" in error.details()
                break
        else:
            raise AssertionError("16 uploads were opened by one caller")
        assert opened
        stubs["orchestrator"].AbortUpload(orchestrator_pb2.AbortUploadRequest(session_id=opened.pop()))
        opened.append(_begin(stubs, "chunked-5", 1000).session_id)
    finally:
        for session_id in opened:
            stubs["orchestrator"].AbortUpload(orchestrator_pb2.AbortUploadRequest(session_id=session_id))
    assert _staging_empty(stack)


def test_run_choices_are_what_run_options_accept(stubs: dict) -> None:
    choices = stubs["orchestrator"].GetRunChoices(orchestrator_pb2.GetRunChoicesRequest())
    assert "retinaface" in choices.detectors and "bytetrack" in choices.trackers
    assert choices.default_tracker in choices.trackers and choices.default_detector in choices.detectors
    assert choices.max_stride >= 10
