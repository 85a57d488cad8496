"""The JobStore contract (services/orchestrator/api/jobstore/store.py), the same tests on both engines.

Times are passed in (T0 + seconds), so leases run out without sleeping.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from faceflow.v1 import orchestrator_pb2

from services.orchestrator.api.jobstore import JobStore
from services.orchestrator.api.jobstore.migrate import load
from tests.jobstore import workers
from tests.jobstore.conftest import Engine

JobState = orchestrator_pb2.JobState
T0 = 1_700_000_000.0
LEASE = 30.0
SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent has threads (listener, pool)


def job(job_id: str, ep_id: str = "ep", key: str = "") -> orchestrator_pb2.Job:
    return orchestrator_pb2.Job(
        job_id=job_id,
        ep_id=ep_id,
        idempotency_key=key,
        kind="run",
        options=orchestrator_pb2.RunOptions(stride=5, tracker="strongsort"),
        submitted_by="alice (admin)",
        created_at="2024-01-01T00:00:00Z",
    )


def positions(jobs: list[orchestrator_pb2.Job]) -> list[tuple[str, int]]:
    return [(j.job_id, j.queue_position) for j in jobs]


def progress(claimed: orchestrator_pb2.Job, state: int = JobState.JOB_STATE_RUNNING, **fields: object):
    updated = orchestrator_pb2.Job()
    updated.CopyFrom(claimed)
    updated.progress.state = state  # type: ignore[assignment]
    for name, value in fields.items():
        setattr(updated.progress, name, value)
    return updated


def test_create_get_list_with_queue_positions(store: JobStore) -> None:
    created, is_new = store.create(job("a", "ep1"), T0)
    assert is_new and created.queue_position == 1 and created.progress.state == JobState.JOB_STATE_QUEUED
    assert created.options.tracker == "strongsort" and created.submitted_by == "alice (admin)"
    store.create(job("b", "ep2"), T0 + 1)
    store.create(job("c", "ep1"), T0 + 2)
    assert positions(store.list()) == [("a", 1), ("b", 2), ("c", 3)]
    assert positions(store.list("ep1")) == [("a", 1), ("c", 3)]  # places in the whole queue
    assert store.list("nobody") == []
    assert store.get("missing") is None and store.version("missing") == -1
    claim = store.claim("r1", T0 + 3, LEASE)
    assert claim is not None and claim.job.job_id == "a" and claim.job.queue_position == 0
    assert positions(store.list()) == [("a", 0), ("b", 1), ("c", 2)]
    got = store.get("c")
    assert got is not None and got.queue_position == 2 and got.ep_id == "ep1"


def test_create_is_idempotent_on_the_key(store: JobStore) -> None:
    first, new1 = store.create(job("a", key="k"), T0)
    second, new2 = store.create(job("b", key="k"), T0)
    assert (new1, new2) == (True, False) and second.job_id == "a"
    _, new3 = store.create(job("c"), T0)
    _, new4 = store.create(job("d"), T0)  # no key: never deduplicated (NULLs do not collide)
    assert new3 and new4 and len(store.list()) == 3


def test_idempotency_under_concurrent_threads(engine: Engine) -> None:
    stores = [engine.open(), engine.open()]
    start = threading.Barrier(8)

    def submit(n: int) -> tuple[str, bool]:
        start.wait()
        created, is_new = stores[n % 2].create(job(f"j{n}", key="same"), T0)
        return created.job_id, is_new

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(is_new for _, is_new in results) == 1
    assert len(stores[0].list()) == 1


def test_idempotency_across_processes(engine: Engine) -> None:
    engine.open()  # migrate first, so the children race on the keys, not the schema
    keys = [f"k{i}" for i in range(20)]
    start, out = SPAWN.Barrier(2), SPAWN.Queue()
    children = [
        SPAWN.Process(target=workers.create_keys, args=(engine.dsn, engine.data_root, tag, keys, start, out))
        for tag in ("p1", "p2")
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in range(2 * len(keys))]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    for key in keys:
        answers = [(job_id, new) for k, job_id, new in results if k == key]
        assert len({job_id for job_id, _ in answers}) == 1, answers
        assert sum(new for _, new in answers) == 1, answers
    assert len(engine.open().list()) == len(keys)


def test_claim_is_fifo_and_sets_running(store: JobStore) -> None:
    for n in range(3):
        store.create(job(f"j{n}"), T0 + n)
    claimed = [store.claim("r1", T0 + 10, LEASE) for _ in range(4)]
    assert [c.job.job_id if c else None for c in claimed] == ["j0", "j1", "j2", None]
    first = claimed[0]
    assert first is not None and not first.resumed
    assert first.job.progress.state == JobState.JOB_STATE_RUNNING
    stored = store.get("j0")
    assert stored is not None and stored.progress.state == JobState.JOB_STATE_RUNNING
    assert stored.options.stride == 5  # the record survives the claim


def test_two_claimers_never_get_the_same_job(engine: Engine) -> None:
    stores = [engine.open(), engine.open()]
    for n in range(40):
        stores[0].create(job(f"j{n}"), T0)
    start = threading.Barrier(6)

    def drain(n: int) -> list[str]:
        start.wait()
        got = []
        while (claim := stores[n % 2].claim(f"r{n}", T0 + 1, LEASE)) is not None:
            got.append(claim.job.job_id)
        return got

    with ThreadPoolExecutor(6) as pool:
        taken = [job_id for got in pool.map(drain, range(6)) for job_id in got]
    assert sorted(taken) == sorted(f"j{n}" for n in range(40))  # each exactly once


def test_expired_lease_is_claimed_again_as_a_resume(store: JobStore) -> None:
    store.create(job("a"), T0)
    store.create(job("b"), T0)
    first = store.claim("r1", T0, LEASE)
    assert first is not None and first.job.job_id == "a"
    # Before the lease runs out, another replica gets the next job, not this one.
    other = store.claim("r2", T0 + LEASE - 1, LEASE)
    assert other is not None and other.job.job_id == "b" and not other.resumed
    assert store.claim("r2", T0 + LEASE - 1, LEASE) is None
    # r1 stops renewing: once its lease is over, r2 takes the job (older by submit order) as a resume.
    taken = store.claim("r2", T0 + LEASE + 1, LEASE)
    assert taken is not None and taken.job.job_id == "a" and taken.resumed
    assert taken.job.progress.state == JobState.JOB_STATE_RUNNING


def test_heartbeat_keeps_the_lease_and_reports_what_was_lost(store: JobStore) -> None:
    for name in ("a", "b"):
        store.create(job(name), T0)
    store.claim("r1", T0, LEASE)
    store.claim("r1", T0, LEASE)
    assert store.heartbeat("r1", [], T0, LEASE) == []
    version = store.version("a")
    # Renewed at T0 + 20 until T0 + 50: at T0 + 40 nobody can take them.
    assert store.heartbeat("r1", ["a", "b", "unknown"], T0 + 20, LEASE) == ["a", "b"]
    assert store.version("a") == version  # a renewal wakes no watcher
    assert store.claim("r2", T0 + 40, LEASE) is None
    # r1 renews only "a"; "b" runs out and goes to r2; r1 learns it on its next heartbeat.
    assert store.heartbeat("r1", ["a"], T0 + 45, LEASE) == ["a"]
    taken = store.claim("r2", T0 + 60, LEASE)
    assert taken is not None and taken.job.job_id == "b" and taken.resumed
    assert store.heartbeat("r1", ["a", "b"], T0 + 61, LEASE) == ["a"]
    assert store.heartbeat("r2", ["a", "b"], T0 + 61, LEASE) == ["b"]


def test_update_writes_progress_and_is_refused_after_losing_the_lease(store: JobStore) -> None:
    store.create(job("a", key="k"), T0)
    claim = store.claim("r1", T0, LEASE)
    assert claim is not None
    version = store.version("a")
    running = progress(claim.job, stage=orchestrator_pb2.Stage.STAGE_DETECT_TRACK, frames_done=10, message="x")
    running.submitted_by = "mallory"  # not the update's to change
    assert store.update("r1", running, T0 + 1)
    assert store.version("a") == version + 1
    stored = store.get("a")
    assert stored is not None and stored.progress.frames_done == 10 and stored.submitted_by == "alice (admin)"
    assert not store.update("r2", running, T0 + 2)  # not the owner
    # r1's lease runs out and r2 takes the job: r1 must stop.
    assert store.claim("r2", T0 + LEASE + 1, LEASE) is not None
    assert not store.update("r1", progress(claim.job, frames_done=99), T0 + LEASE + 2)
    stored = store.get("a")
    assert stored is not None and stored.progress.frames_done == 10


def test_terminal_update_releases_the_lease(store: JobStore) -> None:
    store.create(job("a"), T0)
    claim = store.claim("r1", T0, LEASE)
    assert claim is not None
    done = progress(claim.job, JobState.JOB_STATE_SUCCEEDED, message="done")
    done.progress.summary.run_id = "run-1"
    done.run_id = "run-1"
    assert store.update("r1", done, T0 + 5)
    stored = store.get("a")
    assert stored is not None and stored.progress.state == JobState.JOB_STATE_SUCCEEDED
    assert stored.progress.summary.run_id == "run-1" and stored.run_id == "run-1"
    assert store.heartbeat("r1", ["a"], T0 + 6, LEASE) == []
    assert not store.update("r1", done, T0 + 7)  # finished: nobody holds it any more
    assert store.claim("r2", T0 + 10 * LEASE, LEASE) is None  # a finished job is never taken again
    # evict_finished sees it finished at T0 + 5
    assert store.evict_finished(T0 + 5) == 0 and store.evict_finished(T0 + 5.5) == 1


def test_cancel_queued_ends_it_and_running_is_flagged(store: JobStore) -> None:
    store.create(job("a"), T0)
    store.create(job("b"), T0)
    assert store.request_cancel("missing", T0) is None
    claim = store.claim("r1", T0, LEASE)
    assert claim is not None and claim.job.job_id == "a"
    version = store.version("a")
    running = store.request_cancel("a", T0 + 1)
    assert running is not None and running.progress.state == JobState.JOB_STATE_RUNNING
    assert store.cancel_requested("a") and store.version("a") == version + 1
    assert store.update("r1", progress(claim.job, frames_done=1), T0 + 2)  # the owner still writes
    queued = store.request_cancel("b", T0 + 1)
    assert queued is not None and queued.progress.state == JobState.JOB_STATE_CANCELLED
    assert queued.queue_position == 0 and queued.error
    assert store.claim("r2", T0 + 2, LEASE) is None  # a cancelled job never runs
    again = store.request_cancel("b", T0 + 3)  # finished: unchanged
    assert again is not None and again.progress.state == JobState.JOB_STATE_CANCELLED
    assert not store.cancel_requested("missing")
    assert store.update("r1", progress(claim.job, JobState.JOB_STATE_CANCELLED), T0 + 4)
    stored = store.get("a")
    assert stored is not None and stored.progress.state == JobState.JOB_STATE_CANCELLED


def test_evict_finished_frees_the_key(store: JobStore) -> None:
    store.create(job("a", key="k"), T0)
    store.create(job("b"), T0)
    store.request_cancel("a", T0 + 10)  # finished at T0 + 10
    assert store.evict_finished(T0 + 10) == 0
    assert store.evict_finished(T0 + 11) == 1
    assert store.get("a") is None and [j.job_id for j in store.list()] == ["b"]  # queued jobs stay
    again, is_new = store.create(job("c", key="k"), T0 + 12)
    assert is_new and again.job_id == "c"


def test_wait_for_change_wakes_on_another_connection(engine: Engine) -> None:
    watcher, writer = engine.open(), engine.open()
    writer.create(job("a"), T0)
    version = watcher.version("a")
    started = time.monotonic()
    assert watcher.wait_for_change("a", version, 0.3) == version  # nothing: times out
    assert 0.25 <= time.monotonic() - started < 1.0
    changed_at: list[float] = []

    def cancel() -> None:
        time.sleep(0.3)
        writer.request_cancel("a", T0 + 1)
        changed_at.append(time.monotonic())

    thread = threading.Thread(target=cancel)
    thread.start()
    new_version = watcher.wait_for_change("a", version, 5.0)
    woke_at = time.monotonic()
    thread.join()
    assert new_version == version + 1
    assert woke_at - changed_at[0] < 1.0
    assert watcher.wait_for_change("a", version, 5.0) == new_version  # already different: at once


def test_wait_for_change_wakes_on_another_process(engine: Engine) -> None:
    store = engine.open()
    store.create(job("a"), T0)
    store.claim("r1", T0, LEASE)
    version = store.version("a")
    ready, out = SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=workers.cancel_later, args=(engine.dsn, engine.data_root, "a", 0.5, ready, out))
    child.start()
    try:
        assert ready.wait(60)
        new_version = store.wait_for_change("a", version, 10.0)
        woke_at = time.monotonic()
        changed_at = out.get(timeout=30)
    finally:
        child.join(timeout=30)
    assert new_version == version + 1 and store.cancel_requested("a")
    assert woke_at - changed_at < 1.0


def test_migrations_are_applied_once_by_concurrent_openers(engine: Engine) -> None:
    """Two processes and two threads (each its own connection) open a new database at once."""
    start, out = SPAWN.Barrier(4), SPAWN.Queue()
    children = [
        SPAWN.Process(target=workers.open_at_once, args=(engine.dsn, engine.data_root, start, out)) for _ in range(2)
    ]
    for child in children:
        child.start()

    def opener(_: int) -> list[int]:
        start.wait(timeout=60)
        return list(engine.open().migrated)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(2) as pool:
        applied = list(pool.map(opener, range(2)))
    applied += [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    # each file once, by one of the openers
    assert sorted(version for versions in applied for version in versions) == [m.version for m in load()]
    assert engine.open().migrated == []  # type: ignore[attr-defined]


def test_reopening_keeps_the_jobs(engine: Engine) -> None:
    first = engine.open()
    first.create(job("a", key="k"), T0)
    first.create(job("b"), T0)
    claim = first.claim("r1", T0, LEASE)
    assert claim is not None
    first.update("r1", progress(claim.job, frames_done=7), T0 + 1)
    first.close()
    engine.stores.remove(first)
    second = engine.open()  # the orchestrator restarted
    assert positions(second.list()) == [("a", 0), ("b", 1)]
    stored = second.get("a")
    assert stored is not None and stored.progress.frames_done == 7
    assert second.create(job("c", key="k"), T0 + 2)[0].job_id == "a"
    third = second.create(job("d"), T0 + 2)[0]
    assert third.queue_position == 2  # submit order continues after the restart
    resumed = second.claim("r1", T0 + LEASE + 1, LEASE)  # the same replica, back: its job comes back
    assert resumed is not None and resumed.job.job_id == "a" and resumed.resumed
