"""The shared engine: PostgreSQL (FACEFLOW_JOBS_DSN), for orchestrator replicas on several nodes.

Row locks do the exclusion SQLite gets from its single writer: claim takes the oldest claimable row
with FOR UPDATE SKIP LOCKED (replicas claiming at once take different jobs, nobody waits), update
and cancel lock the row they read (SELECT ... FOR UPDATE). Every change sends NOTIFY faceflow_jobs
'<job_id>' in its transaction (delivered on commit); one listener thread per store LISTENs on its
own connection and wakes this process's waiters. While the listener is down (it reconnects by
itself) waiters poll every 0.25 s, and every 2 s even when it is up, as a safety net.
Connections come from a small pool (no psycopg_pool dependency: the store needs only a bounded list).
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import pq

from services.orchestrator.api.jobstore.base import Changes, Pool, SqlJobStore
from services.orchestrator.api.jobstore.migrate import MIGRATION_LOCK, migrate

CHANNEL = "faceflow_jobs"
POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10
RECONNECT_S = (0.25, 0.5, 1.0, 2.0, 5.0)  # listener's waits between attempts while the server is away
_log = logging.getLogger(__name__)


class PostgresStore(SqlJobStore):
    _lock = " FOR UPDATE"
    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _unique_violation = (psycopg.errors.UniqueViolation,)

    def __init__(self, dsn: str, pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        self._dsn = dsn
        self._pool: Pool[psycopg.Connection[Any]] = Pool(
            self._connect, _reusable, lambda c: c.close(), pool_size, alive=_alive
        )
        self._sql_cache: dict[str, str] = {}
        # The versions this open applied (empty when another replica, or an earlier run, did).
        self.migrated = migrate(self._migration, "%s")
        self._listener = _Listener(dsn, self._changes)
        self._listener.start()

    def _connect(self) -> psycopg.Connection[Any]:
        # autocommit: a transaction is exactly a `with conn.transaction()` block, nothing is left open.
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def _sql(self, text: str) -> str:
        converted = self._sql_cache.get(text)
        if converted is None:
            converted = self._sql_cache[text] = text.replace("?", "%s")
        return converted

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[psycopg.Cursor[Any]]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if not durable:
                # Commit without waiting for the WAL flush (this transaction only): a server crash may
                # lose the last fraction of a second of such commits, never corrupt or half-apply one.
                cur.execute("SET LOCAL synchronous_commit = off")
            yield cur

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def _migration(self) -> Iterator[psycopg.Cursor[Any]]:
        """A transaction holding the migration lock: concurrent openers apply each file once."""
        with self._write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            yield cur

    def _announce(self, cur: Any, job_ids: list[str]) -> None:
        for job_id in job_ids:
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, job_id))

    def _poll_s(self) -> float:
        return 2.0 if self._listener.listening.is_set() else 0.25

    def close(self) -> None:
        self._listener.stop(self._wake_listener)
        self._pool.close()

    def _wake_listener(self) -> None:
        with self._read() as cur:
            cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


def _reusable(conn: psycopg.Connection[Any]) -> bool:
    return not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """An idle connection has nothing to read; one the server ended (a restart, an administrator, an
    idle timeout) has its goodbye or EOF waiting. One syscall, no round trip."""
    if conn.closed:
        return False
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return not readable


class _Listener(threading.Thread):
    """LISTEN faceflow_jobs on a dedicated connection; each notification ticks the job's waiters."""

    def __init__(self, dsn: str, changes: Changes) -> None:
        super().__init__(name="jobstore-listener", daemon=True)
        self._dsn = dsn
        self._changes = changes
        self._stopping = threading.Event()
        self.listening = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    failures = 0
                    self._changes.changed_all()  # whatever happened while nobody listened
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            if self._stopping.is_set():
                                break
                            self._changes.changed([notice.payload])
            except Exception as error:  # whatever went wrong, the thread lives on and reconnects
                if self._stopping.is_set():
                    break
                if self.listening.is_set() or not failures:
                    _log.warning("job store listener lost its connection (%s); polling until it is back", error)
                failures += 1
            finally:
                self.listening.clear()
            self._stopping.wait(RECONNECT_S[min(failures, len(RECONNECT_S)) - 1] if failures else 0)

    def stop(self, wake: Callable[[], None]) -> None:
        """`wake` sends a notification, so notifies() returns now rather than at its next timeout."""
        self._stopping.set()
        if self.listening.is_set():
            with suppress(psycopg.Error, RuntimeError, TimeoutError):
                wake()
        self.join(timeout=5.0)
