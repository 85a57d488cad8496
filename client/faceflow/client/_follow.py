"""Patience: what to do when a call or a progress stream breaks, shared by the sync and asyncio clients.

The channel retries a call that fails with UNAVAILABLE for about 3 s (client/_channel.py). Longer
outages, an orchestrator restarting or a replica going away, are handled here: a submit is sent again
(its idempotency key makes it join the job the first may have created), an upload chunk is sent again
at the same offset, and a progress stream is opened again with WatchJob (every message names its job)
after growing, jittered delays, until the job ends or nothing has answered for `patience_s`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from faceflow.client.errors import (
    DeadlineExceeded,
    FaceflowError,
    JobCancelled,
    JobFailed,
    NotFound,
    Unavailable,
)
from faceflow.client.models import JobState, Progress, RunResult
from faceflow.v1 import orchestrator_pb2

# Ten minutes: a restarting stack (model warm-up) or a rescheduled pod is back well within it.
PATIENCE_S = 600.0
# Before a job exists a wrong address should not keep anyone waiting for ten minutes.
SUBMIT_PATIENCE_S = 60.0
TRANSIENT = (Unavailable, DeadlineExceeded)


@dataclass(frozen=True)
class Backoff:
    """Wait first_delay_s, then twice as long each time up to max_delay_s, each wait scaled by a random
    factor in 1 ± jitter (the clients of one restarted orchestrator do not all come back at once)."""

    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.2

    def delay(self, attempt: int, unit_random: float) -> float:
        base = min(self.max_delay_s, self.first_delay_s * 2 ** min(attempt, 30))
        return float(base * (1 + self.jitter * (2 * unit_random - 1)))


class Outage:
    """Counts one outage: `failed()` says how long to wait before trying again, or raises once nothing
    has worked for patience_s; `recovered()` ends the outage."""

    def __init__(
        self,
        what: str,
        patience_s: float,
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self.what = what
        self.patience_s = patience_s
        self._backoff = backoff
        self._clock = clock
        self._unit_random = unit_random
        self.since: float | None = None
        self._attempt = 0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def recovered(self) -> None:
        self.since, self._attempt = None, 0

    def failed(self, why: str) -> float:
        """Seconds to wait before the next attempt; Unavailable when patience has run out."""
        now = self._clock()
        if self.since is None:
            self.since = now
        elif now - self.since >= self.patience_s:
            raise Unavailable(f"gave up {self.what} after {self.patience_s:g} s without an answer: {why}")
        delay = self._backoff.delay(self._attempt, self._unit_random())
        self._attempt += 1
        return delay


class JobFollower:
    """The decisions of following one job's progress streams across reconnects (sync and asyncio alike):
    feed it every message and every break; it says when the job has ended, or how long to wait before
    watching again, or raises."""

    def __init__(self, job_id: str, patience_s: float, backoff: Backoff) -> None:
        self.job_id = job_id
        self.outage = Outage(f"following job {job_id}", patience_s, backoff)
        self.last: orchestrator_pb2.Progress | None = None

    def message(self, message: orchestrator_pb2.Progress) -> Progress:
        self.outage.recovered()
        self.last = message
        return Progress.from_proto(message)

    def broke(self, error: FaceflowError | None) -> float:
        """After the stream failed with `error`, or ended before the job did (None): seconds to wait."""
        if isinstance(error, NotFound) and self.outage.ongoing:
            raise NotFound(
                f"job {self.job_id} is gone: the orchestrator no longer knows it after reconnecting ({error.details})"
            )
        if error is not None and not isinstance(error, TRANSIENT):
            raise error
        why = error.details if error is not None else "the progress stream ended before the job did"
        return self.outage.failed(why)

    def result(self) -> RunResult:
        """The outcome of the job once its stream ended: a RunResult, or JobFailed / JobCancelled."""
        return outcome(self.job_id, self.last)


def outcome(job_id: str, final: orchestrator_pb2.Progress | None) -> RunResult:
    if final is None:
        raise Unavailable(f"job {job_id} sent no progress")
    state = JobState.from_proto(final.state)
    progress = Progress.from_proto(final)
    if state is JobState.SUCCEEDED:
        return RunResult.from_final(final)
    if state is JobState.CANCELLED:
        raise JobCancelled(job_id, final.message, progress)
    raise JobFailed(job_id, final.message, progress)


def terminal(message: orchestrator_pb2.Progress) -> bool:
    return JobState.from_proto(message.state).terminal
