"""`faceflow jobs ...` on a running stack, and following a job's progress across orchestrator restarts.

A progress stream breaks with UNAVAILABLE when the orchestrator restarts (`faceflow up` restarts it)
or the replica serving the stream goes away; the job itself lives on in the job store. follow_job
keeps following it: WatchJob(job_id) again (every Progress message names its job) with growing,
jittered delays, until the job ends, the orchestrator says it no longer knows it, or no orchestrator
has answered for ReconnectPolicy.give_up_after_s. A submit that fails with UNAVAILABLE (the
orchestrator, or a service it needs, restarting) is sent again for a while: its idempotency key makes
a second submit join the job the first one may have created.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.cli import render
from services.cli.session import EXIT_FAILURE, running_stack_addresses, session
from services.common import errors
from services.common.grpc_errors import translate_rpc_errors

JobState = orchestrator_pb2.JobState
TERMINAL = frozenset({JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED})
Progresses = Iterable[orchestrator_pb2.Progress]


@dataclass(frozen=True)
class ReconnectPolicy:
    """Wait first_delay_s, then twice as long each time up to max_delay_s, each wait scaled by a random
    factor in 1 ± jitter (clients of one restarted orchestrator do not all come back at once); give up
    when no orchestrator has answered for give_up_after_s (submit_give_up_after_s before the job exists:
    a wrong address should not keep anyone waiting for ten minutes)."""

    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.2
    give_up_after_s: float = 600.0
    submit_give_up_after_s: float = 60.0

    def delay(self, attempt: int, unit_random: float) -> float:
        base = min(self.max_delay_s, self.first_delay_s * 2 ** min(attempt, 30))
        return float(base * (1 + self.jitter * (2 * unit_random - 1)))


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    return error.code() if hasattr(error, "code") else None


def _details(error: grpc.RpcError) -> str:
    return (error.details() if hasattr(error, "details") else "") or str(error)


def follow_job(
    stream: Progresses,
    watch: Callable[[str], Progresses],
    job_id: str = "",
    *,
    resubmit: Callable[[], Progresses] | None = None,
    policy: ReconnectPolicy | None = None,
    notify: Callable[[str], None] = render.status,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    unit_random: Callable[[], float] = random.random,
) -> Iterator[orchestrator_pb2.Progress]:
    """The messages of `stream`, and after it breaks with UNAVAILABLE (or ends before the job did) those
    of watch(job_id), again and again, until a terminal state. Before the first message the job id is
    `job_id`; if that is empty, a broken stream is sent again with resubmit() (a RunEpisode with the
    same idempotency key), or without one is an error as usual. Raises errors.NotFound if the job is
    gone after a reconnect, errors.Unavailable once the policy gives up; other errors as grpc.RpcError."""
    policy = policy or ReconnectPolicy()
    down_since: float | None = None  # when the current outage began
    attempt = 0
    while True:
        try:
            for progress in stream:
                if down_since is not None:
                    again = "following job {} again" if job_id else "submitted: job {}"
                    notify("reconnected: " + again.format(progress.job_id or job_id))
                    down_since, attempt = None, 0
                job_id = progress.job_id or job_id
                yield progress
                if progress.state in TERMINAL:
                    return
            why = "the progress stream ended before the job did"
        except grpc.RpcError as error:
            code = _code(error)
            if code == grpc.StatusCode.NOT_FOUND and down_since is not None and job_id:
                raise errors.NotFound(
                    f"job {job_id} is gone: the orchestrator no longer knows it after reconnecting ({_details(error)})"
                ) from None
            if code != grpc.StatusCode.UNAVAILABLE or not (job_id or resubmit):
                raise
            why = f"lost the orchestrator ({_details(error)})" if job_id else f"could not submit ({_details(error)})"
        if not (job_id or resubmit):
            return  # nothing to reconnect to: the caller sees a stream without a final state
        now = clock()
        if down_since is None:
            down_since = now
            notify(f"{why}; " + (f"reconnecting to job {job_id}…" if job_id else "submitting again…"))
        elif job_id and now - down_since >= policy.give_up_after_s:
            raise errors.Unavailable(
                f"gave up following job {job_id}: no orchestrator answered for {policy.give_up_after_s / 60:g} "
                f"minutes. The job may still be running: `faceflow jobs watch {job_id}` once the stack is back"
            )
        elif not job_id and now - down_since >= policy.submit_give_up_after_s:
            raise errors.Unavailable(f"gave up submitting after {policy.submit_give_up_after_s:g} s: {why}")
        sleep(policy.delay(attempt, unit_random()))
        attempt += 1
        stream = watch(job_id) if job_id else resubmit()  # type: ignore[misc]


def watcher(orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub) -> Callable[[str], Progresses]:
    """WatchJob(job_id) on an orchestrator stub, for follow_job."""

    def watch(job_id: str) -> Progresses:
        return orchestrator.WatchJob(orchestrator_pb2.WatchJobRequest(job_id=job_id))

    return watch


# ---- the commands -----------------------------------------------------------------------------------


def _state(state: int) -> str:
    return JobState.Name(state).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]


def _stage(stage: int) -> str:
    return orchestrator_pb2.Stage.Name(stage).removeprefix("STAGE_").lower()  # type: ignore[arg-type]


def percent(progress: orchestrator_pb2.Progress) -> float:
    if progress.state == JobState.JOB_STATE_SUCCEEDED:
        return 100.0
    return 100.0 * progress.frames_done / progress.frames_total if progress.frames_total else 0.0


@contextmanager
def _orchestrator(args: argparse.Namespace) -> Iterator[orchestrator_pb2_grpc.OrchestratorServiceStub]:
    """The running stack's orchestrator (never an ephemeral stack: its jobs would be someone else's)."""
    orchestrator, storage = running_stack_addresses(args)
    if not (orchestrator and storage):
        raise errors.FailedPrecondition(
            "`faceflow jobs` talks to a running stack: start `faceflow up` and export the "
            "FACEFLOW_ORCHESTRATOR_ADDR and FACEFLOW_STORAGE_ADDR it prints"
        )
    with session(args) as s:
        yield s.orchestrator


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with _orchestrator(args) as orchestrator, translate_rpc_errors("orchestrator"):
        jobs = orchestrator.ListJobs(orchestrator_pb2.ListJobsRequest(ep_id=args.episode)).jobs
    print(
        f"{'JOB':<18} {'EPISODE':<20} {'KIND':<13} {'STATE':<9} {'QUEUE':>5} {'STAGE':<12} {'DONE':>5} "
        f"{'SUBMITTED BY':<24} CREATED"
    )
    for job in jobs:
        p = job.progress
        print(
            f"{job.job_id:<18} {job.ep_id:<20} {job.kind or 'run':<13} {_state(p.state):<9} "
            f"{job.queue_position or '-':>5} {_stage(p.stage) if p.stage else '-':<12} {percent(p):4.0f}% "
            f"{job.submitted_by or '-':<24} {job.created_at}"
        )
    if not jobs:
        render.status("no jobs" + (f" for episode {args.episode}" if args.episode else ""))
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    with _orchestrator(args) as orchestrator, translate_rpc_errors("orchestrator"):
        job = orchestrator.GetJob(orchestrator_pb2.GetJobRequest(job_id=args.job))
    if args.json:
        print(json.dumps(json_format.MessageToDict(job, preserving_proto_field_name=True), indent=1))
        return 0
    p = job.progress
    options = json_format.MessageToDict(job.options, preserving_proto_field_name=True)
    rows = [
        ("job", job.job_id),
        ("episode", job.ep_id),
        ("kind", job.kind or "run"),
        ("state", _state(p.state) + (f" (position {job.queue_position} in the queue)" if job.queue_position else "")),
        ("stage", _stage(p.stage) if p.stage else "-"),
        ("progress", f"{percent(p):.0f}% ({p.frames_done}/{p.frames_total} frames, {p.fps:.1f} fps)"),
        ("run", job.run_id or p.summary.run_id or "-"),
        ("detector", f"{p.detector} · tracker {p.tracker} · device {p.device or '-'}"),
        ("options", json.dumps(options) if options else "{}"),
        ("submitted by", job.submitted_by or "-"),
        ("created", job.created_at),
        ("idempotency key", job.idempotency_key or "-"),
    ]
    if p.message or job.error:
        rows.append(("message", job.error or p.message))
    for key, value in rows:
        print(f"{key + ':':<17}{value}")
    return 0


def cmd_jobs_watch(args: argparse.Namespace) -> int:
    with _orchestrator(args) as orchestrator:
        watch = watcher(orchestrator)
        final = render.follow_progress(follow_job(watch(args.job), watch, args.job))
    return _report_final(final)


def _report_final(final: orchestrator_pb2.Progress) -> int:
    """The outcome of a watched job: the screen-time table of a run, crops of a harvest, or why not."""
    if final.state != JobState.JOB_STATE_SUCCEEDED:
        state = _state(final.state) if final.state else "ended without a final state"
        render.status(f"error: job {final.job_id} {state}: {final.message or 'no reason given'}")
        return EXIT_FAILURE
    if final.summary.crops_saved or final.summary.tracks_harvested:
        print(f"saved {final.summary.crops_saved} crop(s) for {final.summary.tracks_harvested} track(s)")
    else:
        render.screen_time_table(final.summary)
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with _orchestrator(args) as orchestrator, translate_rpc_errors("orchestrator"):
        job = orchestrator.GetJob(orchestrator_pb2.GetJobRequest(job_id=args.job))
        if job.progress.state in TERMINAL:
            print(f"{job.job_id} had already ended: {_state(job.progress.state)}")
            return 0
        job = orchestrator.CancelJob(orchestrator_pb2.CancelJobRequest(job_id=args.job))
    state = job.progress.state
    if state == JobState.JOB_STATE_CANCELLED:
        print(f"cancelled {job.job_id}")
    elif state in TERMINAL:  # it ended on its own meanwhile
        print(f"{job.job_id} had already ended: {_state(state)}")
    else:
        print(f"asked {job.job_id} to stop; it is {_state(state)} (`faceflow jobs watch {job.job_id}` to see it end)")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="jobs of a running stack (faceflow up)").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = jobs.add_parser("list", help="jobs, oldest first: state, queue position, stage, progress")
    listing.add_argument("--episode", default="", help="only this episode's jobs")
    listing.set_defaults(func=cmd_jobs_list)
    show = jobs.add_parser("show", help="one job in detail")
    show.add_argument("job")
    show.add_argument("--json", action="store_true", help="the Job message as JSON")
    show.set_defaults(func=cmd_jobs_show)
    watch = jobs.add_parser("watch", help="a job's progress bar until it ends (survives orchestrator restarts)")
    watch.add_argument("job")
    watch.set_defaults(func=cmd_jobs_watch)
    cancel = jobs.add_parser("cancel", help="cancel a queued job, or ask a running one to stop")
    cancel.add_argument("job")
    cancel.set_defaults(func=cmd_jobs_cancel)
    for command in (listing, show, watch, cancel):
        command.add_argument("--orchestrator", help="orchestrator address (FACEFLOW_ORCHESTRATOR_ADDR)")
