"""The orchestrator's job queue: at most max_running jobs run, the rest wait in order; finished jobs are
kept for retention_s, then forgotten with their idempotency key."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from faceflow.v1 import orchestrator_pb2

from services.common.auth import Principal, Role, acting_as, audit_name, restore
from services.common.errors import FailedPrecondition, NotFound
from services.orchestrator.api.jobs import JobManager

QUEUED = orchestrator_pb2.JOB_STATE_QUEUED
RUNNING = orchestrator_pb2.JOB_STATE_RUNNING
SUCCEEDED = orchestrator_pb2.JOB_STATE_SUCCEEDED
FAILED = orchestrator_pb2.JOB_STATE_FAILED
CANCELLED = orchestrator_pb2.JOB_STATE_CANCELLED
OPTIONS = orchestrator_pb2.RunOptions()


class Gated:
    """A runner whose jobs each wait until the test releases them, recording the order they start in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.started: list[str] = []
        self.callers: dict[str, str] = {}
        self.active = 0
        self.most_active = 0

    def gate(self, job_id: str) -> threading.Event:
        with self.lock:
            return self.gates[job_id]

    def __call__(
        self, job: orchestrator_pb2.Job, report: Callable[..., None], cancelled: threading.Event
    ) -> orchestrator_pb2.RunSummary:
        with self.lock:
            self.started.append(job.job_id)
            self.callers[job.job_id] = audit_name()
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if job.ep_id == "broken":
                raise FailedPrecondition("the episode's video went away")
            while not self.gate(job.job_id).wait(0.01):
                if cancelled.is_set():
                    raise FailedPrecondition("cancelled")
            return orchestrator_pb2.RunSummary(run_id="run-" + job.job_id)
        finally:
            with self.lock:
                self.active -= 1


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _final(manager: JobManager, job_id: str) -> orchestrator_pb2.Progress:
    return list(manager.watch(job_id, lambda: True))[-1]


def _states(manager: JobManager) -> dict[str, tuple[int, int]]:
    return {j.job_id: (j.progress.state, j.queue_position) for j in manager.list()}


def test_ten_jobs_two_slots_run_in_submit_order(new_manager: Callable[..., JobManager]) -> None:
    runner = Gated()
    manager = new_manager(runner, dict, max_running=2)
    ids = [manager.submit(f"ep{i}", OPTIONS, "").job_id for i in range(10)]
    _until(lambda: len(runner.started) == 2)

    # One moment: two running, eight waiting with positions 1..8 in submit order, no thread for them.
    states = _states(manager)
    assert [states[i] for i in ids[:2]] == [(RUNNING, 0)] * 2
    assert [states[i] for i in ids[2:]] == [(QUEUED, n) for n in range(1, 9)]
    assert manager.get(ids[9]).queue_position == 8
    assert sum(t.name in ids for t in threading.enumerate()) == 2  # a thread per running job only
    first = next(manager.watch(ids[9], lambda: True))
    assert first.state == QUEUED and "position 8" in first.message

    for n, job_id in enumerate(ids):
        runner.gate(job_id).set()
        assert _final(manager, job_id).state == SUCCEEDED
        if n + 2 < len(ids):  # the freed slot went to the next in line, and the line moved up
            _until(lambda n=n: len(runner.started) == n + 3)
            assert manager.get(ids[n + 2]).progress.state == RUNNING
            if n + 3 < len(ids):
                assert manager.get(ids[n + 3]).queue_position == 1
    assert set(runner.started[:2]) == set(ids[:2]) and runner.started[2:] == ids[2:]
    assert runner.most_active == 2
    assert all(j.progress.state == SUCCEEDED and j.queue_position == 0 for j in manager.list())


def test_cancelling_a_queued_job_ends_it_at_once_and_moves_the_line_up(new_manager: Callable[..., JobManager]) -> None:
    runner = Gated()
    manager = new_manager(runner, dict, max_running=1)
    running, first, second = (manager.submit(f"ep{i}", OPTIONS, "").job_id for i in range(3))
    _until(lambda: runner.started == [running])

    cancelled = manager.cancel(first)
    assert cancelled.progress.state == CANCELLED and cancelled.queue_position == 0
    assert "before it started" in cancelled.error
    assert _final(manager, first).state == CANCELLED  # a watcher of it is not left waiting
    assert manager.get(second).queue_position == 1

    runner.gate(running).set()
    runner.gate(second).set()
    assert _final(manager, second).state == SUCCEEDED
    assert first not in runner.started  # a cancelled queued job never runs
    assert manager.cancel(first).progress.state == CANCELLED  # cancelling again changes nothing


