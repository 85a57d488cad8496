"""The asyncio client, over grpc.aio: the same constructor, results and errors as faceflow.client.Client.

It has no upload: the chunked upload's resume logic is synchronous, and an upload is bound by the
network, not by waiting, so it gains little from asyncio. Upload with the sync client in a thread:

    episode = await asyncio.to_thread(Client(address, token=token).upload, "episode.mp4", "ep1")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from faceflow.client._channel import TlsOptions, TokenSource, open_aio_channel
from faceflow.client._follow import PATIENCE_S, SUBMIT_PATIENCE_S, TRANSIENT, Backoff, JobFollower, Outage, terminal
from faceflow.client._requests import LONG_CALL_S, artifact_request, submit_request
from faceflow.client.errors import FaceflowError, InvalidArgument, translate
from faceflow.client.models import Episode, Job, Progress, RunOptions, RunResult
from faceflow.client.tables import (
    Identities,
    Jobs,
    ScreenTime,
    Timeline,
    Tracks,
    parse_tracks,
)
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc


class AsyncClient:
    """A faceflow deployment over grpc.aio; see faceflow.client.Client for the arguments.

    Create it inside the running event loop, and `await close()` (or use `async with`)."""

    def __init__(
        self,
        address: str,
        *,
        token: TokenSource | None = None,
        tls: bool | TlsOptions = False,
        storage_address: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be positive, got {timeout_s}")
        self.address = address
        self.storage_address = storage_address or address
        self.timeout_s = timeout_s
        self.backoff = Backoff()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._channel = open_aio_channel(address, tls, token)
        self._storage_channel = (
            self._channel if self.storage_address == address else open_aio_channel(self.storage_address, tls, token)
        )
        self._orchestrator: Any = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        self._storage: Any = storage_pb2_grpc.StorageServiceStub(self._storage_channel)

    async def close(self) -> None:
        await self._channel.close()
        if self._storage_channel is not self._channel:
            await self._storage_channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as error:
            raise translate(error) from error

    async def _stream(self, method: Any, request: Any, timeout_s: float | None = None) -> AsyncGenerator[Any, None]:
        call = method(request, timeout=timeout_s)
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise translate(error) from error
        finally:
            call.cancel()

    # ---- jobs -----------------------------------------------------------------------------------------

    async def submit(
        self, episode: str, options: RunOptions | None = None, *, idempotency_key: str | None = None
    ) -> Job:
        """Queue a run of `episode` and return its job (see Client.submit)."""
        request = submit_request(episode, options, idempotency_key)
        outage = Outage("submitting", SUBMIT_PATIENCE_S, self.backoff)
        while True:
            try:
                return Job.from_proto(await self._call(self._orchestrator.SubmitJob, request))
            except TRANSIENT as error:
                await self._sleep(outage.failed(error.details))

    async def run(
        self,
        episode: str,
        options: RunOptions | None = None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        idempotency_key: str | None = None,
        patience_s: float = PATIENCE_S,
    ) -> RunResult:
        """Submit a run and wait for it to end (see Client.run); JobFailed / JobCancelled otherwise."""
        job = await self.submit(episode, options, idempotency_key=idempotency_key)
        follower = JobFollower(job.job_id, patience_s, self.backoff)
        async for progress in self._follow(follower):
            if on_progress is not None:
                on_progress(progress)
        return follower.result()

    def watch(self, job_id: str, *, patience_s: float = PATIENCE_S) -> AsyncIterator[Progress]:
        """A job's progress until it ends, across orchestrator restarts: `async for p in client.watch(id)`."""
        return self._follow(JobFollower(job_id, patience_s, self.backoff))

    async def _follow(self, follower: JobFollower) -> AsyncIterator[Progress]:
        request = orchestrator_pb2.WatchJobRequest(job_id=follower.job_id)
        while True:
            error: FaceflowError | None = None
            try:
                async with contextlib.aclosing(self._stream(self._orchestrator.WatchJob, request)) as stream:
                    async for message in stream:
                        yield follower.message(message)
                        if terminal(message):
                            return
            except FaceflowError as broken:
                error = broken
            await self._sleep(follower.broke(error))

    async def job(self, job_id: str) -> Job:
        request = orchestrator_pb2.GetJobRequest(job_id=job_id)
        return Job.from_proto(await self._call(self._orchestrator.GetJob, request))

    async def jobs(self, episode: str | None = None) -> Jobs:
        request = orchestrator_pb2.ListJobsRequest(ep_id=episode or "")
        response = await self._call(self._orchestrator.ListJobs, request)
        return Jobs(tuple(Job.from_proto(j) for j in response.jobs))

    async def cancel(self, job_id: str) -> Job:
        request = orchestrator_pb2.CancelJobRequest(job_id=job_id)
        return Job.from_proto(await self._call(self._orchestrator.CancelJob, request))

    # ---- episodes and results -------------------------------------------------------------------------

    async def episode(self, episode: str) -> Episode:
        request = storage_pb2.GetEpisodeRequest(ep_id=episode)
        return Episode.from_proto(await self._call(self._storage.GetEpisode, request))

    async def screen_time(self, episode: str) -> ScreenTime:
        request = orchestrator_pb2.GetScreenTimeRequest(ep_id=episode)
        return ScreenTime.from_proto(await self._call(self._orchestrator.GetScreenTime, request))

    async def timeline(self, episode: str) -> Timeline:
        return Timeline.from_screen_time(await self.screen_time(episode))

    async def identities(self, episode: str) -> Identities:
        request = orchestrator_pb2.GetReviewRequest(ep_id=episode)
        return Identities.from_proto(await self._call(self._orchestrator.GetReview, request))

    async def tracks(self, episode: str) -> Tracks:
        request = artifact_request(episode, "tracks.jsonl")
        stream = self._stream(self._storage.GetArtifact, request, max(self.timeout_s, LONG_CALL_S))
        async with contextlib.aclosing(stream):
            return parse_tracks(episode, b"".join([m.chunk async for m in stream]))
