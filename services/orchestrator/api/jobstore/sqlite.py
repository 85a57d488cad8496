"""The embedded engine: one SQLite file in the data root, shared by the orchestrator processes of a machine.

WAL mode: readers never wait for the writer, and a committed write survives the process (synchronous
NORMAL: it may be lost only with the machine, on a power cut, never corrupting the file; FULL also
keeps that last transaction, at an fsync per write). Writers take the database with BEGIN IMMEDIATE,
so a read-then-write (claim, update, cancel) is never interleaved with another process's, and wait
up to BUSY_TIMEOUT_S for their turn. A change made here wakes this process's waiters at once; other
processes notice within one poll (0.25 s).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from services.orchestrator.api.jobstore.base import Pool, SqlJobStore
from services.orchestrator.api.jobstore.migrate import migrate

# Longest wait for the write lock; writes hold it for well under a millisecond.
BUSY_TIMEOUT_S = 30.0
POOL_SIZE = 16
SYNCHRONOUS = ("NORMAL", "FULL")


class SqliteStore(SqlJobStore):
    _unique_violation = (sqlite3.IntegrityError,)

    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        super().__init__()
        self.path = Path(path)
        self._synchronous = synchronous
        self._pool: Pool[sqlite3.Connection] = Pool(
            self._connect, lambda conn: not conn.in_transaction, lambda conn: conn.close(), POOL_SIZE
        )
        # The versions this open applied (empty when another opener, or an earlier run, did).
        self.migrated = migrate(self._write, "?")

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, ours are explicit (BEGIN IMMEDIATE ... COMMIT).
        # check_same_thread=False: pooled connections move between threads, one thread at a time.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Cursor]:
        """One durability for all writes: the `synchronous` the store was opened with."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                with closing(conn.cursor()) as cur:
                    yield cur
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        # Closing the cursor ends its statement: a pooled connection must not carry a half-read
        # result (and with it an old snapshot) to its next user.
        with self._pool.connection() as conn, closing(conn.cursor()) as cur:
            yield cur

    def close(self) -> None:
        self._pool.close()
