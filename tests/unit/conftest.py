"""Fixtures for unit tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.api.jobs import JobManager


@pytest.fixture()
def new_manager(tmp_path: Path) -> Iterator[Callable[..., JobManager]]:
    """JobManagers over a fresh SQLite job store (the embedded default engine), stopped afterwards."""
    from services.orchestrator.api.jobstore.sqlite import SqliteStore

    made: list[tuple[JobManager, Any]] = []

    def make(*args: Any, **kwargs: Any) -> JobManager:
        store = SqliteStore(tmp_path / f"jobs-{len(made)}.sqlite3")
        manager = JobManager(*args, store=store, **kwargs)
        made.append((manager, store))
        return manager

    yield make
    for manager, _store in made:
        manager.hand_over()  # running jobs stop without writing
    deadline = time.monotonic() + 10
    while any(manager.busy() for manager, _ in made) and time.monotonic() < deadline:
        time.sleep(0.01)
    for _manager, store in made:
        store.close()
