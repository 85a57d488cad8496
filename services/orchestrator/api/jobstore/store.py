"""The JobStore contract. Engines: sqlite.py (embedded default) and postgres.py (FACEFLOW_JOBS_DSN)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from faceflow.v1 import orchestrator_pb2


@dataclass(frozen=True)
class Claim:
    """A job this replica now runs: the record as claimed, and whether it ran before (a resume)."""

    job: orchestrator_pb2.Job
    resumed: bool  # it was RUNNING under another owner whose lease ran out (or this owner, restarted)


class JobStore(Protocol):
    """Every method is atomic and safe from many threads and many processes at once.

    Times are seconds since the epoch (time.time()), passed in by the caller so tests can move them.
    `version` of a job grows by one on every change; watchers compare it.
    """

    def create(self, job: orchestrator_pb2.Job, now: float) -> tuple[orchestrator_pb2.Job, bool]:
        """Insert a QUEUED job. If job.idempotency_key is set and a job with that key exists, return that
        one and False instead (never a second job for one key); else the new job and True."""
        ...

    def get(self, job_id: str) -> orchestrator_pb2.Job | None:
        """The job with its current queue_position (1 = next to be claimed; 0 unless QUEUED)."""
        ...

    def version(self, job_id: str) -> int:
        """The job's change counter (-1: no such job)."""
        ...

    def list(self, ep_id: str = "") -> builtins.list[orchestrator_pb2.Job]:
        """Jobs in submit order (with queue positions), of one episode or all."""
        ...

    def claim(self, owner: str, now: float, lease_s: float) -> Claim | None:
        """Take the oldest job that is QUEUED, or RUNNING with a lease older than `now` (its owner died),
        for `owner` until now + lease_s; set its state RUNNING. None when there is nothing to take.
        PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE."""
        ...

    def heartbeat(self, owner: str, job_ids: builtins.list[str], now: float, lease_s: float) -> builtins.list[str]:
        """Extend the leases of `owner`'s running jobs; return the ids it still owns (a job whose lease
        was lost to another replica is not in the answer: stop working on it)."""
        ...

    def update(self, owner: str, job: orchestrator_pb2.Job, now: float) -> bool:
        """Write the job's progress/state/error/summary/run_id if `owner` still holds its lease; False if
        not (the caller must stop). A terminal state (SUCCEEDED/FAILED/CANCELLED) releases the lease and
        records finished_at."""
        ...

    def request_cancel(self, job_id: str, now: float) -> orchestrator_pb2.Job | None:
        """A QUEUED job becomes CANCELLED at once; a RUNNING one is flagged for its owner to stop.
        None when there is no such job."""
        ...

    def cancel_requested(self, job_id: str) -> bool: ...

    def evict_finished(self, before: float) -> int:
        """Delete terminal jobs that finished before `before` (and free their idempotency keys)."""
        ...

    def wait_for_change(self, job_id: str, seen_version: int, timeout_s: float) -> int:
        """Block until the job's version differs from seen_version or timeout_s passes; return the
        version now. PostgreSQL: LISTEN/NOTIFY; SQLite: polling (and an in-process condition)."""
        ...

    def close(self) -> None: ...


def open_store(dsn: str, data_root: Path) -> JobStore:
    """`postgresql://...` -> PostgreSQL; empty -> SQLite at DATA_ROOT/jobs.sqlite3. Migrations are
    applied on open (versioned SQL, the same files for both engines)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        from services.orchestrator.api.jobstore.postgres import PostgresStore

        return PostgresStore(dsn)
    if dsn:
        from services.common.errors import InvalidArgument

        raise InvalidArgument("FACEFLOW_JOBS_DSN must be a postgresql:// URL (empty: SQLite in the data root)")
    from services.orchestrator.api.jobstore.sqlite import SqliteStore

    data_root.mkdir(parents=True, exist_ok=True)
    return SqliteStore(data_root / "jobs.sqlite3")
