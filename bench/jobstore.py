"""The job store's cost per progress update, on each engine.

A running job writes its progress through JobStore.update() (one transaction: read the row under
lock, write the record, announce the change); this times that call alone, one writer, the job
table holding `--backlog` other jobs. Engines: SQLite with synchronous=NORMAL (the default: a commit
survives the process, not a power cut) and FULL (an fsync per commit), and PostgreSQL with its
default durability (a throwaway server on loopback, fsync on; or --dsn for an existing database,
whose jobs table it fills and leaves).

    python -m bench.jobstore [--updates 2000] [--backlog 200] [--dsn postgresql://...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from faceflow.v1 import orchestrator_pb2

from services.orchestrator.api.jobstore import JobStore
from services.orchestrator.api.jobstore.postgres import PostgresStore
from services.orchestrator.api.jobstore.sqlite import SqliteStore

JobState = orchestrator_pb2.JobState
LEASE_S = 30.0


def measure(store: JobStore, updates: int, backlog: int) -> dict[str, float]:
    """Time `updates` update() calls of one claimed job; per-call milliseconds."""
    tag = uuid.uuid4().hex[:8]
    now = time.time()
    store.create(orchestrator_pb2.Job(job_id=f"bench-{tag}", ep_id="bench", kind="run"), now)
    for n in range(backlog):
        store.create(orchestrator_pb2.Job(job_id=f"bench-{tag}-{n}", ep_id="bench", kind="run"), now)
    owner = f"bench-{tag}"
    claim = store.claim(owner, now, LEASE_S)
    assert claim is not None and claim.job.job_id == f"bench-{tag}", "the bench's job must be next in line"
    job = claim.job
    job.progress.frames_total = updates
    job.progress.stage = orchestrator_pb2.Stage.STAGE_DETECT_TRACK
    times = []
    for n in range(updates):
        job.progress.frames_done = n
        job.progress.fps = 25.0 + n % 7
        job.progress.message = f"detect+track: frame {n}/{updates}"
        started = time.perf_counter()
        accepted = store.update(owner, job, time.time())
        times.append((time.perf_counter() - started) * 1000)
        assert accepted
    total_s = sum(times) / 1000
    times.sort()
    return {
        "updates": updates,
        "per_s": round(updates / total_s, 1),
        "mean_ms": round(statistics.fmean(times), 3),
        "p50_ms": round(times[len(times) // 2], 3),
        "p99_ms": round(times[int(len(times) * 0.99)], 3),
    }


@contextmanager
def _sqlite(synchronous: str) -> Iterator[JobStore]:
    with tempfile.TemporaryDirectory(prefix="faceflow-bench-jobs-") as root:
        store = SqliteStore(Path(root) / "jobs.sqlite3", synchronous=synchronous)
        try:
            yield store
        finally:
            store.close()


@contextmanager
def _postgres(dsn: str) -> Iterator[JobStore]:
    if dsn:
        store = PostgresStore(dsn)
        try:
            yield store
        finally:
            store.close()
        return
    from tests.postgres_server import PostgresServer  # a test helper: only when no --dsn is given

    with (
        tempfile.TemporaryDirectory(prefix="faceflow-bench-pg-") as root,
        PostgresServer(Path(root), durable=True) as server,
    ):
        store = PostgresStore(server.dsn)
        try:
            yield store
        finally:
            store.close()


def run(updates: int, backlog: int, dsn: str = "") -> list[dict[str, object]]:
    engines: list[tuple[str, Callable[[], AbstractContextManager[JobStore]]]] = [
        ("sqlite (synchronous=NORMAL, default)", lambda: _sqlite("NORMAL")),
        ("sqlite (synchronous=FULL)", lambda: _sqlite("FULL")),
        ("postgresql (loopback, fsync on)" if not dsn else "postgresql (--dsn)", lambda: _postgres(dsn)),
    ]
    rows: list[dict[str, object]] = []
    for name, open_engine in engines:
        with open_engine() as store:
            measure(store, min(updates, 100), 0)  # warm up: connections, prepared statements, caches
            rows.append({"engine": name, **measure(store, updates, backlog)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=200, help="other jobs in the table (queued)")
    parser.add_argument("--dsn", default="", help="an existing PostgreSQL database instead of a throwaway server")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(args.updates, args.backlog, args.dsn)
    print(f"job store: cost of one progress update (JobStore.update), {args.updates} updates, one writer")
    print(f"{'engine':40} {'updates/s':>10} {'mean ms':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['engine']:40} {row['per_s']:>10} {row['mean_ms']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
