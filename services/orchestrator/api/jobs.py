"""Jobs: submit (idempotent per client key), watch (a stream of progress), get, cancel, list.

Jobs live in the job store (services/orchestrator/api/jobstore), not in this process: any replica answers
for any job, and a job outlives the replica that ran it. Each replica runs a dispatcher that claims
queued jobs while it has fewer than `max_running`, renews the leases of the ones it runs (a replica
that stops renewing loses them to another, which resumes them from their segment checkpoints), and
passes on cancel requests. A job runs as the caller who submitted it (its calls to other services are
audited under that name). Finished jobs stay listed for `retention_s`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from faceflow.v1 import orchestrator_pb2

from services.common.auth import Principal, Role, acting_as, audit_name, restore
from services.common.errors import Cancelled, FaceflowError, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.orchestrator.api.jobstore import Claim, JobStore
from services.orchestrator.run.pipeline import ProgressEvent, new_run_id

log = logging.getLogger(__name__)

JobState = orchestrator_pb2.JobState
TERMINAL = (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED)
# Idempotency keys are opaque to us but bounded, so a client cannot grow the store without limit.
MAX_KEY_LENGTH = 128
# Seconds between repeats of an unchanged progress: far below proxies' idle timeouts (Envoy's stream
# idle timeout here is 900 s, load balancers often 60 s), frequent enough to show a stage is alive.
HEARTBEAT_S = 20.0
# Defaults of Settings.max_running_jobs, job_retention_s and job_lease_s.
MAX_RUNNING = 2
RETENTION_S = 6 * 3600.0
LEASE_S = 15.0
# The dispatcher looks for work, cancel requests and lost leases this often (and at once on a submit).
DISPATCH_S = 0.5
# Progress within a stage is written to the store at most this often; stage and state changes always.
PROGRESS_WRITE_S = 0.5
# Finished jobs are evicted at least this often, and at most this often (on submit, get and list).
EVICT_EVERY_S = 60.0
EVICT_MIN_INTERVAL_S = 1.0

RunFn = Callable[[orchestrator_pb2.Job, Callable[[ProgressEvent], None], threading.Event], orchestrator_pb2.RunSummary]


class LeaseLost(FaceflowError):
    """Another replica took this job over (this one stopped renewing its lease in time)."""


@dataclass
class _Running:
    job: orchestrator_pb2.Job
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    last_write: float = 0.0


# Checks a run's submit; returns its options as the job records them (resolved).
Validate = Callable[[str, orchestrator_pb2.RunOptions], orchestrator_pb2.RunOptions]


class JobManager:
    def __init__(
        self,
        run: RunFn | dict[str, RunFn],
        labels: Callable[[], dict[str, str]],
        validate: Validate = lambda _ep, options: options,
        *,
        store: JobStore,
        owner: str = "",
        max_running: int = MAX_RUNNING,
        retention_s: float = RETENTION_S,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.time,
        on_abandoned: Callable[[orchestrator_pb2.Job], None] = lambda _job: None,
    ) -> None:
        if max_running < 1:
            raise InvalidArgument(f"max_running must be >= 1, got {max_running}")
        self._runners = run if isinstance(run, dict) else {"run": run}
        # Raises before a job exists (unknown episode, unreadable video); returns the options resolved.
        self._validate = validate
        self._labels = labels  # detector/tracker/device shown in every progress message
        self._store = store
        self._owner = owner or f"orchestrator-{uuid.uuid4().hex[:8]}"
        self._max_running = max_running
        self._retention_s = retention_s
        self._lease_s = lease_s
        self._clock = clock
        self._on_abandoned = on_abandoned  # a run that failed or was cancelled: remove its folder
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # one claimer at a time in this replica (submit or dispatcher)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._last_beat = self._last_evict = 0.0

    # ---- the API --------------------------------------------------------------------------------

    def submit(
        self, ep_id: str, options: orchestrator_pb2.RunOptions, key: str, kind: str = "run", run_id: str = ""
    ) -> orchestrator_pb2.Job:
        validate_id("episode", ep_id)
        if kind not in self._runners:
            raise InvalidArgument(f"unknown job kind {kind!r}; available: {', '.join(self._runners)}")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidArgument(f"idempotency_key is longer than {MAX_KEY_LENGTH} characters")
        if kind == "run":
            options = self._validate(ep_id, options)
        job_id = "job-" + uuid.uuid4().hex[:12]
        labels = self._labels()
        job = orchestrator_pb2.Job(
            job_id=job_id,
            ep_id=ep_id,
            options=options,
            idempotency_key=key,
            kind=kind,
            # A run's id is fixed at submit: every attempt (a resume after a crash) writes the same run.
            run_id=run_id or (new_run_id() if kind == "run" else ""),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            submitted_by=audit_name(),
            progress=orchestrator_pb2.Progress(
                job_id=job_id,
                ep_id=ep_id,
                state=JobState.JOB_STATE_QUEUED,
                detector=options.detector,
                tracker=options.tracker,
                device=labels.get("device", ""),
            ),
        )
        self._evict()
        stored, _created = self._store.create(job, self._clock())
        self.start()
        self._fill_slots()  # a free slot takes it now, not at the dispatcher's next tick
        return self._get(stored.job_id)

    def get(self, job_id: str) -> orchestrator_pb2.Job:
        validate_id("job", job_id)
        self._evict()
        return self._get(job_id)

    def list(self, ep_id: str = "") -> list[orchestrator_pb2.Job]:
        self._evict()
        return [self._presented(job) for job in self._store.list(ep_id)]

    def cancel(self, job_id: str) -> orchestrator_pb2.Job:
        """A queued job ends at once (it never runs); a running one is asked to stop, wherever it runs."""
        validate_id("job", job_id)
        job = self._store.request_cancel(job_id, self._clock())
        if job is None:
            raise self._not_found(job_id)
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.cancelled.set()
        return self._get(job_id)

    def watch(
        self, job_id: str, is_active: Callable[[], bool], heartbeat_s: float = HEARTBEAT_S
    ) -> Iterator[orchestrator_pb2.Progress]:
        """The current progress, then every change (and the same state again every heartbeat_s, so
        proxies never see an idle stream), until the job ends or the client goes away."""
        validate_id("job", job_id)
        last: orchestrator_pb2.Progress | None = None
        seen = -1
        sent = time.monotonic()
        while is_active():
            version = self._store.version(job_id)
            if version < 0:
                if last is None:
                    raise self._not_found(job_id)
                return  # evicted while watched: it had ended
            if version == seen and time.monotonic() - sent < heartbeat_s:
                # A queued job's place in line moves when others start: look again every second.
                if last is not None and last.state == JobState.JOB_STATE_QUEUED:
                    progress = self._get(job_id).progress
                    if progress.message != last.message:
                        last, sent = progress, time.monotonic()
                        yield progress
                        continue
                self._store.wait_for_change(job_id, seen, min(1.0, heartbeat_s))
                continue
            seen = version
            sent = time.monotonic()
            last = self._get(job_id).progress
            yield last
            if last.state in TERMINAL:
                return

    # ---- the dispatcher -------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming work (idempotent): at warm-up, so a restarted replica resumes jobs at once."""
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch_forever, name="job-dispatcher", daemon=True)
                self._dispatcher.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def busy(self) -> bool:
        """Whether a job thread of this replica is still running."""
        with self._lock:
            return bool(self._running)

    def hand_over(self) -> None:
        """On shutdown (a rolling update, a scale-down): stop claiming, stop the running jobs without
        ending them, and let their leases lapse now, so another replica resumes them at once from their
        checkpoints instead of after a lease period. On a single replica they resume at its restart."""
        self.stop()
        with self._lock:
            running = dict(self._running)
        for entry in running.values():
            entry.lost.set()  # written by nobody here any more: not cancelled, not failed
            entry.cancelled.set()
        if running:
            self._store.heartbeat(self._owner, list(running), self._clock(), 0.0)
            log.info("jobs handed over", extra={"jobs": sorted(running)})

    def _dispatch_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                self._tick()
            except Exception:  # the store is down for a moment: keep the replica alive, retry
                log.exception("job dispatcher failed; retrying")
            self._wake.wait(DISPATCH_S)
            self._wake.clear()

    def _tick(self) -> None:
        now = self._clock()
        with self._lock:
            running = dict(self._running)
        if running and now - self._last_beat >= self._lease_s / 3:
            kept = set(self._store.heartbeat(self._owner, list(running), now, self._lease_s))
            self._last_beat = now
            for job_id, entry in running.items():
                if job_id not in kept:
                    log.warning("job lease lost; another replica has it", extra={"job_id": job_id})
                    entry.lost.set()
                    entry.cancelled.set()
        for job_id, entry in running.items():
            if not entry.cancelled.is_set() and self._store.cancel_requested(job_id):
                entry.cancelled.set()
        self._fill_slots()
        if now - self._last_evict >= EVICT_EVERY_S:
            self._evict()  # with no reads at all, still evicted

    def _fill_slots(self) -> None:
        """Claim jobs (this replica's or anyone's) while this replica has free slots."""
        with self._claiming:
            while len(self._running) < self._max_running and not self._stopped.is_set():
                claim = self._store.claim(self._owner, self._clock(), self._lease_s)
                if claim is None:
                    break
                self._start(claim)

    def _start(self, claim: Claim) -> None:
        entry = _Running(claim.job)
        with self._lock:
            self._running[claim.job.job_id] = entry
        threading.Thread(
            target=self._execute, args=(entry, claim.resumed), name=claim.job.job_id, daemon=True
        ).start()

    # ---- running one job ------------------------------------------------------------------------

    def _execute(self, entry: _Running, resumed: bool) -> None:
        job = entry.job
        # The job's calls to other services are made for its submitter (audit lines name them).
        token = acting_as(Principal("job", Role.SERVICE, acting_for=job.submitted_by))
        try:
            self._write(entry, state=JobState.JOB_STATE_RUNNING, message="resumed" if resumed else "started")

            def report(event: ProgressEvent) -> None:
                self._report(entry, event)

            if entry.cancelled.is_set():
                raise Cancelled("the job was cancelled before it started")
            summary = self._runners[job.kind](job, report, entry.cancelled)
        except Exception as error:
            if entry.lost.is_set() or isinstance(error, LeaseLost):
                return  # handed over, or another replica runs it now: write nothing, remove nothing
            if isinstance(error, Cancelled):
                self._finish(entry, JobState.JOB_STATE_CANCELLED, str(error))
            elif isinstance(error, FaceflowError):
                self._finish(entry, JobState.JOB_STATE_FAILED, str(error))
            else:  # a bug: keep the service alive, report it on the job
                log.exception("job crashed", extra={"job_id": job.job_id})
                self._finish(entry, JobState.JOB_STATE_FAILED, f"internal error: {error}")
        else:
            job.progress.summary.CopyFrom(summary)
            self._write(
                entry,
                terminal=True,
                state=JobState.JOB_STATE_SUCCEEDED,
                stage=orchestrator_pb2.Stage.STAGE_DONE,
                message="done",
                eta_s=0.0,
            )
        finally:
            restore(token)
            with self._lock:
                self._running.pop(job.job_id, None)
            self._wake.set()  # a slot is free

    def _report(self, entry: _Running, event: ProgressEvent) -> None:
        if entry.lost.is_set():
            raise LeaseLost(f"job {entry.job.job_id} is now run by another replica")
        progress = entry.job.progress
        urgent = event.stage != progress.stage or bool(event.tracker_settings)
        fields: dict[str, object] = {
            "stage": event.stage,
            "frames_done": event.frames_done,
            "frames_total": event.frames_total,
            "fps": event.fps,
            "eta_s": event.eta_s,
            "tracks_so_far": event.tracks_so_far,
            "message": event.message,
        }
        if event.tracker_settings:
            fields["tracker_settings"] = event.tracker_settings
        for name, value in fields.items():
            setattr(progress, name, value)
        if urgent or time.monotonic() - entry.last_write >= PROGRESS_WRITE_S:
            self._write(entry)

    def _finish(self, entry: _Running, state: int, message: str) -> None:
        job = entry.job
        job.error = message
        self._write(entry, terminal=True, state=state, message=message)
        if job.kind == "run" and job.run_id:
            try:
                self._on_abandoned(job)
            except FaceflowError as error:
                log.warning("could not remove an abandoned run", extra={"job_id": job.job_id, "error": str(error)})

    def _write(self, entry: _Running, terminal: bool = False, **fields: object) -> None:
        for name, value in fields.items():
            setattr(entry.job.progress, name, value)
        entry.last_write = time.monotonic()
        if not self._store.update(self._owner, entry.job, self._clock()) and not terminal:
            entry.lost.set()
            raise LeaseLost(f"job {entry.job.job_id} is now run by another replica")

    # ---- reading --------------------------------------------------------------------------------

    def _evict(self) -> None:
        """Forget jobs that finished more than retention_s ago: one indexed DELETE, a write transaction,
        so at most once a second however many reads ask for it."""
        now = self._clock()
        if now - self._last_evict < EVICT_MIN_INTERVAL_S:
            return
        self._store.evict_finished(now - self._retention_s)
        self._last_evict = now

    def _get(self, job_id: str) -> orchestrator_pb2.Job:
        job = self._store.get(job_id)
        if job is None:
            raise self._not_found(job_id)
        return self._presented(job)

    def _presented(self, job: orchestrator_pb2.Job) -> orchestrator_pb2.Job:
        if job.progress.state == JobState.JOB_STATE_QUEUED and job.queue_position:
            job.progress.message = (
                f"queued at position {job.queue_position} (at most {self._max_running} jobs run at once per replica)"
            )
        return job

    def _not_found(self, job_id: str) -> NotFound:
        return NotFound(f"job {job_id!r} does not exist: finished jobs are kept for {_duration(self._retention_s)}")


def _duration(seconds: float) -> str:
    """6 hours, 1 hour, 90 minutes: how long finished jobs are kept, for a person."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
