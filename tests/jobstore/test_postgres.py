"""What only the PostgreSQL engine has: a pool and a listener that outlive dropped connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from faceflow.v1 import orchestrator_pb2

from services.orchestrator.api.jobstore.postgres import PostgresStore
from tests.postgres_server import PostgresServer

T0 = 1_700_000_000.0


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"drops_{time.monotonic_ns()}")


@pytest.fixture
def stores(dsn: str) -> Iterator[list[PostgresStore]]:
    opened = [PostgresStore(dsn), PostgresStore(dsn)]
    yield opened
    for store in opened:
        store.close()


def drop_connections(dsn: str) -> int:
    """What a server restart or an administrator does to every session of the database."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_calls_and_wake_ups_survive_dropped_connections(dsn: str, stores: list[PostgresStore]) -> None:
    watcher, writer = stores
    writer.create(orchestrator_pb2.Job(job_id="a", ep_id="ep"), T0)
    version = watcher.version("a")
    assert watcher._listener.listening.wait(5)
    assert drop_connections(dsn) >= 2  # pooled connections and both listeners
    time.sleep(0.2)  # the goodbyes arrive
    assert watcher.get("a") is not None  # a dead pooled connection is replaced, not handed out
    changed_at: list[float] = []

    def cancel() -> None:
        time.sleep(0.3)
        writer.request_cancel("a", T0 + 1)
        changed_at.append(time.monotonic())

    thread = threading.Thread(target=cancel)
    thread.start()
    assert watcher.wait_for_change("a", version, 5.0) == version + 1
    woke_at = time.monotonic()
    thread.join()
    assert woke_at - changed_at[0] < 1.0
    assert watcher._listener.listening.wait(5)  # it reconnected
