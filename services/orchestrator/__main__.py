"""python -m services.orchestrator --port N --detector-addr A --embedder-addr B --tracker-addr C --storage-addr D"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import grpc
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.common.config import Settings
from services.common.errors import FailedPrecondition, NotFound
from services.common.grpc_errors import translate_rpc_errors
from services.common.service_main import ServiceParts, service_main
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.api.jobs import JobManager
from services.orchestrator.api.jobstore import open_store
from services.orchestrator.api.server import SERVICE_NAME, OrchestratorServicer
from services.orchestrator.api.uploads import UploadSessions
from services.orchestrator.run.harvest import harvest_crops
from services.orchestrator.run.options import RunSettings, TrackerChoices
from services.orchestrator.run.pipeline import ProgressEvent, run_episode, validate_episode


def jobs_dsn(settings: Settings) -> str:
    """FACEFLOW_JOBS_DSN, or the content of FACEFLOW_JOBS_DSN_FILE; empty: SQLite in the data root."""
    if settings.jobs_dsn or not settings.jobs_dsn_file:
        return settings.jobs_dsn
    path = Path(settings.jobs_dsn_file)
    if not path.is_file():
        raise FailedPrecondition(f"the job store DSN file {path} (FACEFLOW_JOBS_DSN_FILE) does not exist")
    return path.read_text().strip()


def build(settings: Settings) -> ServiceParts:
    clients = ServiceClients.connect(settings)

    def validate(ep_id: str, options: orchestrator_pb2.RunOptions) -> orchestrator_pb2.RunOptions:
        """Bad options, an unknown episode or an unreadable video fail the submit, not a job. The job
        records the options with the detector and tracker they resolved to."""
        settings_ = RunSettings.from_options(options, TrackerChoices.ask(clients))
        validate_episode(clients, ep_id)
        return settings_.normalized(options)

    def run(job: orchestrator_pb2.Job, report: object, cancelled: threading.Event) -> orchestrator_pb2.RunSummary:
        # The options were checked at submit; the job record holds them, resolved. The job's run id:
        # a resumed attempt writes the same run and reuses its segment checkpoints.
        settings_ = RunSettings.from_options(job.options)
        return run_episode(clients, job.ep_id, settings_, report, cancelled, run_id=job.run_id)  # type: ignore[arg-type]

    def harvest(job: orchestrator_pb2.Job, report: object, cancelled: threading.Event) -> orchestrator_pb2.RunSummary:
        return harvest_crops(clients, job, report, cancelled)  # type: ignore[arg-type]

    def remove_abandoned(job: orchestrator_pb2.Job) -> None:
        """A run that failed or was cancelled is never published: its folder (checkpoints, crops) goes."""
        with contextlib.suppress(NotFound, FailedPrecondition), translate_rpc_errors("storage"):
            clients.storage.DeleteRun(storage_pb2.DeleteRunRequest(ep_id=job.ep_id, run_id=job.run_id))

    jobs = JobManager(
        {"run": run, "harvest_crops": harvest},
        lambda: {"device": settings.device},
        validate,
        store=open_store(jobs_dsn(settings), settings.data_root),
        owner=f"{socket.gethostname()}-{os.getpid()}",
        max_running=settings.max_running_jobs,
        retention_s=settings.job_retention_s,
        lease_s=settings.job_lease_s,
        on_abandoned=remove_abandoned,
    )

    def register(server: grpc.Server) -> None:
        uploads = UploadSessions(
            clients, max_per_caller=settings.max_uploads_per_caller, max_upload_bytes=settings.max_upload_bytes
        )
        servicer = OrchestratorServicer(clients, jobs, uploads, settings.allow_local_sources)
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

    def warm_up() -> None:
        # Ready only when every dependency is: a job submitted now would otherwise fail at once.
        for channel in clients.channels:
            grpc.channel_ready_future(channel).result(timeout=120)
        jobs.start()  # claim queued work, and resume the jobs of a replica that died

    return ServiceParts(register, [SERVICE_NAME], warm_up, shut_down=jobs.hand_over)


__all__ = ["ProgressEvent", "build"]

if __name__ == "__main__":
    service_main("orchestrator", build)
