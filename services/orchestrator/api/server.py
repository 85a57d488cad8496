"""gRPC OrchestratorService: episodes in, jobs run, progress streamed, people enrolled."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from faceflow.v1 import detector_pb2, orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.common.access import episode_for_caller
from services.common.auth import audit_name, current_principal
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.common.placement import check_placement
from services.common.sampling import MAX_STRIDE
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.api.episodes import set_episode_show
from services.orchestrator.api.jobs import JobManager
from services.orchestrator.api.uploads import (
    NOT_A_VIDEO,
    UploadSessions,
    create_from_object,
    create_from_staged,
    looks_like_video,
    upload_name,
)
from services.orchestrator.facebank.enrolment import enroll_person, reembed_facebank
from services.orchestrator.facebank.promotion import add_to_facebank
from services.orchestrator.review.service import ReviewService
from services.orchestrator.run.options import DETECTORS, TrackerChoices
from services.orchestrator.shows.service import ShowService

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self, clients: ServiceClients, jobs: JobManager, uploads: UploadSessions, allow_local_sources: bool = False
    ) -> None:
        self._clients = clients
        self._jobs = jobs
        self._uploads = uploads
        # Settings.allow_local_sources: the local stack's trusted CLI may name a file on this disk.
        self._allow_local_sources = allow_local_sources
        self._review = ReviewService(clients)
        self._shows = ShowService(clients, self._review)

    def CreateEpisode(
        self, request: storage_pb2.CreateEpisodeRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        validate_id("episode", request.ep_id)
        if request.upload_id:
            raise InvalidArgument("upload_id is internal to storage: upload with BeginUpload or UploadEpisode")
        check_placement(request.show_id, request.season, request.episode_number)
        if request.source_uri:
            return episode_for_caller(create_from_object(self._clients, request))
        if not request.source_path:
            raise InvalidArgument(
                "no video: upload it (BeginUpload/UploadChunk/FinishUpload or UploadEpisode), or name one already "
                "in the bucket as source_uri (s3://BUCKET/KEY)"
            )
        principal = current_principal()
        if not (self._allow_local_sources and principal is not None and principal.is_service):
            # Never a path or URL from a remote caller: it would make the detector read server files
            # or fetch from the cluster's network (SSRF).
            raise PermissionDenied(
                "a video is taken only as an upload (BeginUpload/UploadChunk/FinishUpload or UploadEpisode); "
                "server paths are accepted only from the local CLI of a local stack"
            )
        if not request.source_path.startswith("/") or "://" in request.source_path:
            raise InvalidArgument("source_path must be an absolute path on this machine")
        # Probe first: a file that is not a readable video never enters the store.
        with translate_rpc_errors("detector"):
            info = self._clients.detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri=request.source_path)).info
        stored = storage_pb2.CreateEpisodeRequest()
        stored.CopyFrom(request)
        stored.video.CopyFrom(info)
        with translate_rpc_errors("storage"):
            return episode_for_caller(self._clients.storage.CreateEpisode(stored))

    def UploadEpisode(
        self, request_iterator: Iterator[orchestrator_pb2.UploadEpisodeRequest], context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first UploadEpisode message must carry the episode header")
        header = first.header
        validate_id("episode", header.ep_id)
        check_placement(header.show_id, header.season, header.episode_number)  # before a byte is staged
        # The first chunk is read before storage sees a byte: a non-video is refused with nothing staged.
        head = next(request_iterator, None)
        if head is None or head.WhichOneof("payload") != "chunk" or not head.chunk:
            raise InvalidArgument("the upload is empty: send the video's bytes after the header")
        if not looks_like_video(head.chunk):
            raise InvalidArgument(f"the upload {upload_name(header)!r} {NOT_A_VIDEO}")

        def staged_messages() -> Iterator[storage_pb2.StageUploadRequest]:
            yield storage_pb2.StageUploadRequest(filename=header.filename or "upload.mp4")
            yield storage_pb2.StageUploadRequest(chunk=head.chunk)
            for message in request_iterator:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument("only the first UploadEpisode message may carry the header")
                yield storage_pb2.StageUploadRequest(chunk=message.chunk)

        # Bytes stream straight through to storage; nothing is kept in this process.
        with translate_rpc_errors("storage"):
            staged = self._clients.storage.StageUpload(staged_messages())
        return episode_for_caller(create_from_staged(self._clients, header, staged))

    def BeginUpload(
        self, request: orchestrator_pb2.BeginUploadRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.UploadSession:
        return self._uploads.begin(request)

    def UploadChunk(
        self, request: orchestrator_pb2.UploadChunkRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.UploadSession:
        return self._uploads.chunk(request)

    def FinishUpload(
        self, request: orchestrator_pb2.FinishUploadRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        return episode_for_caller(self._uploads.finish(request))

    def AbortUpload(
        self, request: orchestrator_pb2.AbortUploadRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.AbortUploadResponse:
        return self._uploads.abort(request)

    def SubmitJob(
        self, request: orchestrator_pb2.SubmitJobRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.Job:
        return self._jobs.submit(request.ep_id, request.options, request.idempotency_key)

    def RunEpisode(
        self, request: orchestrator_pb2.SubmitJobRequest, context: grpc.ServicerContext
    ) -> Iterator[orchestrator_pb2.Progress]:
        job = self._jobs.submit(request.ep_id, request.options, request.idempotency_key)
        yield from self._jobs.watch(job.job_id, context.is_active)

    def HarvestCrops(
        self, request: orchestrator_pb2.HarvestCropsRequest, context: grpc.ServicerContext
    ) -> Iterator[orchestrator_pb2.Progress]:
        if request.run_id:
            validate_id("run", request.run_id)
        job = self._jobs.submit(
            request.ep_id, orchestrator_pb2.RunOptions(), request.idempotency_key, "harvest_crops", request.run_id
        )
        yield from self._jobs.watch(job.job_id, context.is_active)

    def WatchJob(
        self, request: orchestrator_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[orchestrator_pb2.Progress]:
        yield from self._jobs.watch(request.job_id, context.is_active)

    def GetJob(self, request: orchestrator_pb2.GetJobRequest, context: grpc.ServicerContext) -> orchestrator_pb2.Job:
        return self._jobs.get(request.job_id)

    def CancelJob(
        self, request: orchestrator_pb2.CancelJobRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.Job:
        return self._jobs.cancel(request.job_id)

    def ListJobs(
        self, request: orchestrator_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ListJobsResponse:
        return orchestrator_pb2.ListJobsResponse(jobs=self._jobs.list(request.ep_id))

    def ReembedFacebank(
        self, request: orchestrator_pb2.ReembedFacebankRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ReembedFacebankResponse:
        return reembed_facebank(self._clients, request.show_id)

    def Review(
        self, request: orchestrator_pb2.ReviewRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ReviewState:
        validate_id("episode", request.ep_id)
        op = orchestrator_pb2.ReviewOp()
        op.CopyFrom(request.op)
        op.reviewer = audit_name()  # the verified caller, never a name the client typed
        return self._review.review(request.ep_id, op)

    def UndoReview(
        self, request: orchestrator_pb2.UndoReviewRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ReviewState:
        validate_id("episode", request.ep_id)
        return self._review.undo(request.ep_id, audit_name())

    def GetReview(
        self, request: orchestrator_pb2.GetReviewRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ReviewState:
        validate_id("episode", request.ep_id)
        return self._review.state(request.ep_id)

    def GetRunChoices(
        self, request: orchestrator_pb2.GetRunChoicesRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.RunChoices:
        trackers = TrackerChoices.ask(self._clients)
        return orchestrator_pb2.RunChoices(
            detectors=DETECTORS,
            trackers=sorted(trackers.settings),
            default_detector=DETECTORS[0],
            default_tracker=trackers.default,
            max_stride=MAX_STRIDE,
        )

    def GetScreenTime(
        self, request: orchestrator_pb2.GetScreenTimeRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ScreenTime:
        validate_id("episode", request.ep_id)
        return self._review.screen_time(request.ep_id)

    def EnrollPerson(
        self, request: orchestrator_pb2.EnrollPersonRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.EnrollPersonResponse:
        return enroll_person(self._clients, request)

    def AddToFacebank(
        self, request: orchestrator_pb2.AddToFacebankRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.AddToFacebankResponse:
        validate_id("episode", request.ep_id)
        return add_to_facebank(self._clients, self._review, request, audit_name())

    # ---- across episodes (docs/shows.md) ----------------------------------------------------------

    def SetEpisodeShow(
        self, request: orchestrator_pb2.SetEpisodeShowRequest, context: grpc.ServicerContext
    ) -> storage_pb2.Episode:
        validate_id("episode", request.ep_id)
        return set_episode_show(self._clients, request)

    def GetShowScreenTime(
        self, request: orchestrator_pb2.GetShowScreenTimeRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ShowScreenTime:
        return self._shows.screen_time(request.show_id, request.season)

    def LinkIdentities(
        self, request: orchestrator_pb2.LinkIdentitiesRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ShowScreenTime:
        return self._shows.link(request, audit_name())

    def UnlinkIdentity(
        self, request: orchestrator_pb2.UnlinkIdentityRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ShowScreenTime:
        return self._shows.unlink(request, audit_name())

    def NameShowPerson(
        self, request: orchestrator_pb2.NameShowPersonRequest, context: grpc.ServicerContext
    ) -> orchestrator_pb2.ShowScreenTime:
        return self._shows.name(request, audit_name())
