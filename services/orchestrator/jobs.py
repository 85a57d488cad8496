"""Jobs: submit (idempotent per client key), watch (a stream of progress), get, cancel, list.

At most `max_running` jobs run at once, each on its own thread started when it leaves the queue;
the others wait in submit order as QUEUED with their place in line (`queue_position`, 1 = next),
holding nothing but their Job message. A job runs as the caller who submitted it (its calls to
other services are audited under that name). Finished jobs stay listed for `retention_s`, then are
forgotten with their idempotency key. Jobs live in this orchestrator process; their results live in
storage.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from faceflow.v1 import orchestrator_pb2

from services.common.auth import audit_name
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
# Defaults of Settings.max_running_jobs and Settings.job_retention_s.
MAX_RUNNING = 2
RETENTION_S = 6 * 3600.0

RunFn = Callable[[orchestrator_pb2.Job, Callable[[ProgressEvent], None], threading.Event], orchestrator_pb2.RunSummary]


@dataclass
class _JobEntry:
    job: orchestrator_pb2.Job
    # The submitter's context (who called): the job's thread runs in it. Dropped once dispatched.
    context: contextvars.Context | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    version: int = 0
    ended_at: float | None = None  # clock() when it reached a terminal state


class JobManager:
    def __init__(
        self,
        run: RunFn | dict[str, RunFn],
        labels: Callable[[], dict[str, str]],
        validate: Callable[[str, orchestrator_pb2.RunOptions], object] = lambda *_: None,
        max_running: int = MAX_RUNNING,
        retention_s: float = RETENTION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_running < 1:
            raise InvalidArgument(f"max_running must be >= 1, got {max_running}")
        self._runners = run if isinstance(run, dict) else {"run": run}
        self._validate = validate  # raises before a job exists: unknown episode, unreadable video
        self._labels = labels  # detector/tracker/device shown in every progress message
        self._max_running = max_running
        self._retention_s = retention_s
        self._clock = clock
        self._jobs: dict[str, _JobEntry] = {}
        self._by_key: dict[str, str] = {}
        self._queue: deque[_JobEntry] = deque()  # waiting, in submit order
        self._running = 0
        self._finished: deque[_JobEntry] = deque()  # in the order they ended: eviction pops the left
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
            self._evict()
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
                submitted_by=audit_name(),
                progress=orchestrator_pb2.Progress(
                    job_id=job_id,
                    ep_id=ep_id,
                    state=JobState.JOB_STATE_QUEUED,
                    detector=options.detector or "retinaface",
                    tracker=options.tracker or "bytetrack",
                    device=labels.get("device", ""),
                ),
            )
            entry = _JobEntry(job, contextvars.copy_context())
            self._jobs[job_id] = entry
            if key:
                self._by_key[key] = job_id
            self._queue.append(entry)
            started = self._dispatch()
            self._number_queue()
            copy = self._copy(job)
        self._start(started)
        return copy

    # ---- the queue (every method here runs under self._changed) ----------------------------------

    def _dispatch(self) -> list[_JobEntry]:
        """Take jobs off the queue while slots are free; the caller starts them after the lock."""
        started = []
        while self._queue and self._running < self._max_running:
            entry = self._queue.popleft()
            self._running += 1
            entry.job.queue_position = 0
            entry.job.progress.state = JobState.JOB_STATE_RUNNING
            entry.job.progress.message = "started"
            entry.version += 1
            started.append(entry)
        if started:
            self._changed.notify_all()
        return started

    def _number_queue(self) -> None:
        """Give waiting jobs their place in line (watchers see it in the progress message)."""
        for position, entry in enumerate(self._queue, start=1):
            if entry.job.queue_position != position:
                entry.job.queue_position = position
                entry.job.progress.message = (
                    f"queued at position {position} (at most {self._max_running} jobs run at once)"
                )
                entry.version += 1
                self._changed.notify_all()

    def _end(self, entry: _JobEntry, fields: dict[str, object]) -> list[_JobEntry]:
        """Record a terminal state; a running job's slot goes to the next in line."""
        was_running = entry.job.progress.state == JobState.JOB_STATE_RUNNING
        self._apply(entry, fields)
        entry.ended_at = self._clock()
        self._finished.append(entry)
        started: list[_JobEntry] = []
        if was_running:
            self._running -= 1
            started = self._dispatch()
            self._number_queue()
        return started

    def _evict(self) -> None:
        """Forget jobs that ended more than retention_s ago, and their idempotency keys."""
        horizon = self._clock() - self._retention_s
        while self._finished and (self._finished[0].ended_at or 0.0) <= horizon:
            job = self._finished.popleft().job
            self._jobs.pop(job.job_id, None)
            if job.idempotency_key and self._by_key.get(job.idempotency_key) == job.job_id:
                del self._by_key[job.idempotency_key]

    # ---- running ----------------------------------------------------------------------------------

    def _start(self, entries: list[_JobEntry]) -> None:
        for entry in entries:
            context, entry.context = entry.context, None
            assert context is not None  # taken at submit, used once: a job is dispatched once
            thread = threading.Thread(
                target=context.run, args=(self._execute, entry), name=entry.job.job_id, daemon=True
            )
            try:
                thread.start()
            except RuntimeError as error:  # no thread to be had: fail this job, free its slot
                self._finish(
                    entry, state=JobState.JOB_STATE_FAILED, message=f"could not start: {error}", error=str(error)
                )

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
            self._finish(entry, state=JobState.JOB_STATE_CANCELLED, message=str(error), error=str(error))
        except FaceflowError as error:
            self._finish(entry, state=JobState.JOB_STATE_FAILED, message=str(error), error=str(error))
        except Exception as error:  # a bug: keep the service alive, report it on the job
            logging.getLogger(__name__).exception("job crashed", extra={"job_id": job.job_id})
            self._finish(entry, state=JobState.JOB_STATE_FAILED, message=f"internal error: {error}", error=str(error))
        else:
            self._finish(
                entry,
                state=JobState.JOB_STATE_SUCCEEDED,
                stage=orchestrator_pb2.Stage.STAGE_DONE,
                message="done",
                eta_s=0.0,
                summary=summary,
            )

    def _finish(self, entry: _JobEntry, **fields: object) -> None:
        with self._changed:
            started = self._end(entry, fields)
        self._start(started)

    def _update(self, entry: _JobEntry, **fields: object) -> None:
        with self._changed:
            self._apply(entry, fields)

    def _apply(self, entry: _JobEntry, fields: dict[str, object]) -> None:
        progress = entry.job.progress
        for name, value in fields.items():
            if name == "summary":
                progress.summary.CopyFrom(value)  # type: ignore[arg-type]
            elif name == "error":
                entry.job.error = str(value)
            else:
                setattr(progress, name, value)
        entry.version += 1
        self._changed.notify_all()

    # ---- reading and cancelling -------------------------------------------------------------------

    def _entry(self, job_id: str) -> _JobEntry:
        validate_id("job", job_id)
        entry = self._jobs.get(job_id)
        if entry is None:
            raise NotFound(
                f"job {job_id!r} does not exist: finished jobs are kept for {_duration(self._retention_s)}, "
                "and only by the orchestrator that ran them"
            )
        return entry

    @staticmethod
    def _copy(job: orchestrator_pb2.Job) -> orchestrator_pb2.Job:
        copy = orchestrator_pb2.Job()
        copy.CopyFrom(job)
        return copy

    def get(self, job_id: str) -> orchestrator_pb2.Job:
        with self._changed:
            self._evict()
            return self._copy(self._entry(job_id).job)

    def list(self, ep_id: str = "") -> list[orchestrator_pb2.Job]:
        with self._changed:
            self._evict()
            return [self._copy(e.job) for e in self._jobs.values() if not ep_id or e.job.ep_id == ep_id]

    def cancel(self, job_id: str) -> orchestrator_pb2.Job:
        """A queued job ends at once (it never runs); a running one is asked to stop."""
        with self._changed:
            self._evict()
            entry = self._entry(job_id)
            if entry.job.progress.state == JobState.JOB_STATE_QUEUED:
                self._queue.remove(entry)
                entry.context = None
                entry.job.queue_position = 0
                message = "the job was cancelled before it started"
                self._end(entry, {"state": JobState.JOB_STATE_CANCELLED, "message": message, "error": message})
                self._number_queue()
            elif entry.job.progress.state not in TERMINAL:
                entry.cancelled.set()
            return self._copy(entry.job)

    def watch(
        self, job_id: str, is_active: Callable[[], bool], heartbeat_s: float = HEARTBEAT_S
    ) -> Iterator[orchestrator_pb2.Progress]:
        """The current progress, then every change (and the same state again every heartbeat_s, so
        proxies never see an idle stream), until the job ends or the client goes away."""
        with self._changed:
            self._evict()
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


def _duration(seconds: float) -> str:
    """6 hours, 1 hour, 90 minutes: how long finished jobs are kept, for a person."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
