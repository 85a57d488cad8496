"""The same contract tests on both engines: SQLite in a temporary data root, and a real PostgreSQL
server on loopback (one per session, a fresh database per test)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from services.orchestrator.api.jobstore import JobStore, open_store
from tests.postgres_server import PostgresServer

_databases = itertools.count()


@dataclass
class Engine:
    """Where a test's job store lives; open() is another connection to it (another replica)."""

    name: str
    dsn: str  # "" for SQLite
    data_root: Path
    stores: list[JobStore] = field(default_factory=list)

    def open(self) -> JobStore:
        store = open_store(self.dsn, self.data_root)
        self.stores.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        spec = Engine("sqlite", "", tmp_path / "data")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"jobs_{next(_databases)}"
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        spec = Engine("postgres", server.dsn_of(name), tmp_path / "data")
    yield spec
    for store in spec.stores:
        store.close()


@pytest.fixture
def store(engine: Engine) -> JobStore:
    return engine.open()