def test_a_failed_job_frees_its_slot(new_manager: Callable[..., JobManager]) -> None:
    runner = Gated()
    manager = new_manager(runner, dict, max_running=1)
    broken = manager.submit("broken", OPTIONS, "").job_id
    after = manager.submit("ep", OPTIONS, "").job_id
    assert _final(manager, broken).state == FAILED
    runner.gate(after).set()
    assert _final(manager, after).state == SUCCEEDED


def test_an_idempotency_key_returns_the_same_queued_job(new_manager: Callable[..., JobManager]) -> None:
    runner = Gated()
    manager = new_manager(runner, dict, max_running=1)
    running = manager.submit("ep0", OPTIONS, "first")
    queued = manager.submit("ep1", OPTIONS, "second")
    again = manager.submit("ep1", OPTIONS, "second")
    assert again.job_id == queued.job_id
    assert again.progress.state == QUEUED and again.queue_position == 1
    assert len(manager.list()) == 2
    runner.gate(running.job_id).set()
    runner.gate(queued.job_id).set()
    assert _final(manager, queued.job_id).state == SUCCEEDED
    assert runner.started.count(queued.job_id) == 1


def test_a_job_records_and_runs_as_its_submitter(new_manager: Callable[..., JobManager]) -> None:
    runner = Gated()
    manager = new_manager(runner, dict, max_running=1)
    token = acting_as(Principal("alice", Role.REVIEWER))
    try:
        blocker = manager.submit("ep0", OPTIONS, "")
        job = manager.submit("ep1", OPTIONS, "")  # queued: it starts from another job's thread
    finally:
        restore(token)
    anonymous = manager.submit("ep2", OPTIONS, "")
    assert job.submitted_by == "alice (reviewer)" and anonymous.submitted_by == "system"
    for j in (blocker, job, anonymous):
        runner.gate(j.job_id).set()
    assert _final(manager, anonymous.job_id).state == SUCCEEDED
    assert runner.callers == {
        blocker.job_id: "alice (reviewer)",
        job.job_id: "alice (reviewer)",
        anonymous.job_id: "system",
    }


def test_finished_jobs_are_forgotten_after_the_retention_time(new_manager: Callable[..., JobManager]) -> None:
    now = [1000.0]
    runner = Gated()
    manager = new_manager(runner, dict, max_running=1, retention_s=3 * 3600, clock=lambda: now[0])
    done = manager.submit("ep0", OPTIONS, "k")
    runner.gate(done.job_id).set()
    assert _final(manager, done.job_id).state == SUCCEEDED
    busy = manager.submit("ep1", OPTIONS, "")  # runs for ever: never evicted
    _until(lambda: manager.get(busy.job_id).progress.state == RUNNING)

    now[0] += 3 * 3600 - 1
    assert manager.get(done.job_id).job_id == done.job_id
    assert manager.submit("ep0", OPTIONS, "k").job_id == done.job_id

    now[0] += 2
    with pytest.raises(NotFound, match="finished jobs are kept for 3 hours"):
        manager.get(done.job_id)
    assert [j.job_id for j in manager.list()] == [busy.job_id]
    fresh = manager.submit("ep0", OPTIONS, "k")  # the key went with the job
    assert fresh.job_id != done.job_id and fresh.progress.state == QUEUED
    manager.cancel(fresh.job_id)
    manager.cancel(busy.job_id)
    assert _final(manager, busy.job_id).state in (FAILED, CANCELLED)


def test_a_replica_shutting_down_hands_its_jobs_over_at_once(tmp_path: Path) -> None:
    """SIGTERM (a rolling update): the job is neither failed nor cancelled, and another replica on the
    same store resumes it without waiting for the lease to run out."""
    from services.orchestrator.api.jobstore.sqlite import SqliteStore

    first_runner, second_runner = Gated(), Gated()
    stores = [SqliteStore(tmp_path / "jobs.sqlite3") for _ in range(2)]
    first = JobManager(first_runner, dict, store=stores[0], owner="a", lease_s=600)
    second = JobManager(second_runner, dict, store=stores[1], owner="b", lease_s=600)
    try:
        job = first.submit("ep", OPTIONS, "")
        _until(lambda: first_runner.started == [job.job_id])
        first.hand_over()
        second.start()
        _until(lambda: second_runner.started == [job.job_id], timeout=5)  # far inside the 600 s lease
        resumed = second.get(job.job_id)
        assert resumed.progress.state == RUNNING and resumed.attempts == 2
        second_runner.gate(job.job_id).set()
        assert _final(second, job.job_id).state == SUCCEEDED
    finally:
        for manager in (first, second):
            manager.hand_over()
        _until(lambda: not first.busy() and not second.busy())
        for store in stores:
            store.close()
