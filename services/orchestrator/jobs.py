"""Jobs: submit (idempotent per client key), watch (a stream of progress), get, cancel, list.

Each job runs on its own thread; watchers block on a condition and receive every state change.
Jobs live in this orchestrator process; their results live in storage.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from faceflow.v1 import orchestrator_pb2

from services.common.errors import Cancelled, FaceflowError, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.orchestrator.pipeline import ProgressEvent

JobState = orchestrator_pb2.JobState
TERMINAL = (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED)
# Idempotency keys are opaque to us but bounded, so a client cannot grow our memory without limit.
MAX_KEY_LENGTH = 128
# Seconds between repeats of an unchanged progress: far below proxies' idle timeouts (Envoy's stream
# idle timeout here is 900 s, load balancers often 60 s), frequent enough to show a stage is alive.
HEARTBEAT_S = 20.0

RunFn = Callable[[orchestrator_pb2.Job, Callable[[ProgressEvent], None], threading.Event], orchestrator_pb2.RunSummary]


@dataclass
class _JobEntry:
    job: orchestrator_pb2.Job
    cancelled: threading.Event = field(default_factory=threading.Event)
    version: int = 0


class JobManager:
    def __init__(
        self,
        run: RunFn | dict[str, RunFn],
        labels: Callable[[], dict[str, str]],
        validate: Callable[[str, orchestrator_pb2.RunOptions], object] = lambda *_: None,
    ) -> None:
        self._runners = run if isinstance(run, dict) else {"run": run}
        self._validate = validate  # raises before a job exists: unknown episode, unreadable video
        self._labels = labels  # detector/tracker/device shown in every progress message
        self._jobs: dict[str, _JobEntry] = {}
        self._by_key: dict[str, str] = {}
        self._changed = threading.Condition()

    def submit(
        self, ep_id: str, options: orchestrator_pb2.RunOptions, key: str, kind: str = "run", run_id: str = ""
    ) -> orchestrator_pb2.Job:
        validate_id("episode", ep_id)
        if kind not in self._runners:
            raise InvalidArgument(f"unknown job kind {kind!r}; available: {', '.join(self._runners)}")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidArgument(f"idempotency_key is longer than {MAX_KEY_LENGTH} characters")
        with self._changed:
            if key and key in self._by_key:
                return self._copy(self._jobs[self._by_key[key]].job)
        if kind == "run":
            self._validate(ep_id, options)
        with self._changed:
            if key and key in self._by_key:  # a concurrent retry won the race
                return self._copy(self._jobs[self._by_key[key]].job)
            job_id = "job-" + uuid.uuid4().hex[:12]
            labels = self._labels()
            job = orchestrator_pb2.Job(
                job_id=job_id,
                ep_id=ep_id,
                options=options,
                idempotency_key=key,
                kind=kind,
                run_id=run_id,
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                progress=orchestrator_pb2.Progress(
                    job_id=job_id,
                    ep_id=ep_id,
                    state=JobState.JOB_STATE_QUEUED,
                    detector=options.detector or "retinaface",
                    tracker=options.tracker or "bytetrack",
                    device=labels.get("device", ""),
                ),
            )
            entry = _JobEntry(job)
            self._jobs[job_id] = entry
            if key:
                self._by_key[key] = job_id
        threading.Thread(target=self._execute, args=(entry,), name=job_id, daemon=True).start()
        return self._copy(job)

    def _execute(self, entry: _JobEntry) -> None:
        job = entry.job

        def report(event: ProgressEvent) -> None:
            self._update(
                entry,
                state=JobState.JOB_STATE_RUNNING,
                stage=event.stage,
                frames_done=event.frames_done,
                frames_total=event.frames_total,
                fps=event.fps,
                eta_s=event.eta_s,
                tracks_so_far=event.tracks_so_far,
                message=event.message,
                **({"tracker_settings": event.tracker_settings} if event.tracker_settings else {}),
            )

        try:
            if entry.cancelled.is_set():
                raise Cancelled("the job was cancelled before it started")
            summary = self._runners[job.kind](job, report, entry.cancelled)
        except Cancelled as error:
            self._update(entry, state=JobState.JOB_STATE_CANCELLED, message=str(error), error=str(error))
        except FaceflowError as error:
            self._update(entry, state=JobState.JOB_STATE_FAILED, message=str(error), error=str(error))
        except Exception as error:  # a bug: keep the service alive, report it on the job
            logging.getLogger(__name__).exception("job crashed", extra={"job_id": job.job_id})
            self._update(entry, state=JobState.JOB_STATE_FAILED, message=f"internal error: {error}", error=str(error))
        else:
            self._update(
                entry,
                state=JobState.JOB_STATE_SUCCEEDED,
                stage=orchestrator_pb2.Stage.STAGE_DONE,
                message="done",
                eta_s=0.0,
                summary=summary,
            )

    def _update(
        self, entry: _JobEntry, *, error: str = "", summary: orchestrator_pb2.RunSummary | None = None, **fields: object
    ) -> None:
        with self._changed:
            progress = entry.job.progress
            for name, value in fields.items():
                setattr(progress, name, value)
            if summary is not None:
                progress.summary.CopyFrom(summary)
            if error:
                entry.job.error = error
            entry.version += 1
            self._changed.notify_all()

    def _entry(self, job_id: str) -> _JobEntry:
        validate_id("job", job_id)
        entry = self._jobs.get(job_id)
        if entry is None:
            raise NotFound(f"job {job_id!r} does not exist (jobs are kept by the orchestrator that ran them)")
        return entry

    @staticmethod
    def _copy(job: orchestrator_pb2.Job) -> orchestrator_pb2.Job:
        copy = orchestrator_pb2.Job()
        copy.CopyFrom(job)
        return copy

    def get(self, job_id: str) -> orchestrator_pb2.Job:
        with self._changed:
            return self._copy(self._entry(job_id).job)

    def list(self, ep_id: str = "") -> list[orchestrator_pb2.Job]:
        with self._changed:
            return [self._copy(e.job) for e in self._jobs.values() if not ep_id or e.job.ep_id == ep_id]

    def cancel(self, job_id: str) -> orchestrator_pb2.Job:
        entry = self._entry(job_id)
        entry.cancelled.set()
        return self.get(job_id)

    def watch(
        self, job_id: str, is_active: Callable[[], bool], heartbeat_s: float = HEARTBEAT_S
    ) -> Iterator[orchestrator_pb2.Progress]:
        """The current progress, then every change (and the same state again every heartbeat_s, so
        proxies never see an idle stream), until the job ends or the client goes away."""
        entry = self._entry(job_id)
        seen = -1
        sent = time.monotonic()
        while is_active():
            with self._changed:
                if entry.version == seen:
                    self._changed.wait(timeout=min(1.0, heartbeat_s))
                    if entry.version == seen and time.monotonic() - sent < heartbeat_s:
                        continue
                seen = entry.version
                sent = time.monotonic()
                progress = orchestrator_pb2.Progress()
                progress.CopyFrom(entry.job.progress)
            yield progress
            if progress.state in TERMINAL:
                return
