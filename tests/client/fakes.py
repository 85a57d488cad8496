"""Scripted orchestrator and storage servicers on a real in-process gRPC server, for the client's unit
tests: they record what the client sent (requests, metadata, deadlines) and fail where told to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from faceflow.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

JS = orchestrator_pb2.JobState


def progress(state: int, done: int = 0, total: int = 100, message: str = "", **kw: Any) -> orchestrator_pb2.Progress:
    return orchestrator_pb2.Progress(
        job_id="job-1", ep_id="ep1", state=state, frames_done=done, frames_total=total, message=message, **kw
    )


@dataclass
class WatchScript:
    """What one WatchJob call sends: these messages, then (optionally) this error."""

    messages: list[orchestrator_pb2.Progress]
    error: grpc.StatusCode | None = None


@dataclass
class _Session:
    size: int
    data: bytearray = field(default_factory=bytearray)
    last: tuple[int, bytes] = (-1, b"")


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("abort returned")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.metadata: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.deadlines: dict[str, list[float | None]] = defaultdict(list)
        # method -> [(code, details), ...] to answer before doing anything
        self.failures: dict[str, list[tuple[grpc.StatusCode, str]]] = defaultdict(list)

    def enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        self.metadata[method].append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self.deadlines[method].append(context.time_remaining())
        if self.failures[method]:
            code, details = self.failures[method].pop(0)
            context.abort(code, details)


class FakeOrchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer, Recorder):
    def __init__(self) -> None:
        Recorder.__init__(self)
        self.sessions: dict[str, _Session] = {}
        self.uploaded: dict[str, bytes] = {}
        self.chunk_offsets: list[int] = []
        self.aborted: list[str] = []
        # offset -> times the chunk there is taken but answered UNAVAILABLE (a lost answer)
        self.lost_answers: dict[int, int] = {}
        # offset at which the orchestrator "restarts" once: every session is forgotten
        self.restart_at: int | None = None
        self.submits: list[orchestrator_pb2.SubmitJobRequest] = []
        self.watch_scripts: list[WatchScript] = []
        self.created: list[storage_pb2.CreateEpisodeRequest] = []
        self.placed: list[orchestrator_pb2.SetEpisodeShowRequest] = []
        self.screen_time = orchestrator_pb2.ScreenTime()
        self.review = orchestrator_pb2.ReviewState()
        self.job = orchestrator_pb2.Job(job_id="job-1", ep_id="ep1", progress=progress(JS.JOB_STATE_QUEUED))

    def BeginUpload(self, request: Any, context: Any) -> orchestrator_pb2.UploadSession:
        self.enter("BeginUpload", context)
        session_id = f"upl-{len(self.sessions) + len(self.uploaded) + 1}"
        self.sessions[session_id] = _Session(request.size_bytes)
        self.headers = request.header
        return orchestrator_pb2.UploadSession(session_id=session_id, size_bytes=request.size_bytes)

    def UploadChunk(self, request: Any, context: Any) -> orchestrator_pb2.UploadSession:
        self.enter("UploadChunk", context)
        self.chunk_offsets.append(request.offset)
        if self.restart_at is not None and request.offset >= self.restart_at:
            self.restart_at = None
            self.sessions.clear()
        session = self.sessions.get(request.session_id)
        if session is None:
            return _abort(context, grpc.StatusCode.NOT_FOUND, f"upload session {request.session_id!r} does not exist")
        if (request.offset, request.data) != session.last:
            if request.offset != len(session.data):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"expects offset {len(session.data)}")
            session.data += request.data
            session.last = (request.offset, request.data)
        if self.lost_answers.get(request.offset, 0) > 0:
            self.lost_answers[request.offset] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        return orchestrator_pb2.UploadSession(
            session_id=request.session_id, received_bytes=len(session.data), size_bytes=session.size
        )

    def FinishUpload(self, request: Any, context: Any) -> storage_pb2.Episode:
        self.enter("FinishUpload", context)
        session = self.sessions.pop(request.session_id, None)
        if session is None:
            return _abort(context, grpc.StatusCode.NOT_FOUND, "no such session")
        self.uploaded[request.session_id] = bytes(session.data)
        video = common_pb2.VideoInfo(size_bytes=len(session.data), fps=25.0, frame_count=250, duration_s=10.0)
        header = self.headers
        return storage_pb2.Episode(
            ep_id=header.ep_id,
            show_id=header.show_id,
            season=header.season,
            episode_number=header.episode_number,
            video=video,
        )

    def AbortUpload(self, request: Any, context: Any) -> orchestrator_pb2.AbortUploadResponse:
        self.enter("AbortUpload", context)
        self.aborted.append(request.session_id)
        self.sessions.pop(request.session_id, None)
        return orchestrator_pb2.AbortUploadResponse()

    def CreateEpisode(self, request: Any, context: Any) -> storage_pb2.Episode:
        self.enter("CreateEpisode", context)
        self.created.append(request)
        return storage_pb2.Episode(
            ep_id=request.ep_id, show_id=request.show_id, season=request.season, episode_number=request.episode_number
        )

    def SetEpisodeShow(self, request: Any, context: Any) -> storage_pb2.Episode:
        self.enter("SetEpisodeShow", context)
        self.placed.append(request)
        return storage_pb2.Episode(
            ep_id=request.ep_id, show_id=request.show_id, season=request.season, episode_number=request.episode_number
        )

    def SubmitJob(self, request: Any, context: Any) -> orchestrator_pb2.Job:
        self.enter("SubmitJob", context)
        self.submits.append(request)
        job = orchestrator_pb2.Job()
        job.CopyFrom(self.job)
        job.idempotency_key = request.idempotency_key
        job.options.CopyFrom(request.options)
        return job

    def WatchJob(self, request: Any, context: Any) -> Iterator[orchestrator_pb2.Progress]:
        self.enter("WatchJob", context)
        if not self.watch_scripts:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} does not exist")
        script = self.watch_scripts.pop(0)
        yield from script.messages
        if script.error is not None:
            context.abort(script.error, "the orchestrator is restarting")

    def GetJob(self, request: Any, context: Any) -> orchestrator_pb2.Job:
        self.enter("GetJob", context)
        return self.job

    def ListJobs(self, request: Any, context: Any) -> orchestrator_pb2.ListJobsResponse:
        self.enter("ListJobs", context)
        return orchestrator_pb2.ListJobsResponse(jobs=[self.job, self.job])

    def CancelJob(self, request: Any, context: Any) -> orchestrator_pb2.Job:
        self.enter("CancelJob", context)
        return self.job

    def GetScreenTime(self, request: Any, context: Any) -> orchestrator_pb2.ScreenTime:
        self.enter("GetScreenTime", context)
        return self.screen_time

    def GetReview(self, request: Any, context: Any) -> orchestrator_pb2.ReviewState:
        self.enter("GetReview", context)
        return self.review


class FakeStorage(storage_pb2_grpc.StorageServiceServicer, Recorder):
    def __init__(self) -> None:
        Recorder.__init__(self)
        self.artifacts: dict[str, bytes] = {}
        self.refs: list[storage_pb2.ArtifactRef] = []
        self.episodes: list[storage_pb2.Episode] = []
        self.listed_shows: list[str] = []

    def GetArtifact(self, request: Any, context: Any) -> Iterator[storage_pb2.GetArtifactResponse]:
        self.enter("GetArtifact", context)
        self.refs.append(request.ref)
        data = self.artifacts.get(request.ref.name)
        if data is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"artifact {request.ref.name} does not exist")
        for start in range(0, len(data), 100):
            yield storage_pb2.GetArtifactResponse(chunk=data[start : start + 100])

    def GetEpisode(self, request: Any, context: Any) -> storage_pb2.Episode:
        self.enter("GetEpisode", context)
        return storage_pb2.Episode(ep_id=request.ep_id, video=common_pb2.VideoInfo(fps=25.0))

    def ListEpisodes(self, request: Any, context: Any) -> storage_pb2.ListEpisodesResponse:
        self.enter("ListEpisodes", context)
        self.listed_shows.append(request.show_id)
        episodes = [e for e in self.episodes if not request.show_id or e.show_id == request.show_id]
        return storage_pb2.ListEpisodesResponse(episodes=episodes)


@dataclass
class Servers:
    orchestrator: FakeOrchestrator
    shared_storage: FakeStorage  # on the orchestrator's port, as behind Envoy
    storage: FakeStorage  # on a port of its own, as with `faceflow up`
    address: str
    storage_address: str


@contextmanager
def serve(tls: grpc.ServerCredentials | None = None) -> Iterator[Servers]:
    """The fake orchestrator and a fake storage on one port, and another fake storage on a second."""
    orchestrator, storage, shared_storage = FakeOrchestrator(), FakeStorage(), FakeStorage()
    main = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(orchestrator, main)
    storage_pb2_grpc.add_StorageServiceServicer_to_server(shared_storage, main)
    port = main.add_secure_port("127.0.0.1:0", tls) if tls else main.add_insecure_port("127.0.0.1:0")
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    storage_pb2_grpc.add_StorageServiceServicer_to_server(storage, other)
    other_port = other.add_secure_port("127.0.0.1:0", tls) if tls else other.add_insecure_port("127.0.0.1:0")
    main.start()
    other.start()
    try:
        yield Servers(orchestrator, shared_storage, storage, f"127.0.0.1:{port}", f"127.0.0.1:{other_port}")
    finally:
        main.stop(0)
        other.stop(0)
