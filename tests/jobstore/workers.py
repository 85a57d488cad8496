"""What the contract tests run in other processes (spawned: they import only this module)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from faceflow.v1 import orchestrator_pb2

from services.orchestrator.api.jobstore import open_store


def create_keys(dsn: str, data_root: Path, tag: str, keys: list[str], start: Any, out: Any) -> None:
    """Create one job per key (job ids carry `tag`), all at once with the other process."""
    store = open_store(dsn, data_root)
    try:
        start.wait(timeout=60)
        for key in keys:
            job, created = store.create(
                orchestrator_pb2.Job(job_id=f"{tag}-{key}", ep_id="ep", idempotency_key=key), 1.0
            )
            out.put((key, job.job_id, created))
    finally:
        store.close()


def cancel_later(dsn: str, data_root: Path, job_id: str, delay_s: float, ready: Any, out: Any) -> None:
    """Tell the parent we are up, wait `delay_s`, flag the job for cancel; report when it was committed."""
    store = open_store(dsn, data_root)
    try:
        ready.set()
        time.sleep(delay_s)
        store.request_cancel(job_id, time.time())
        out.put(time.monotonic())
    finally:
        store.close()


def open_at_once(dsn: str, data_root: Path, start: Any, out: Any) -> None:
    """Open the store together with the other openers; report the migrations this open applied."""
    start.wait(timeout=60)
    store = open_store(dsn, data_root)
    try:
        out.put(list(store.migrated))  # type: ignore[attr-defined]
    finally:
        store.close()
