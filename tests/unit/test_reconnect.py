"""Backoff, without servers: the CLI following a job across orchestrator restarts (jobs.follow_job),
and `faceflow up` restarting processes that exit (stack.Supervisor)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2

from services.cli.jobs import ReconnectPolicy, follow_job
from services.cli.stack import KeepsFailing, RestartPolicy, Supervised, Supervisor
from services.common import errors

JobState = orchestrator_pb2.JobState


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def progress(done: int, state: int = JobState.JOB_STATE_RUNNING, job_id: str = "job-1") -> orchestrator_pb2.Progress:
    return orchestrator_pb2.Progress(job_id=job_id, state=state, frames_done=done, frames_total=10)  # type: ignore[arg-type]


def stream(*items: orchestrator_pb2.Progress | FakeRpcError) -> Iterator[orchestrator_pb2.Progress]:
    """A server stream: the messages, then the error if one is last (as a grpc call raises it)."""
    for item in items:
        if isinstance(item, FakeRpcError):
            raise item
        yield item


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class FakeOrchestrator:
    """WatchJob answers from a script: one stream per call."""

    def __init__(self, *answers: Callable[[], Iterator[orchestrator_pb2.Progress]]) -> None:
        self.answers = list(answers)
        self.watched: list[str] = []

    def watch(self, job_id: str) -> Iterator[orchestrator_pb2.Progress]:
        self.watched.append(job_id)
        return self.answers.pop(0)()


UNAVAILABLE = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")


def follow(first: Iterator[orchestrator_pb2.Progress], orchestrator: FakeOrchestrator, clock: FakeTime, **kw: object):  # type: ignore[no-untyped-def]
    notes: list[str] = []
    items = follow_job(
        first,
        orchestrator.watch,
        sleep=clock.sleep,
        clock=clock.clock,
        notify=notes.append,
        unit_random=lambda: 0.5,  # no jitter: exact delays
        **kw,  # type: ignore[arg-type]
    )
    return items, notes


def test_unavailable_twice_then_the_job_goes_on_to_its_end() -> None:
    clock = FakeTime()
    orchestrator = FakeOrchestrator(
        lambda: stream(UNAVAILABLE),  # still restarting
        lambda: stream(UNAVAILABLE),
        lambda: stream(progress(6), progress(10, JobState.JOB_STATE_SUCCEEDED)),
    )
    items, notes = follow(stream(progress(1), progress(5), UNAVAILABLE), orchestrator, clock)
    assert [p.frames_done for p in items] == [1, 5, 6, 10]
    assert orchestrator.watched == ["job-1"] * 3  # the id from the progress messages
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert "lost the orchestrator (Socket closed); reconnecting to job job-1…" in notes[0]
    assert notes[-1] == "reconnected: following job job-1 again"


def test_backoff_doubles_to_8_s_with_jitter() -> None:
    policy = ReconnectPolicy()
    assert [policy.delay(n, 0.5) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert policy.delay(0, 0.0) == pytest.approx(0.4) and policy.delay(0, 1.0) == pytest.approx(0.6)
    assert policy.delay(9, 1.0) == pytest.approx(9.6)


def test_a_job_gone_after_reconnecting_is_said_so() -> None:
    clock = FakeTime()
    orchestrator = FakeOrchestrator(
        lambda: stream(FakeRpcError(grpc.StatusCode.NOT_FOUND, "job 'job-1' does not exist")),
    )
    items, _ = follow(stream(progress(3), UNAVAILABLE), orchestrator, clock)
    with pytest.raises(errors.NotFound, match=r"job job-1 is gone: .*job 'job-1' does not exist"):
        list(items)


def test_not_found_on_the_first_watch_is_the_usual_error() -> None:
    """`faceflow jobs watch job-typo`: no reconnect happened, so it is the orchestrator's own NOT_FOUND."""
    items, _ = follow(
        stream(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such job")), FakeOrchestrator(), FakeTime(), job_id="job-x"
    )
    with pytest.raises(grpc.RpcError) as raised:
        list(items)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_unavailable_before_any_job_id_is_not_retried() -> None:
    """The submit itself did not get through: nothing to watch; the caller reports it as before."""
    orchestrator = FakeOrchestrator()
    items, _ = follow(stream(UNAVAILABLE), orchestrator, FakeTime())
    with pytest.raises(grpc.RpcError):
        list(items)
    assert orchestrator.watched == []


def test_a_submit_that_meets_unavailable_is_sent_again_with_its_key() -> None:
    """`faceflow run` right after a restart: the orchestrator (or the detector it needs) is not back yet."""
    clock = FakeTime()
    detector_down = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "detector is unavailable")
    submits = FakeOrchestrator(
        lambda: stream(detector_down), lambda: stream(progress(0, JobState.JOB_STATE_QUEUED), progress(10, 3))
    )
    items, notes = follow(stream(detector_down), FakeOrchestrator(), clock, resubmit=lambda: submits.watch(""))
    assert [p.state for p in items] == [JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_SUCCEEDED]
    assert clock.sleeps == [0.5, 1.0]
    assert notes == [
        "could not submit (detector is unavailable); submitting again…",
        "reconnected: submitted: job job-1",
    ]


