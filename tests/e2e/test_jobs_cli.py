"""`faceflow jobs list | show | watch | cancel` against a running stack (the shared real stack, reached
through FACEFLOW_ORCHESTRATOR_ADDR / FACEFLOW_STORAGE_ADDR as after `faceflow up`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.stack import LocalStack

pytestmark = pytest.mark.e2e
JobState = orchestrator_pb2.JobState


def faceflow(
    stack: LocalStack | None, *args: str, timeout: float = 600, token: str = ""
) -> subprocess.CompletedProcess[str]:
    """The CLI against `stack` as a running stack; as the trusted local user, or with a user's token."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FACEFLOW_ORCHESTRATOR_", "FACEFLOW_STORAGE_", "FACEFLOW_TOKEN"))
    }
    if token:
        env["FACEFLOW_TOKEN"] = token
    data_root = ["--data-root", str(stack.data_root)] if stack else []
    if stack is not None:
        env |= {
            "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
            "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        }
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *data_root, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def finished_job(stack: LocalStack, media: Path) -> str:
    """A run submitted with `faceflow run` on the running stack; its job id from the CLI's output."""
    run = faceflow(stack, "run", str(media / "single_face.mp4"), "--episode", "jobs-cli", "--stride", "5")
    assert run.returncode == 0, run.stderr[-3000:]
    return re.search(r"^job (job-\w+): episode jobs-cli", run.stderr, re.M).group(1)  # type: ignore[union-attr]


def test_list_shows_the_jobs_of_an_episode(stack: LocalStack, finished_job: str) -> None:
    listed = faceflow(stack, "jobs", "list", "--episode", "jobs-cli")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["JOB", "EPISODE", "KIND", "STATE", "QUEUE", "STAGE", "DONE", "SUBMITTED", "BY", "CREATED"]
    assert len(rows) == 1
    job_id, episode, kind, state, queue, stage, done, submitted_by, *_, created = rows[0].split()
    assert (job_id, episode, kind, state, queue, stage, done) == (
        finished_job,
        "jobs-cli",
        "run",
        "succeeded",
        "-",
        "done",
        "100%",
    )
    assert submitted_by.endswith("@local") and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)

    everything = faceflow(stack, "jobs", "list")
    assert finished_job in everything.stdout
    other = faceflow(stack, "jobs", "list", "--episode", "no-such-episode")
    assert other.returncode == 0 and finished_job not in other.stdout and "no jobs for episode" in other.stderr


def test_show_and_watch_a_finished_job(stack: LocalStack, finished_job: str) -> None:
    shown = faceflow(stack, "jobs", "show", finished_job)
    assert shown.returncode == 0, shown.stderr
    fields = dict(re.findall(r"^([a-z ]+):\s+(.*)$", shown.stdout, re.M))
    assert fields["job"] == finished_job and fields["episode"] == "jobs-cli" and fields["state"] == "succeeded"
    assert re.match(r"100% \((\d+)/\1 frames", fields["progress"]), fields
    assert json.loads(fields["options"])["stride"] == 5 and fields["submitted by"].endswith("@local")
    as_json = json.loads(faceflow(stack, "jobs", "show", finished_job, "--json").stdout)
    assert as_json["job_id"] == finished_job and as_json["progress"]["state"] == "JOB_STATE_SUCCEEDED"

    watched = faceflow(stack, "jobs", "watch", finished_job)
    assert watched.returncode == 0, watched.stderr
    assert "1 tracks, 1 identities" in watched.stdout and "id_0001" in watched.stdout


def test_cancel_a_queued_and_a_running_job(stack: LocalStack, stubs: dict, media: Path) -> None:
    """Three runs with two at a time: the third waits in the queue, so cancelling it ends it at once."""
    orchestrator = stubs["orchestrator"]
    orchestrator.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="jobs-cancel", source_path=str(media / "WolfgangLanger_Pexels.mp4"))
    )
    options = orchestrator_pb2.RunOptions(stride=1, skip_crops=True)
    ids = [
        orchestrator.SubmitJob(
            orchestrator_pb2.SubmitJobRequest(ep_id="jobs-cancel", options=options, idempotency_key=f"cancel-{i}")
        ).job_id
        for i in range(3)
    ]
    try:
        listed = faceflow(stack, "jobs", "list", "--episode", "jobs-cancel")
        states = {line.split()[0]: line.split()[3:5] for line in listed.stdout.splitlines()[1:]}
        assert states[ids[2]] == ["queued", "1"], listed.stdout

        cancelled = faceflow(stack, "jobs", "cancel", ids[2])
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"cancelled {ids[2]}"
        shown = faceflow(stack, "jobs", "show", ids[2])
        assert "state:           cancelled" in shown.stdout
        assert "message:         the job was cancelled before it started" in shown.stdout

        stopping = faceflow(stack, "jobs", "cancel", ids[0])
        assert stopping.returncode == 0, stopping.stderr
        assert stopping.stdout.startswith(f"asked {ids[0]} to stop") or stopping.stdout.strip() == f"cancelled {ids[0]}"
        watched = faceflow(stack, "jobs", "watch", ids[0])  # until it has stopped
        assert watched.returncode == 1 and f"error: job {ids[0]} cancelled" in watched.stderr, watched.stderr

        again = faceflow(stack, "jobs", "cancel", ids[2])
        assert again.stdout.strip() == f"{ids[2]} had already ended: cancelled"
    finally:
        for job_id in ids:
            orchestrator.CancelJob(orchestrator_pb2.CancelJobRequest(job_id=job_id))


def test_an_unknown_job_is_a_clear_error(stack: LocalStack) -> None:
    for command in ("show", "watch", "cancel"):
        result = faceflow(stack, "jobs", command, "job-000000000000")
        assert result.returncode == 2, (command, result.stderr)
        assert "error: job 'job-000000000000' does not exist" in result.stderr


def test_jobs_need_a_running_stack(tmp_path: Path) -> None:
    result = faceflow(None, "--data-root", str(tmp_path), "jobs", "list", timeout=60)
    assert result.returncode == 2
    assert "`faceflow jobs` talks to a running stack: start `faceflow up`" in result.stderr
    assert not (tmp_path / "logs").exists()  # no stack was started for it
