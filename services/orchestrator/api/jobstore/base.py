"""What both engines share: the JobStore logic in portable SQL, the record codec, wake-ups, a pool.

The queries are written once, with `?` placeholders (psycopg's `%s` is substituted by the
PostgreSQL engine). An engine supplies connections and transactions: `_write()` must exclude every
other writer of the rows it reads (SQLite: BEGIN IMMEDIATE, one writer per database; PostgreSQL:
the row locks of `_lock`/`_skip_locked`), `_read()` runs single statements, and `_announce()` tells
other processes a job changed (PostgreSQL: NOTIFY; SQLite: nothing, they poll).
"""

from __future__ import annotations

import base64
import builtins
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

from faceflow.v1 import orchestrator_pb2

from services.orchestrator.api.jobstore.store import Claim

JobState = orchestrator_pb2.JobState
TERMINAL = (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED)
QUEUED, RUNNING = "QUEUED", "RUNNING"
CANCELLED_BEFORE_START = "the job was cancelled before it started"

_JOB_COLUMNS = """j.record, j.state,
    CASE WHEN j.state = 'QUEUED'
         THEN (SELECT COUNT(*) FROM jobs q WHERE q.state = 'QUEUED' AND q.seq <= j.seq)
         ELSE 0 END"""
_NEXT_SEQ = "UPDATE counters SET value = value + 1 WHERE name = 'job_seq' RETURNING value"
# Positions of every queued job in one pass (a list must number the whole queue, not one episode).
_LIST = """SELECT j.record, j.state, COALESCE(q.position, 0) FROM jobs j
    LEFT JOIN (SELECT job_id, ROW_NUMBER() OVER (ORDER BY seq) AS position FROM jobs WHERE state = 'QUEUED') q
    ON q.job_id = j.job_id"""


def state_name(state: int) -> str:
    """JOB_STATE_RUNNING -> "RUNNING", the `state` column's spelling."""
    return JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


def encode(job: orchestrator_pb2.Job) -> str:
    return base64.b64encode(job.SerializeToString()).decode("ascii")


def decode(record: str, state: str, position: int = 0) -> orchestrator_pb2.Job:
    """The stored Job with the columns that are authoritative over it: state and queue position."""
    job = orchestrator_pb2.Job.FromString(base64.b64decode(record))
    job.progress.state = JobState.Value("JOB_STATE_" + state)
    job.queue_position = int(position)
    return job


