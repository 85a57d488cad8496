"""Uploads through the chunked session (BeginUpload, UploadChunk at increasing offsets, FinishUpload).

A chunk whose call failed with UNAVAILABLE or DEADLINE_EXCEEDED is sent again, same offset and same
bytes, until it lands (the orchestrator takes a repeated chunk once) or nothing has landed for the
patience. A session the orchestrator lost (it restarted: sessions live in its memory) is begun again
from the first byte when the source can be rewound (a path, a seekable file). An upload that fails
for good is aborted, so the server frees what it received at once.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from faceflow.client._follow import TRANSIENT, Outage
from faceflow.client.errors import FaceflowError, FailedPrecondition, InvalidArgument, NotFound
from faceflow.v1 import orchestrator_pb2, storage_pb2

if TYPE_CHECKING:
    from faceflow.client.client import Client

CHUNK_BYTES = 1024 * 1024
# The orchestrator takes at most 2 MiB per chunk, and needs the first 12 bytes to tell the container.
MAX_CHUNK_BYTES = 2 * 1024 * 1024
MIN_CHUNK_BYTES = 64 * 1024
# Times a lost session is begun again from the first byte before giving up.
MAX_RESTARTS = 3
# FinishUpload probes the video and moves it into the store: longer than an ordinary call.
FINISH_TIMEOUT_S = 300.0
ABORT_TIMEOUT_S = 5.0

ProgressCallback = Callable[[int, int], None]


@dataclass
class Source:
    """The bytes to send: a stream of `size` bytes, rewindable to `start` when `start` is not None."""

    stream: IO[bytes]
    size: int
    name: str
    start: int | None

    def read(self, count: int) -> bytes:
        """Exactly `count` bytes, or fewer only at the end (pipes and sockets return short reads)."""
        parts: list[bytes] = []
        wanted = count
        while wanted > 0:
            part = self.stream.read(wanted)
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def rewind(self) -> bool:
        if self.start is None:
            return False
        self.stream.seek(self.start)
        return True


@contextlib.contextmanager
def open_source(source: str | os.PathLike[str] | IO[bytes], size: int | None, filename: str | None) -> Iterator[Source]:
    """A path is opened (and closed); a file object is used from where it stands, its size measured
    (fstat, or a seek to its end) unless given."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with path.open("rb") as stream:
            yield Source(stream, size if size is not None else path.stat().st_size, filename or path.name, 0)
        return
    start = _position(source)
    if size is None:
        size = _remaining(source, start)
    name = filename or os.path.basename(str(getattr(source, "name", "") or ""))
    yield Source(source, size, name, start)


def _position(stream: IO[bytes]) -> int | None:
    try:
        return stream.tell() if stream.seekable() else None
    except (OSError, ValueError):
        return None


def _remaining(stream: IO[bytes], start: int | None) -> int:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        info = os.fstat(stream.fileno())
        if start is not None and stat.S_ISREG(info.st_mode):
            return info.st_size - start
    if start is None:
        raise InvalidArgument("the stream cannot tell its size: pass size= (in bytes) with a non-seekable file")
    end = stream.seek(0, os.SEEK_END)
    stream.seek(start)
    return end - start


class _SessionLost(Exception):
    """The orchestrator no longer knows the upload session."""

    def __init__(self, error: NotFound) -> None:
        super().__init__(error.details)
        self.error = error


def upload(
    client: Client,
    source: Source,
    header: orchestrator_pb2.UploadEpisodeRequest.Header,
    chunk_bytes: int,
    on_progress: ProgressCallback | None,
    patience_s: float,
) -> storage_pb2.Episode:
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise InvalidArgument(f"chunk_bytes must be between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES}, got {chunk_bytes}")
    if source.size <= 0:
        raise InvalidArgument(f"the video {source.name!r} is empty")
    restarts = 0
    while True:
        session = _begin(client, header, source.size, patience_s)
        try:
            return _send(client, session.session_id, source, chunk_bytes, on_progress, patience_s)
        except _SessionLost as lost:
            restarts += 1
            if restarts > MAX_RESTARTS or not source.rewind():
                raise NotFound(
                    f"the orchestrator lost upload {session.session_id} (it restarted, or the upload sat idle) "
                    + ("and the source cannot be rewound" if source.start is None else f"{MAX_RESTARTS + 1} times")
                    + f"; upload again ({lost.error.details})"
                ) from lost.error
        except BaseException:
            _abort(client, session.session_id)
            raise


def _begin(
    client: Client, header: orchestrator_pb2.UploadEpisodeRequest.Header, size: int, patience_s: float
) -> orchestrator_pb2.UploadSession:
    request = orchestrator_pb2.BeginUploadRequest(header=header, size_bytes=size)
    outage = Outage("beginning the upload", patience_s, client.backoff)
    while True:
        try:
            session: orchestrator_pb2.UploadSession = client._call(client._orchestrator.BeginUpload, request)
            return session
        except TRANSIENT as error:
            client._sleep(outage.failed(error.details))


def _send(
    client: Client,
    session_id: str,
    source: Source,
    chunk_bytes: int,
    on_progress: ProgressCallback | None,
    patience_s: float,
) -> storage_pb2.Episode:
    outage = Outage(f"uploading {source.name or 'the video'}", patience_s, client.backoff)
    offset = 0
    if on_progress is not None:
        on_progress(0, source.size)
    while offset < source.size:
        wanted = min(chunk_bytes, source.size - offset)
        data = source.read(wanted)
        if len(data) < wanted:
            ended = offset + len(data)
            raise InvalidArgument(f"the video ended after {ended} bytes; its size was given as {source.size}")
        request = orchestrator_pb2.UploadChunkRequest(session_id=session_id, offset=offset, data=data)
        while True:
            try:
                status: orchestrator_pb2.UploadSession = client._call(client._orchestrator.UploadChunk, request)
                break
            except TRANSIENT as error:
                client._sleep(outage.failed(error.details))
            except NotFound as error:  # the only NotFound of UploadChunk: no such session
                raise _SessionLost(error) from error
        outage.recovered()
        if status.received_bytes != offset + len(data):
            raise FailedPrecondition(
                f"upload {session_id} holds {status.received_bytes} bytes after the chunk at {offset}; "
                f"expected {offset + len(data)}"
            )
        offset = status.received_bytes
        if on_progress is not None:
            on_progress(offset, source.size)
    finish = orchestrator_pb2.FinishUploadRequest(session_id=session_id)
    while True:
        try:
            timeout = max(client.timeout_s, FINISH_TIMEOUT_S)
            episode: storage_pb2.Episode = client._call(client._orchestrator.FinishUpload, finish, timeout)
            return episode
        except TRANSIENT as error:  # a retried finish returns the episode the first one made
            client._sleep(outage.failed(error.details))
        except NotFound as error:
            if outage.ongoing:  # the session went away with the orchestrator that held it
                raise _SessionLost(error) from error
            raise


def _abort(client: Client, session_id: str) -> None:
    """Best effort: the orchestrator drops an idle session after a few minutes anyway."""
    with contextlib.suppress(FaceflowError):
        request = orchestrator_pb2.AbortUploadRequest(session_id=session_id)
        client._call(client._orchestrator.AbortUpload, request, ABORT_TIMEOUT_S)
