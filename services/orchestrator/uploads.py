"""Episode uploads: the streamed UploadEpisode and the chunked session for clients that cannot stream.

A browser over gRPC-Web can only make unary and server-streaming calls, so it uploads with
BeginUpload -> UploadChunk(offset, data)... -> FinishUpload. Each session feeds one StageUpload stream
to storage as the chunks arrive (the bytes are never collected here), and FinishUpload runs the same
probe-then-create path as UploadEpisode: a file that is not a readable video never becomes an episode.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

import grpc
from faceflow.v1 import detector_pb2, orchestrator_pb2, storage_pb2

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.orchestrator.clients import ServiceClients

Header: TypeAlias = orchestrator_pb2.UploadEpisodeRequest.Header

# Bytes per chunk: well under the 4 MiB gRPC message a default client or proxy accepts.
MAX_CHUNK_BYTES = 2 * 1024 * 1024
# A session with no call for this long is aborted (a closed tab never says goodbye).
IDLE_TIMEOUT_S = 600.0
# Seconds between sweeps for idle sessions.
REAP_INTERVAL_S = 30.0
# Open sessions at once; each holds a storage stream and a staging file.
MAX_SESSIONS = 16
# Chunks queued towards storage before UploadChunk waits: backpressure, not buffering.
QUEUE_CHUNKS = 4
# Seconds UploadChunk waits for storage to take a chunk, and FinishUpload for storage to commit.
STORAGE_WAIT_S = 120.0


def create_from_staged(
    clients: ServiceClients, header: Header, staged: storage_pb2.StagedUpload
) -> storage_pb2.Episode:
    """Probe a staged upload through the detector and move it into the episode; discard it on any failure."""
    try:
        try:
            with translate_rpc_errors("detector"):
                probe = detector_pb2.ProbeVideoRequest(video_uri=staged.uri)
                info = clients.detector.ProbeVideo(probe).info
        except InvalidArgument as error:
            raise InvalidArgument(f"the upload {header.filename!r} is not a readable video: {error}") from None
        with translate_rpc_errors("storage"):
            return clients.storage.CreateEpisode(
                storage_pb2.CreateEpisodeRequest(
                    ep_id=header.ep_id,
                    upload_id=staged.upload_id,
                    video=info,
                    show_id=header.show_id,
                    replace_video=header.replace_video,
                )
            )
    except BaseException:
        discard_staged(clients, staged.upload_id)
        raise


def discard_staged(clients: ServiceClients, upload_id: str) -> None:
    with contextlib.suppress(NotFound), translate_rpc_errors("storage"):
        clients.storage.DiscardUpload(storage_pb2.DiscardUploadRequest(upload_id=upload_id))


@dataclass
class _Session:
    session_id: str
    header: Header
    size_bytes: int
    chunks: queue.Queue[bytes | None] = field(default_factory=lambda: queue.Queue(QUEUE_CHUNKS))
    call: grpc.Future = field(init=False)
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

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def begin(self, request: orchestrator_pb2.BeginUploadRequest) -> orchestrator_pb2.UploadSession:
        header = request.header
        validate_id("episode", header.ep_id)
        if request.size_bytes <= 0:
            raise InvalidArgument(f"size_bytes must be the file's size in bytes (> 0), got {request.size_bytes}")
        with self._lock:
            if self._reaper is None:  # started with the first upload: an idle orchestrator runs no thread
                self._reaper = threading.Thread(target=self._reap, name="upload-reaper", daemon=True)
                self._reaper.start()
            if sum(1 for s in self._sessions.values() if s.episode is None) >= MAX_SESSIONS:
                raise Unavailable(f"{MAX_SESSIONS} uploads are already open; retry when one has finished")
            session = _Session("upl-" + uuid.uuid4().hex, header, request.size_bytes)
            # The storage stream starts now: a storage that is down fails the first chunk, not the last.
            session.call = self._clients.storage.StageUpload.future(session.messages())
            self._sessions[session.session_id] = session
        return session.status()

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

    def _check_stream(self, session: _Session) -> None:
        """Storage refused the stream already (too large, storage down): say so and drop the session."""
        if session.call.done():
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
        if session.episode is not None:
            return
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