class Changes:
    """Wakes threads in wait_for_change when their job changes, without a query per waiter per change.

    Writers in this process (after commit) and PostgreSQL's listener call `changed`; only jobs someone
    waits on are counted. Waiters recheck the store when their job's tick moves or a poll interval
    passes (changes made by other processes, when nothing tells us about them).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ticks: dict[str, int] = {}
        self._waiters: dict[str, int] = {}

    def changed(self, job_ids: Iterable[str]) -> None:
        with self._cond:
            hit = False
            for job_id in job_ids:
                if job_id in self._ticks:
                    self._ticks[job_id] += 1
                    hit = True
            if hit:
                self._cond.notify_all()

    def changed_all(self) -> None:
        """Something may have changed that nobody announced (a lost listener): everyone looks again."""
        with self._cond:
            for job_id in self._ticks:
                self._ticks[job_id] += 1
            self._cond.notify_all()

    @contextmanager
    def watching(self, job_id: str) -> Iterator[Callable[[int | None, float], int]]:
        """Yields wait(tick, timeout) -> tick: wait(None, 0) reads the tick; wait(tick, t) blocks until
        it differs or t seconds pass."""
        with self._cond:
            self._waiters[job_id] = self._waiters.get(job_id, 0) + 1
            self._ticks.setdefault(job_id, 0)

        def wait(tick: int | None, timeout: float) -> int:
            with self._cond:
                if tick is not None:
                    self._cond.wait_for(lambda: self._ticks[job_id] != tick, timeout)
                return self._ticks[job_id]

        try:
            yield wait
        finally:
            with self._cond:
                self._waiters[job_id] -= 1
                if not self._waiters[job_id]:
                    del self._waiters[job_id], self._ticks[job_id]


C = TypeVar("C")


class Pool(Generic[C]):
    """A few open connections shared by all threads. Why not one per thread: the orchestrator starts
    a thread per job, and a connection per thread would outlive its thread until close()."""

    def __init__(
        self,
        connect: Callable[[], C],
        reusable: Callable[[C], bool],
        close: Callable[[C], None],
        max_size: int,
        alive: Callable[[C], bool] = lambda _: True,
    ) -> None:
        # reusable(conn): may it go back to the pool after use; alive(conn): is an idle one still good
        # (a server restart leaves dead connections in the pool: each would fail one call).
        self._connect, self._reusable, self._close, self._alive = connect, reusable, close, alive
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_size)
        self._closed = False

    @contextmanager
    def connection(self, wait_s: float = 30.0) -> Iterator[C]:
        if not self._slots.acquire(timeout=wait_s):
            raise TimeoutError(f"no job store connection free within {wait_s} s")
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the job store is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is not None and not self._alive(conn):
                self._close(conn)
                conn = None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            finally:
                with self._lock:
                    keep = not self._closed and self._reusable(conn)
                    if keep:
                        self._idle.append(conn)
                if not keep:
                    self._close(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)


class SqlJobStore:
    """The JobStore methods (see store.py for their contract) on top of an engine's transactions."""

    _lock = ""  # appended to a SELECT of a row about to change
    _skip_locked = ""  # appended to claim's SELECT
    _unique_violation: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._changes = Changes()

    # ---- what an engine provides ------------------------------------------------------------------

    def _write(self, durable: bool = True) -> AbstractContextManager[Any]:
        """durable=False: the commit may be lost with the database server (never half-applied), for
        writes that are cheap to lose: a progress step or a lease renewal is repeated soon anyway."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text

    def _poll_s(self) -> float:
        """How often wait_for_change looks at the store itself (changes nobody may tell it about)."""
        return 0.25

    def _announce(self, cur: Any, job_ids: list[str]) -> None:
        """Inside the writing transaction: let other processes know (delivered on commit)."""

    def close(self) -> None:
        raise NotImplementedError

    # ---- helpers ----------------------------------------------------------------------------------

    def _x(self, cur: Any, text: str, params: tuple[Any, ...] = ()) -> Any:
        cur.execute(self._sql(text), params)
        return cur

    def _changed(self, cur: Any, job_ids: list[str]) -> None:
        if job_ids:
            self._announce(cur, job_ids)

    # ---- the contract -----------------------------------------------------------------------------

    def create(self, job: orchestrator_pb2.Job, now: float) -> tuple[orchestrator_pb2.Job, bool]:
        if not job.job_id:
            raise ValueError("a job needs its job_id before it is stored")
        key = job.idempotency_key or None
        if key:
            existing = self._by_key(key)
            if existing is not None:
                return existing, False
        record = orchestrator_pb2.Job()
        record.CopyFrom(job)
        record.progress.state = JobState.JOB_STATE_QUEUED
        record.queue_position = 0
        try:
            with self._write() as cur:
                (seq,) = self._x(cur, _NEXT_SEQ).fetchone()
                self._x(
                    cur,
                    "INSERT INTO jobs (job_id, seq, ep_id, kind, idempotency_key, state, version, created_at,"
                    " updated_at, record) VALUES (?, ?, ?, ?, ?, 'QUEUED', 1, ?, ?, ?)",
                    (job.job_id, seq, job.ep_id, job.kind, key, now, now, encode(record)),
                )
                self._changed(cur, [job.job_id])
        except self._unique_violation:
            # Another process inserted the same key between our look and our insert: the UNIQUE
            # constraint refused ours; theirs is the job.
            existing = self._by_key(key) if key else None
            if existing is None:
                raise
            return existing, False
        self._changes.changed([job.job_id])
        created = self.get(job.job_id)
        assert created is not None
        return created, True

    def _by_key(self, key: str) -> orchestrator_pb2.Job | None:
        with self._read() as cur:
            row = self._x(cur, f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.idempotency_key = ?", (key,)).fetchone()
        return decode(*row) if row else None

    def get(self, job_id: str) -> orchestrator_pb2.Job | None:
        with self._read() as cur:
            row = self._x(cur, f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.job_id = ?", (job_id,)).fetchone()
        return decode(*row) if row else None

    def version(self, job_id: str) -> int:
        with self._read() as cur:
            row = self._x(cur, "SELECT version FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0]) if row else -1

    def list(self, ep_id: str = "") -> list[orchestrator_pb2.Job]:
        with self._read() as cur:
            if ep_id:
                rows = self._x(cur, f"{_LIST} WHERE j.ep_id = ? ORDER BY j.seq", (ep_id,)).fetchall()
            else:
                rows = self._x(cur, f"{_LIST} ORDER BY j.seq").fetchall()
        return [decode(*row) for row in rows]

    def claim(self, owner: str, now: float, lease_s: float) -> Claim | None:
        with self._write() as cur:
            row = self._x(
                cur,
                "SELECT job_id, state, record FROM jobs"
                " WHERE state = 'QUEUED' OR (state = 'RUNNING' AND lease_until < ?)"
                f" ORDER BY seq LIMIT 1{self._skip_locked}",
                (now,),
            ).fetchone()
            if row is None:
                return None
            job_id, state, record = row
            job = decode(record, RUNNING)
            job.attempts += 1  # 2 and more: a replica died running it, and this one resumes it
            resumed = state == RUNNING
            job.progress.message = "resumed: the replica running it stopped" if resumed else "started"
            self._x(
                cur,
                "UPDATE jobs SET state = 'RUNNING', owner = ?, lease_until = ?, version = version + 1,"
                " updated_at = ?, record = ? WHERE job_id = ?",
                (owner, now + lease_s, now, encode(job), job_id),
            )
            self._changed(cur, [job_id])
        self._changes.changed([job_id])
        return Claim(job, resumed)

    def heartbeat(self, owner: str, job_ids: builtins.list[str], now: float, lease_s: float) -> builtins.list[str]:
        """A renewal is not a change of the job: version stays, nobody is woken. A lease that ran out
        is renewed too as long as no other owner took the job (it is only lost once taken)."""
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        with self._write(durable=False) as cur:
            rows = self._x(
                cur,
                f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND state = 'RUNNING' AND job_id IN ({marks})"
                " RETURNING job_id",
                (now + lease_s, owner, *job_ids),
            ).fetchall()
        owned = {r[0] for r in rows}
        return [job_id for job_id in job_ids if job_id in owned]

    def update(self, owner: str, job: orchestrator_pb2.Job, now: float) -> bool:
        """Like heartbeat, the owner holds the job until another owner takes it (not merely until its
        lease time passes): a late update from a stalled owner nobody replaced is still accepted."""
        state = job.progress.state
        if state != JobState.JOB_STATE_RUNNING and state not in TERMINAL:
            raise ValueError(f"update() writes a RUNNING or finished job, not {JobState.Name(state)}")
        with self._write(durable=state in TERMINAL) as cur:
            row = self._x(
                cur, f"SELECT owner, state, record FROM jobs WHERE job_id = ?{self._lock}", (job.job_id,)
            ).fetchone()
            if row is None or row[0] != owner or row[1] != RUNNING:
                return False
            stored = decode(row[2], RUNNING)
            stored.progress.CopyFrom(job.progress)
            stored.error = job.error
            stored.run_id = job.run_id  # attempts and the rest stay as the store has them
            if state in TERMINAL:
                self._x(
                    cur,
                    "UPDATE jobs SET state = ?, owner = NULL, lease_until = NULL, finished_at = ?,"
                    " version = version + 1, updated_at = ?, record = ? WHERE job_id = ?",
                    (state_name(state), now, now, encode(stored), job.job_id),
                )
            else:
                self._x(
                    cur,
                    "UPDATE jobs SET version = version + 1, updated_at = ?, record = ? WHERE job_id = ?",
                    (now, encode(stored), job.job_id),
                )
            self._changed(cur, [job.job_id])
        self._changes.changed([job.job_id])
        return True

    def request_cancel(self, job_id: str, now: float) -> orchestrator_pb2.Job | None:
        with self._write() as cur:
            row = self._x(
                cur, f"SELECT state, record, cancel_requested FROM jobs WHERE job_id = ?{self._lock}", (job_id,)
            ).fetchone()
            if row is None:
                return None
            state, record, flagged = row
            changed = True
            if state == QUEUED:
                job = decode(record, "CANCELLED")
                job.progress.message = job.error = CANCELLED_BEFORE_START
                self._x(
                    cur,
                    "UPDATE jobs SET state = 'CANCELLED', cancel_requested = 1, finished_at = ?,"
                    " version = version + 1, updated_at = ?, record = ? WHERE job_id = ?",
                    (now, now, encode(job), job_id),
                )
            elif state == RUNNING and not flagged:
                self._x(
                    cur,
                    "UPDATE jobs SET cancel_requested = 1, version = version + 1, updated_at = ? WHERE job_id = ?",
                    (now, job_id),
                )
            else:  # finished, or already flagged: nothing changes
                changed = False
            if changed:
                self._changed(cur, [job_id])
        if changed:
            self._changes.changed([job_id])
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._read() as cur:
            row = self._x(cur, "SELECT cancel_requested FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def evict_finished(self, before: float) -> int:
        with self._write() as cur:
            gone = [
                r[0]
                for r in self._x(cur, "DELETE FROM jobs WHERE finished_at < ? RETURNING job_id", (before,)).fetchall()
            ]
            self._changed(cur, gone)
        self._changes.changed(gone)
        return len(gone)

    def wait_for_change(self, job_id: str, seen_version: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        with self._changes.watching(job_id) as wait:
            while True:
                tick = wait(None, 0)  # before reading: a change after the read moves it
                version = self.version(job_id)
                remaining = deadline - time.monotonic()
                if version != seen_version or remaining <= 0:
                    return version
                wait(tick, min(self._poll_s(), remaining))
