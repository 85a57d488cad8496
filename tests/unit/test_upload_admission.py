"""Admission of chunked uploads, with fake storage and detector stubs: sizes are checked before a byte
is sent, each caller has a few sessions at most, a first chunk that is no video container is refused
before storage sees it, and no message names a server path."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from faceflow.v1 import common_pb2, detector_pb2, orchestrator_pb2, storage_pb2

from services.common.auth import Principal, Role, acting_as, restore
from services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from services.orchestrator.api import uploads
from services.orchestrator.api.uploads import UploadSessions, looks_like_video

TIB = 1024**4
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
STAGED_URI = "file:///srv/faceflow/data/staging/upl-0123456789/clip.mp4"


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeStorage:
    """Stages streams in memory; refuses capacity like the real one when told to."""

    def __init__(self, free_bytes: int = 100 * 1024**3) -> None:
        self.free_bytes = free_bytes
        self.checked: list[int] = []
        self.streams = 0
        self.staged: dict[str, bytes] = {}
        self.discarded: list[str] = []
        self.StageUpload = SimpleNamespace(future=self._stage)

    def CheckUploadCapacity(self, request: storage_pb2.CheckUploadCapacityRequest) -> Any:
        self.checked.append(request.size_bytes)
        if request.size_bytes > self.free_bytes:
            raise FakeRpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the store has {self.free_bytes} bytes free; an upload of {request.size_bytes} bytes does not fit",
            )
        return storage_pb2.CheckUploadCapacityResponse(max_bytes=self.free_bytes)

    def _stage(self, messages: Iterator[storage_pb2.StageUploadRequest]) -> Future:
        self.streams += 1
        result: Future = Future()

        def consume() -> None:
            data = b"".join(m.chunk for m in messages)
            upload_id = f"upl-{len(self.staged)}"
            self.staged[upload_id] = data
            result.set_result(storage_pb2.StagedUpload(upload_id=upload_id, uri=STAGED_URI, size_bytes=len(data)))

        threading.Thread(target=consume, daemon=True).start()
        return result

    def DiscardUpload(self, request: storage_pb2.DiscardUploadRequest) -> storage_pb2.DiscardUploadResponse:
        self.discarded.append(request.upload_id)
        self.staged.pop(request.upload_id, None)
        return storage_pb2.DiscardUploadResponse()

    def CreateEpisode(self, request: storage_pb2.CreateEpisodeRequest) -> storage_pb2.Episode:
        self.staged.pop(request.upload_id)
        return storage_pb2.Episode(ep_id=request.ep_id)


class FakeDetector:
    """ProbeVideo fails the way the real detector does on a file that is not a video: naming its path."""

    def ProbeVideo(self, request: detector_pb2.ProbeVideoRequest) -> detector_pb2.ProbeVideoResponse:
        if request.video_uri.startswith("file://"):
            path = request.video_uri.removeprefix("file://")
            raise FakeRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{path} has no decodable frame (not a video, or a corrupt or truncated file)",
            )
        return detector_pb2.ProbeVideoResponse(info=common_pb2.VideoInfo())


def _sessions(storage: FakeStorage, **kwargs: Any) -> UploadSessions:
    return UploadSessions(SimpleNamespace(storage=storage, detector=FakeDetector()), **kwargs)  # type: ignore[arg-type]


def _begin(sessions: UploadSessions, size: int, ep_id: str = "ep") -> orchestrator_pb2.UploadSession:
    header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id=ep_id, filename="clip.mp4")
    return sessions.begin(orchestrator_pb2.BeginUploadRequest(header=header, size_bytes=size))


def _chunk(sessions: UploadSessions, session_id: str, offset: int, data: bytes) -> orchestrator_pb2.UploadSession:
    return sessions.chunk(orchestrator_pb2.UploadChunkRequest(session_id=session_id, offset=offset, data=data))


class _As:
    def __init__(self, principal: Principal) -> None:
        self._principal = principal

    def __enter__(self) -> None:
        self._token = acting_as(self._principal)

    def __exit__(self, *_: object) -> None:
        restore(self._token)


ALICE = Principal("alice", Role.REVIEWER)
BOB = Principal("bob", Role.REVIEWER)
# The web service (or the CLI through a service) relaying for alice.
SERVICE_FOR_ALICE = Principal("service", Role.SERVICE, acting_for="alice (reviewer)")


def test_a_ten_tib_declaration_is_refused_before_a_byte_is_sent() -> None:
    storage = FakeStorage()
    sessions = _sessions(storage)  # the default limit: 64 GiB
    with pytest.raises(InvalidArgument, match="largest upload"):
        _begin(sessions, 10 * TIB)
    with pytest.raises(InvalidArgument, match="size_bytes"):
        _begin(sessions, 0)
    assert storage.checked == [] and storage.streams == 0

    # Under the size limit but over what storage has free: storage says no, nothing is opened.
    roomy = _sessions(storage, max_upload_bytes=100 * TIB)
    with pytest.raises(ResourceExhausted, match="does not fit"):
        _begin(roomy, 10 * TIB)
    assert storage.checked == [10 * TIB] and storage.streams == 0 and storage.staged == {}


def test_each_caller_has_a_few_uploads_open_at_most() -> None:
    storage = FakeStorage()
    sessions = _sessions(storage, max_per_caller=2)
    with _As(ALICE):
        first = _begin(sessions, 100)
        _begin(sessions, 100)
        with pytest.raises(ResourceExhausted, match="you have 2 uploads open; finish or abort one"):
            _begin(sessions, 100)
    with _As(SERVICE_FOR_ALICE), pytest.raises(ResourceExhausted, match="you have 2 uploads open"):
        _begin(sessions, 100)  # a service relaying for alice counts as alice
    with _As(BOB):
        _begin(sessions, 100)  # others are not held up by alice
    with _As(ALICE):
        sessions.abort(orchestrator_pb2.AbortUploadRequest(session_id=first.session_id))
        _begin(sessions, 100)  # a slot again
    assert storage.streams == 0  # nothing is streamed to storage before the first chunk


def test_the_global_session_limit_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "MAX_SESSIONS", 2)
    sessions = _sessions(FakeStorage(), max_per_caller=5)
    for principal in (ALICE, BOB):
        with _As(principal):
            _begin(sessions, 100)
    with _As(Principal("carol", Role.REVIEWER)), pytest.raises(Exception, match="2 uploads are already open"):
        _begin(sessions, 100)


def test_idle_sessions_are_dropped_after_three_minutes() -> None:
    assert uploads.IDLE_TIMEOUT_S == 180.0


@pytest.mark.parametrize(
    "head",
    [
        MP4_HEAD,
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",  # QuickTime MOV
        b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00",  # 3GP
        b"\x00\x00\x00\x08wide\x00\x10\x00\x00mdat",  # old QuickTime: no ftyp
        b"\x00\x00\x6c\x00moov\x00\x00\x00\x6cmvhd",
        b"\x00\x10\x00\x00mdat" + bytes(8),
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm",  # Matroska / WebM
        b"RIFF\x24\x00\x10\x00AVI LIST",
        (b"\x47\x40\x00\x10" + bytes(184)) * 3,  # MPEG-TS, 188-byte packets
        (bytes(4) + b"\x47\x40\x00\x10" + bytes(184)) * 3,  # M2TS (Blu-ray, AVCHD), 192-byte packets
        b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01",  # MPEG-PS
        b"FLV\x01\x05\x00\x00\x00\x09",
        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c",  # ASF / WMV
        b"OggS\x00\x02" + bytes(10),
    ],
    ids=["mp4", "mov", "3gp", "qt-wide", "qt-moov", "qt-mdat", "mkv", "avi", "ts", "m2ts", "ps", "flv", "asf", "ogg"],
)
def test_video_containers_are_recognised_by_their_first_bytes(head: bytes) -> None:
    assert looks_like_video(head)


def test_the_sample_videos_look_like_videos(media: Path) -> None:
    videos = sorted([*media.glob("*.mp4"), *media.glob("*.mov")])
    assert videos
    for video in videos:
        with video.open("rb") as file:
            assert looks_like_video(file.read(uploads.MAX_CHUNK_BYTES)), video.name


def test_other_files_do_not_look_like_videos(media: Path) -> None:
    rng = random.Random(7)
    heads = [rng.randbytes(64 * 1024) for _ in range(200)]
    heads += [
        b"",
        b"not a video" * 1000,
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        b"%PDF-1.7\n" + bytes(100),
        b"PK\x03\x04" + bytes(100),  # zip
        b"\x47" + bytes(300),  # one sync byte is not a transport stream
        b"RIFF\x24\x00\x10\x00WAVEfmt ",  # a RIFF that is not AVI
        b"<html><body>",
        (media / "single_face.jpg").read_bytes(),
    ]
    assert not [h[:16] for h in heads if looks_like_video(h)]


def test_a_first_chunk_that_is_no_video_is_refused_before_storage_sees_it() -> None:
    storage = FakeStorage()
    sessions = _sessions(storage)
    junk = b"not a video" * 1000
    session = _begin(sessions, len(junk))
    with pytest.raises(InvalidArgument) as refused:
        _chunk(sessions, session.session_id, 0, junk)
    assert str(refused.value) == (
        "the upload 'clip.mp4' does not start like a video file (MP4/MOV, MKV/WebM, AVI, MPEG-TS...)"
    )
    assert storage.streams == 0 and storage.staged == {}
    with pytest.raises(NotFound):  # the session is gone
        _chunk(sessions, session.session_id, 0, junk)


def test_a_probe_failure_names_the_upload_not_the_staged_path() -> None:
    storage = FakeStorage()
    sessions = _sessions(storage)
    data = MP4_HEAD + b"garbage" * 100
    session = _begin(sessions, len(data))
    _chunk(sessions, session.session_id, 0, data)
    with pytest.raises(InvalidArgument) as refused:
        sessions.finish(orchestrator_pb2.FinishUploadRequest(session_id=session.session_id))
    message = str(refused.value)
    assert "'clip.mp4'" in message and "not a readable video" in message and "no decodable frame" in message
    assert "/srv" not in message and "staging" not in message and "file:" not in message
    assert storage.streams == 1 and storage.staged == {} and storage.discarded == ["upl-0"]
