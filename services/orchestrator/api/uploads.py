"""Episode uploads: the streamed UploadEpisode and the chunked session for clients that cannot stream.

A browser over gRPC-Web can only make unary and server-streaming calls, so it uploads with
BeginUpload -> UploadChunk(offset, data)... -> FinishUpload. Each session feeds one StageUpload stream
to storage as the chunks arrive (the bytes are never collected here), and FinishUpload runs the same
probe-then-create path as UploadEpisode: a file that is not a readable video never becomes an episode.

Admission, before storage takes a byte: BeginUpload checks the declared size against the limit and
asks storage whether it fits (CheckUploadCapacity); each caller has a few sessions open at most; the
first chunk must start like a video container (`looks_like_video`), and only then is the storage
stream opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

import grpc
from faceflow.v1 import detector_pb2, orchestrator_pb2, storage_pb2

from services.common.auth import current_principal
from services.common.errors import (
    FaceflowError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.api.episodes import check_placement

Header: TypeAlias = orchestrator_pb2.UploadEpisodeRequest.Header

# Bytes per chunk: well under the 4 MiB gRPC message a default client or proxy accepts.
MAX_CHUNK_BYTES = 2 * 1024 * 1024
# A session with no call for this long is aborted (a closed tab never says goodbye). A chunk is at
# most 2 MiB, under 20 s even at 1 Mbit/s, and a client sends the next as soon as one is taken: three
# minutes of silence is a client that is gone, and its session (a storage stream, a staging file, one
# of the caller's few slots) is better freed early.
IDLE_TIMEOUT_S = 180.0
# Seconds between sweeps for idle sessions.
REAP_INTERVAL_S = 30.0
# Open sessions at once, all callers together; each holds a storage stream and a staging file.
MAX_SESSIONS = 16
# Chunks queued towards storage before UploadChunk waits: backpressure, not buffering.
QUEUE_CHUNKS = 4
# Seconds UploadChunk waits for storage to take a chunk, and FinishUpload for storage to commit.
STORAGE_WAIT_S = 120.0
# Defaults of Settings.max_uploads_per_caller and Settings.max_upload_bytes.
MAX_PER_CALLER = 4
MAX_UPLOAD_BYTES = 64 * 1024**3
# Bytes of the first chunk needed to tell a video container (RIFF....AVI is the longest signature).
SNIFF_BYTES = 12
NOT_A_VIDEO = "does not start like a video file (MP4/MOV, MKV/WebM, AVI, MPEG-TS...)"

# ISO base media (MP4, MOV, 3GP...): the first box's type at bytes 4..8. `ftyp` in any recent file;
# QuickTime files may start with their movie, data or padding boxes instead.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_SIGNATURES = (
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM (EBML)
    b"\x00\x00\x01\xba",  # MPEG program stream (pack header)
    b"FLV\x01",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF / WMV header GUID
    b"OggS",
)
_TS_SYNC = 0x47
# MPEG transport stream: 188-byte packets; M2TS (Blu-ray, AVCHD) puts a 4-byte timestamp before each.
_TS_LAYOUTS = ((0, 188), (4, 192))


def looks_like_video(head: bytes) -> bool:
    """Whether a file starting with `head` is in a video container we could probe. A cheap screen that
    keeps obvious non-videos (documents, images, archives, random bytes) out of storage; the
    detector's probe still decides whether the file is a readable video."""
    if head[4:8] in _ISO_BOXES or head.startswith(_SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    for start, packet in _TS_LAYOUTS:
        # The sync byte at the start of each of the first three packets the head holds.
        syncs = range(start, min(len(head), start + 3 * packet), packet)
        if len(syncs) and all(head[i] == _TS_SYNC for i in syncs):
            return True
    return False


def upload_name(header: Header) -> str:
    """The upload's file name as messages show it: the client's name, never a path of ours."""
    return posixpath.basename(header.filename.replace("\\", "/")) or "upload.mp4"


def _without(message: str, uri: str, name: str) -> str:
    """The message with every spelling of the staged file's location replaced by the upload's name."""
    plain = uri.removeprefix("file://")
    spellings = {uri, uri.split("?", 1)[0], plain, plain.split("?", 1)[0]} - {""}
    for spelling in sorted(spellings, key=len, reverse=True):
        message = message.replace(spelling, repr(name))
    return message


def _human_size(size: int) -> str:
    """A size for a person: 10.0 TiB, 64.0 GiB, 3.5 MiB."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1024**2:.1f} MiB"


def create_from_staged(
    clients: ServiceClients, header: Header, staged: storage_pb2.StagedUpload
) -> storage_pb2.Episode:
    """Probe a staged upload through the detector and move it into the episode; discard it on any failure.

    Errors name the upload by its file name: where it was staged is the server's business (and a
    presigned URL carries credentials)."""
    name = upload_name(header)
    try:
        return _probe_and_create(clients, header, staged, name)
    except FaceflowError as error:
        discard_staged(clients, staged.upload_id)
        raise type(error)(_without(str(error), staged.uri, name)) from None
    except BaseException:
        discard_staged(clients, staged.upload_id)
        raise


def create_from_object(clients: ServiceClients, request: storage_pb2.CreateEpisodeRequest) -> storage_pb2.Episode:
    """An episode from a video already in the bucket (s3://BUCKET/KEY): storage checks the name and
    stages a copy, then it is probed and stored exactly like an upload."""
    validate_id("episode", request.ep_id)
    check_placement(request.show_id, request.season, request.episode_number)
    with translate_rpc_errors("storage"):
        staged = clients.storage.StageObject(storage_pb2.StageObjectRequest(source_uri=request.source_uri))
    header = Header(
        ep_id=request.ep_id,
        filename=request.source_uri.rsplit("/", 1)[-1],
        show_id=request.show_id,
        replace_video=request.replace_video,
        season=request.season,
        episode_number=request.episode_number,
    )
    return create_from_staged(clients, header, staged)


def _probe_and_create(
    clients: ServiceClients, header: Header, staged: storage_pb2.StagedUpload, name: str
) -> storage_pb2.Episode:
    check_placement(header.show_id, header.season, header.episode_number)  # before the probe's work
    try:
        with translate_rpc_errors("detector"):
            info = clients.detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri=staged.uri)).info
    except InvalidArgument as error:
        raise InvalidArgument(f"the upload {name!r} is not a readable video: {error}") from None
    with translate_rpc_errors("storage"):
        return clients.storage.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(
                ep_id=header.ep_id,
                upload_id=staged.upload_id,
                video=info,
                show_id=header.show_id,
                replace_video=header.replace_video,
                season=header.season,
                episode_number=header.episode_number,
            )
        )


def discard_staged(clients: ServiceClients, upload_id: str) -> None:
    with contextlib.suppress(NotFound), translate_rpc_errors("storage"):
        clients.storage.DiscardUpload(storage_pb2.DiscardUploadRequest(upload_id=upload_id))


@dataclass
class _Session:
    session_id: str
    header: Header
    size_bytes: int
    owner: str  # the caller it counts against (audit name)
    chunks: queue.Queue[bytes | None] = field(default_factory=lambda: queue.Queue(QUEUE_CHUNKS))
    call: grpc.Future | None = None  # the storage stream, opened by the first chunk that looks like a video
    received: int = 0
    last_chunk: tuple[int, str] = (-1, "")  # (offset, sha256) of the last chunk taken, for retries
    episode: storage_pb2.Episode | None = None
    touched: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> orchestrator_pb2.UploadSession:
        return orchestrator_pb2.UploadSession(
            session_id=self.session_id, received_bytes=self.received, size_bytes=self.size_bytes
        )

    def messages(self) -> Iterator[storage_pb2.StageUploadRequest]:
        yield storage_pb2.StageUploadRequest(filename=self.header.filename or "upload.mp4")
        while (chunk := self.chunks.get()) is not None:
            yield storage_pb2.StageUploadRequest(chunk=chunk)


class UploadSessions:
    """The open chunked uploads of this orchestrator (in memory, like its jobs)."""

    def __init__(
        self,
        clients: ServiceClients,
        max_per_caller: int = MAX_PER_CALLER,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self._clients = clients
        self._max_per_caller = max_per_caller  # Settings.max_uploads_per_caller
        self._max_upload_bytes = max_upload_bytes  # Settings.max_upload_bytes
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def begin(self, request: orchestrator_pb2.BeginUploadRequest) -> orchestrator_pb2.UploadSession:
        """Admit an upload before any byte is sent: its declared size, the caller's open sessions,
        and storage's word that it fits (a storage that is down fails here, not at the last chunk)."""
        header = request.header
        validate_id("episode", header.ep_id)
        check_placement(header.show_id, header.season, header.episode_number)
        size = request.size_bytes
        if size <= 0:
            raise InvalidArgument(f"size_bytes must be the file's size in bytes (> 0), got {size}")
        if size > self._max_upload_bytes:
            raise InvalidArgument(
                f"the upload {upload_name(header)!r} is {_human_size(size)}; the largest upload taken is "
                f"{_human_size(self._max_upload_bytes)}"
            )
        owner = _caller()
        with self._lock:
            self._check_open(owner)
        with translate_rpc_errors("storage"):
            self._clients.storage.CheckUploadCapacity(storage_pb2.CheckUploadCapacityRequest(size_bytes=size))
        with self._lock:
            self._check_open(owner)  # again: the caller may have begun others meanwhile
            if self._reaper is None:  # started with the first upload: an idle orchestrator runs no thread
                self._reaper = threading.Thread(target=self._reap, name="upload-reaper", daemon=True)
                self._reaper.start()
            session = _Session("upl-" + uuid.uuid4().hex, header, size, owner)
            self._sessions[session.session_id] = session
        return session.status()

    def _check_open(self, owner: str) -> None:
        """The global limit and the caller's (under self._lock)."""
        open_sessions = [s for s in self._sessions.values() if s.episode is None]
        if len(open_sessions) >= MAX_SESSIONS:
            raise Unavailable(f"{MAX_SESSIONS} uploads are already open; retry when one has finished")
        mine = sum(1 for s in open_sessions if s.owner == owner)
        if mine >= self._max_per_caller:
            raise ResourceExhausted(
                f"you have {mine} uploads open; finish or abort one (at most {self._max_per_caller} at once, "
                f"an unused one is dropped after {IDLE_TIMEOUT_S / 60:.0f} minutes)"
            )

    def chunk(self, request: orchestrator_pb2.UploadChunkRequest) -> orchestrator_pb2.UploadSession:
        session = self._get(request.session_id)
        if len(request.data) > MAX_CHUNK_BYTES:
            raise InvalidArgument(f"a chunk may carry at most {MAX_CHUNK_BYTES} bytes, got {len(request.data)}")
        with session.lock:
            digest = hashlib.sha256(request.data).hexdigest()
            if (request.offset, digest) == session.last_chunk:
                return session.status()  # a retry of the chunk already taken
            if session.episode is not None or request.offset != session.received:
                raise FailedPrecondition(
                    f"upload {session.session_id} expects the chunk at offset {session.received}, got {request.offset}"
                )
            if session.received + len(request.data) > session.size_bytes:
                raise InvalidArgument(
                    f"the chunk at offset {request.offset} runs past the declared size of {session.size_bytes} bytes"
                )
            if session.call is None:
                self._open_stream(session, request.data)
            self._check_stream(session)
            try:
                session.chunks.put(request.data, timeout=STORAGE_WAIT_S)
            except queue.Full:
                self._drop(session)
                raise Unavailable(f"storage took no data for {STORAGE_WAIT_S:.0f} s; upload aborted") from None
            session.received += len(request.data)
            session.last_chunk = (request.offset, digest)
            return session.status()

    def finish(self, request: orchestrator_pb2.FinishUploadRequest) -> storage_pb2.Episode:
        session = self._get(request.session_id)
        with session.lock:
            if session.episode is not None:
                return session.episode  # a retried finish
            if session.received != session.size_bytes:
                raise FailedPrecondition(
                    f"upload {session.session_id} has {session.received} of {session.size_bytes} bytes; "
                    "send the rest before finishing"
                )
            assert session.call is not None  # size_bytes > 0 bytes arrived: the first chunk opened it
            try:
                session.chunks.put(None, timeout=STORAGE_WAIT_S)
                with translate_rpc_errors("storage"):
                    staged = session.call.result(timeout=STORAGE_WAIT_S)
            except BaseException:
                self._drop(session)
                raise
            try:
                session.episode = create_from_staged(self._clients, session.header, staged)
            finally:
                if session.episode is None:
                    self._forget(session)  # create_from_staged discarded the staged file
            return session.episode

    def abort(self, request: orchestrator_pb2.AbortUploadRequest) -> orchestrator_pb2.AbortUploadResponse:
        session = self._get(request.session_id)
        with session.lock:
            self._drop(session)
        return orchestrator_pb2.AbortUploadResponse()

    def _get(self, session_id: str) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"upload session {session_id!r} does not exist (finished long ago, aborted, or idle)")
        session.touched = time.monotonic()
        return session

    def _open_stream(self, session: _Session, first: bytes) -> None:
        """The first chunk must start like a video; only then does storage see the upload."""
        if len(first) < min(SNIFF_BYTES, session.size_bytes):
            raise InvalidArgument(
                f"the first chunk must carry at least {SNIFF_BYTES} bytes: the start of the file tells its format"
            )
        if not looks_like_video(first):
            self._forget(session)
            raise InvalidArgument(f"the upload {upload_name(session.header)!r} {NOT_A_VIDEO}")
        session.call = self._clients.storage.StageUpload.future(session.messages())

    def _check_stream(self, session: _Session) -> None:
        """Storage refused the stream already (too large, storage down): say so and drop the session."""
        if session.call is not None and session.call.done():
            self._drop(session)
            with translate_rpc_errors("storage"):
                session.call.result()
            raise Unavailable(f"storage ended upload {session.session_id} early")

    def _forget(self, session: _Session) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)

    def _drop(self, session: _Session) -> None:
        """Forget the session and leave nothing staged.

        The stream is ended normally and what storage staged is discarded: a cancelled request
        stream can look like a complete one to a grpcio server (its request iterator may stop
        before it learns of the cancellation), so cancelling would risk a staged leftover.
        Cancelling is the fallback when storage does not answer.
        """
        self._forget(session)
        if session.episode is not None or session.call is None:
            return  # finished, or no byte went to storage
        try:
            session.chunks.put(None, timeout=STORAGE_WAIT_S)
            staged = session.call.result(timeout=STORAGE_WAIT_S)
        except (queue.Full, grpc.FutureTimeoutError):
            session.call.cancel()
            return
        except (grpc.RpcError, grpc.FutureCancelledError):
            return  # storage refused the stream: nothing was staged
        discard_staged(self._clients, staged.upload_id)

    def _reap(self) -> None:
        while True:
            time.sleep(REAP_INTERVAL_S)
            self._expire_idle()

    def _expire_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            idle = [s for s in self._sessions.values() if now - s.touched > IDLE_TIMEOUT_S]
        for session in idle:
            with session.lock:
                self._drop(session)


def _caller() -> str:
    """Whom an upload counts against: the verified caller, or the person a service relays for."""
    principal = current_principal()
    return principal.audit_name if principal else "system"