def test_a_submit_gives_up_after_a_minute() -> None:
    clock = FakeTime()
    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    items, _ = follow(stream(down), FakeOrchestrator(), clock, resubmit=lambda: stream(down))
    with pytest.raises(errors.Unavailable, match=r"gave up submitting after 60 s: could not submit \(failed to conn"):
        list(items)
    assert 60 <= clock.now < 70


def test_other_errors_end_the_watch_at_once() -> None:
    denied = FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "viewer may not")
    items, _ = follow(stream(progress(1), denied), FakeOrchestrator(), FakeTime())
    with pytest.raises(grpc.RpcError):
        list(items)


def test_gives_up_after_ten_minutes_without_an_orchestrator() -> None:
    clock = FakeTime()
    orchestrator = FakeOrchestrator(*[lambda: stream(UNAVAILABLE)] * 200)
    items, _ = follow(stream(progress(2), UNAVAILABLE), orchestrator, clock)
    with pytest.raises(
        errors.Unavailable, match=r"gave up following job job-1: no orchestrator answered for 10 minutes"
    ):
        list(items)
    assert 600 <= clock.now < 610 and max(clock.sleeps) == 8


def test_a_stream_that_ends_before_the_job_is_followed_again() -> None:
    """A replica that drains and closes the stream cleanly: the job has not ended, so watch again."""
    clock = FakeTime()
    orchestrator = FakeOrchestrator(lambda: stream(progress(10, JobState.JOB_STATE_CANCELLED)))
    items, notes = follow(stream(progress(4)), orchestrator, clock)
    assert [p.state for p in items] == [JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_CANCELLED]
    assert "ended before the job did" in notes[0]


def test_each_outage_starts_its_backoff_afresh() -> None:
    clock = FakeTime()
    orchestrator = FakeOrchestrator(
        lambda: stream(UNAVAILABLE),
        lambda: stream(progress(5), UNAVAILABLE),
        lambda: stream(progress(10, JobState.JOB_STATE_SUCCEEDED)),
    )
    items, _ = follow(stream(progress(1), UNAVAILABLE), orchestrator, clock)
    assert [p.frames_done for p in items] == [1, 5, 10]
    assert clock.sleeps == [0.5, 1.0, 0.5]


# ---- faceflow up: restarts ---------------------------------------------------------------------------


