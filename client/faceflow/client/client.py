"""The synchronous client: upload, run and follow episodes, read their screen time, tracks and identities."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc

from faceflow.client import _upload
from faceflow.client._channel import TlsOptions, TokenSource, open_channel
from faceflow.client._follow import PATIENCE_S, SUBMIT_PATIENCE_S, TRANSIENT, Backoff, JobFollower, Outage, terminal
from faceflow.client._requests import LONG_CALL_S, artifact_request, s3_request, submit_request
from faceflow.client.errors import FaceflowError, InvalidArgument, translate
from faceflow.client.models import Episode, Job, Progress, RunOptions, RunResult
from faceflow.client.tables import (
    Episodes,
    Identities,
    Jobs,
    ScreenTime,
    Timeline,
    Tracks,
    parse_tracks,
)
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc


class Client:
    """A faceflow deployment, reached over gRPC.

    address: the orchestrator ("host:port"; behind Envoy, the one endpoint of every service).
    token: a JWT, or a function returning the current one (called before each call), sent as
    `authorization: Bearer ...`; None sends no credentials. tls: False (plaintext: for loopback), True
    (the system's roots) or TlsOptions. storage_address: the storage service when it is elsewhere
    (`faceflow up` prints both addresses); defaults to `address`. timeout_s: the deadline of each
    ordinary call (uploads' finish and episode creation get at least 5 minutes; progress streams none).

    Every failure is a typed FaceflowError (faceflow.client.errors). Use it as a context manager, or
    call close().
    """

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
        # Delays between attempts once the channel's own retries (about 3 s) did not help.
        self.backoff = Backoff()
        self._sleep: Callable[[float], None] = time.sleep
        self._channel = open_channel(address, tls, token)
        self._storage_channel = (
            self._channel if self.storage_address == address else open_channel(self.storage_address, tls, token)
        )
        self._orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        self._storage = storage_pb2_grpc.StorageServiceStub(self._storage_channel)

    # ---- lifecycle ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channels; calls in flight are cancelled."""
        self._channel.close()
        if self._storage_channel is not self._channel:
            self._storage_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        """A unary call with a deadline; a failure as a typed error."""
        try:
            return method(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as error:
            raise translate(error) from error

    def _stream(self, method: Any, request: Any, timeout_s: float | None = None) -> Iterator[Any]:
        """The messages of a server stream; a failure as a typed error; the call cancelled if left early."""
        call = method(request, timeout=timeout_s)
        try:
            yield from call
        except grpc.RpcError as error:
            raise translate(error) from error
        finally:
            call.cancel()

    # ---- episodes -------------------------------------------------------------------------------------

    def upload(
        self,
        source: str | Path | IO[bytes],
        episode: str,
        *,
        show: str = "default",
        season: int = 0,
        episode_number: int = 0,
        replace_video: bool = False,
        filename: str | None = None,
        size: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        chunk_bytes: int = _upload.CHUNK_BYTES,
        patience_s: float = PATIENCE_S,
    ) -> Episode:
        """Upload a video as episode `episode` (the orchestrator probes it; a file that is not a video
        never becomes an episode) and return it.

        source: a path, or a binary file object read from where it stands (a non-seekable one needs
        `size`). filename: the name the server shows (default: the file's). on_progress(sent_bytes,
        total_bytes) after each chunk. A chunk that does not land is sent again until one lands or
        nothing has for `patience_s`; if the orchestrator lost the session (it restarted), a rewindable
        source is uploaded again from the start. A failed upload is aborted on the server.
        show, season, episode_number: the show the episode belongs to, its season and its number in it
        (0: not set; a replaced video keeps the episode's own). replace_video: replace the video of an
        existing episode (its runs are kept).
        """
        with _upload.open_source(source, size, filename) as opened:
            header = orchestrator_pb2.UploadEpisodeRequest.Header(
                ep_id=episode,
                filename=opened.name,
                show_id=show,
                season=season,
                episode_number=episode_number,
                replace_video=replace_video,
            )
            stored = _upload.upload(self, opened, header, chunk_bytes, on_progress, patience_s)
        return Episode.from_proto(stored)

    def create_episode_from_s3(
        self,
        uri: str,
        episode: str,
        *,
        show: str = "default",
        season: int = 0,
        episode_number: int = 0,
        replace_video: bool = False,
    ) -> Episode:
        """An episode of a video already in the deployment's bucket ("s3://bucket/key"), without uploading
        it; show, season and episode_number as in upload()."""
        request = s3_request(uri, episode, show, replace_video)
        request.season, request.episode_number = season, episode_number
        return Episode.from_proto(
            self._call(self._orchestrator.CreateEpisode, request, max(self.timeout_s, LONG_CALL_S))
        )

    def episode(self, episode: str) -> Episode:
        return Episode.from_proto(self._call(self._storage.GetEpisode, storage_pb2.GetEpisodeRequest(ep_id=episode)))

    def episodes(self, show: str | None = None) -> Episodes:
        """Every stored episode, or only those of one show."""
        response = self._call(self._storage.ListEpisodes, storage_pb2.ListEpisodesRequest(show_id=show or ""))
        return Episodes(tuple(Episode.from_proto(e) for e in response.episodes))

    def set_episode_show(
        self, episode: str, show: str = "default", *, season: int = 0, episode_number: int = 0
    ) -> Episode:
        """Move an episode to a show, season and number (each as given: 0 clears a number)."""
        request = orchestrator_pb2.SetEpisodeShowRequest(
            ep_id=episode, show_id=show, season=season, episode_number=episode_number
        )
        return Episode.from_proto(self._call(self._orchestrator.SetEpisodeShow, request))

    # ---- jobs -----------------------------------------------------------------------------------------

    def submit(self, episode: str, options: RunOptions | None = None, *, idempotency_key: str | None = None) -> Job:
        """Queue a run of `episode` and return its job at once. A submit with the key of an earlier one
        returns that job instead of starting another (a fresh key is made when none is given, so the
        client's own retries of this call join one job)."""
        request = submit_request(episode, options, idempotency_key)
        outage = Outage("submitting", SUBMIT_PATIENCE_S, self.backoff)
        while True:
            try:
                return Job.from_proto(self._call(self._orchestrator.SubmitJob, request))
            except TRANSIENT as error:
                self._sleep(outage.failed(error.details))

    def run(
        self,
        episode: str,
        options: RunOptions | None = None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        idempotency_key: str | None = None,
        patience_s: float = PATIENCE_S,
    ) -> RunResult:
        """Submit a run and wait for it to end; its outputs are then the episode's current ones.

        on_progress(progress) for every progress message. The job is followed across orchestrator
        restarts for up to `patience_s` without an answer. Raises JobFailed or JobCancelled (with the
        job's message) when it does not succeed."""
        job = self.submit(episode, options, idempotency_key=idempotency_key)
        follower = JobFollower(job.job_id, patience_s, self.backoff)
        for progress in self._follow(follower):
            if on_progress is not None:
                on_progress(progress)
        return follower.result()

    def watch(self, job_id: str, *, patience_s: float = PATIENCE_S) -> Iterator[Progress]:
        """A job's progress from now until it ends (the current state first), across orchestrator restarts."""
        return self._follow(JobFollower(job_id, patience_s, self.backoff))

    def _follow(self, follower: JobFollower) -> Iterator[Progress]:
        request = orchestrator_pb2.WatchJobRequest(job_id=follower.job_id)
        while True:
            error: FaceflowError | None = None
            try:
                for message in self._stream(self._orchestrator.WatchJob, request):
                    yield follower.message(message)
                    if terminal(message):
                        return
            except FaceflowError as broken:
                error = broken
            self._sleep(follower.broke(error))  # raises unless it is worth watching again

    def job(self, job_id: str) -> Job:
        return Job.from_proto(self._call(self._orchestrator.GetJob, orchestrator_pb2.GetJobRequest(job_id=job_id)))

    def jobs(self, episode: str | None = None) -> Jobs:
        """Jobs the orchestrator knows (finished ones for some hours), of one episode or all, oldest first."""
        response = self._call(self._orchestrator.ListJobs, orchestrator_pb2.ListJobsRequest(ep_id=episode or ""))
        return Jobs(tuple(Job.from_proto(j) for j in response.jobs))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job, or ask a running one to stop (watch it to see it end)."""
        return Job.from_proto(
            self._call(self._orchestrator.CancelJob, orchestrator_pb2.CancelJobRequest(job_id=job_id))
        )

    # ---- results --------------------------------------------------------------------------------------

    def screen_time(self, episode: str) -> ScreenTime:
        """Seconds on screen per identity and per person, with intervals, of the current run after review."""
        request = orchestrator_pb2.GetScreenTimeRequest(ep_id=episode)
        return ScreenTime.from_proto(self._call(self._orchestrator.GetScreenTime, request))

    def timeline(self, episode: str) -> Timeline:
        """Every on-screen interval of the screen time (identity and person spans), ordered by start."""
        return Timeline.from_screen_time(self.screen_time(episode))

    def identities(self, episode: str) -> Identities:
        """The identities of the current run after review: labels, tracks, seconds."""
        request = orchestrator_pb2.GetReviewRequest(ep_id=episode)
        return Identities.from_proto(self._call(self._orchestrator.GetReview, request))

    def tracks(self, episode: str) -> Tracks:
        """The tracks of the current run (its tracks.jsonl): frames, boxes, identity."""
        request = artifact_request(episode, "tracks.jsonl")
        chunks = self._stream(self._storage.GetArtifact, request, max(self.timeout_s, LONG_CALL_S))
        return parse_tracks(episode, b"".join(m.chunk for m in chunks))