class FakeProcess:
    """A supervised process: exits when told, restarts (or fails to) as scripted."""

    def __init__(self, name: str, log: Path, fail_restarts: int = 0) -> None:
        self.code: int | None = None
        self.fail_restarts = fail_restarts
        self.restarted = 0
        self.child = Supervised(name, log, self.exited, self.restart)

    def exited(self) -> str | None:
        return None if self.code is None else f"exited with code {self.code}"

    def restart(self) -> str:
        self.restarted += 1
        if self.fail_restarts:
            self.fail_restarts -= 1
            self.code = 1
            raise errors.Unavailable("exited with code 1 while starting")
        self.code = None
        return "127.0.0.1:5000"


def test_a_process_that_exits_is_restarted_with_backoff_and_reported(tmp_path: Path) -> None:
    clock = FakeTime()
    said: list[str] = []
    detector = FakeProcess("detector", tmp_path / "detector.log")
    supervisor = Supervisor(RestartPolicy(), report=said.append, clock=clock.clock)
    supervisor.add(detector.child)

    supervisor.check()
    assert said == [] and detector.restarted == 0
    detector.code = -9
    supervisor.check()
    assert said == ["detector exited with code -9; restarting in 1 s (restart 1)"]
    clock.now += 0.5
    supervisor.check()
    assert detector.restarted == 0  # not yet
    clock.now += 0.5
    supervisor.check()
    assert detector.restarted == 1 and said[-1] == "detector is back on 127.0.0.1:5000 (restart 1)"
    detector.code = -9
    supervisor.check()
    assert said[-1] == "detector exited with code -9; restarting in 2 s (restart 2)"
    log = (tmp_path / "detector.log").read_text()
    assert "restarting in 1 s (restart 1)" in log and '"logger": "faceflow.up"' in log


def test_restarts_long_ago_do_not_count(tmp_path: Path) -> None:
    clock = FakeTime()
    said: list[str] = []
    tracker = FakeProcess("tracker", tmp_path / "tracker.log")
    supervisor = Supervisor(RestartPolicy(), report=said.append, clock=clock.clock)
    supervisor.add(tracker.child)
    for _ in range(3):
        tracker.code = 1
        supervisor.check()
        clock.now += 60
        supervisor.check()
    assert said[-1] == "tracker is back on 127.0.0.1:5000 (restart 3)"
    clock.now += 301
    tracker.code = 1
    supervisor.check()
    assert said[-1] == "tracker exited with code 1; restarting in 1 s (restart 1)"


def test_a_process_that_keeps_failing_stops_the_supervisor_naming_it_and_its_log(tmp_path: Path) -> None:
    clock = FakeTime()
    said: list[str] = []
    embedder = FakeProcess("embedder", tmp_path / "embedder.log", fail_restarts=99)
    supervisor = Supervisor(RestartPolicy(max_restarts=5), report=said.append, clock=clock.clock)
    supervisor.add(embedder.child)
    embedder.code = 1
    with pytest.raises(KeepsFailing) as failed:
        for _ in range(100):
            supervisor.check()
            clock.now += 1
    assert embedder.restarted == 5
    assert [s.split("; ")[-1] for s in said] == [
        f"restarting in {d} s (restart {n})" for n, d in enumerate((1, 2, 4, 8, 16), 1)
    ]
    assert said[1].startswith("embedder failed to start again: exited with code 1 while starting;")
    message = str(failed.value)
    assert message.startswith("embedder keeps failing:") and "after 5 restarts within 5 minutes" in message
    assert str(tmp_path / "embedder.log") in message
    assert "keeps failing" in (tmp_path / "embedder.log").read_text()


def test_nothing_restarts_once_stopping(tmp_path: Path) -> None:
    stopping = [False]
    storage = FakeProcess("storage", tmp_path / "storage.log")
    supervisor = Supervisor(report=lambda _: None, abort=lambda: stopping[0], clock=FakeTime().clock)
    supervisor.add(storage.child)
    stopping[0] = True
    storage.code = 0  # SIGTERM from Ctrl-C: the process exits as asked
    supervisor.check()
    assert storage.child.due is None and storage.restarted == 0


def test_restart_delays_are_capped() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
