"""Jobs survive a crash: the orchestrator running a job is SIGKILLed mid-run, and the job is resumed from
its segment checkpoints (after a restart on the embedded SQLite store, or by another replica on a
shared PostgreSQL store), finishing with the outputs an uninterrupted run gives."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.cli.stack import LocalStack

pytestmark = pytest.mark.e2e
JobState = orchestrator_pb2.JobState
OPTIONS = orchestrator_pb2.RunOptions(stride=5, skip_crops=True)
# Ten-second segments: the 46 s sample is five of them, so a kill mid-run leaves some done.
ENV = {"FACEFLOW_SEGMENT_S": "10", "FACEFLOW_JOB_LEASE_S": "5"}


@contextmanager
def _stub(stack: LocalStack, name: str = "orchestrator") -> Iterator[orchestrator_pb2_grpc.OrchestratorServiceStub]:
    with stack.channel(name) as channel:
        yield orchestrator_pb2_grpc.OrchestratorServiceStub(channel)


def _run_dir(stack: LocalStack, ep_id: str, run_id: str) -> Path:
    return stack.data_root / "episodes" / ep_id / "runs" / run_id


def _wait_for_checkpoints(stack: LocalStack, ep_id: str, run_id: str, count: int, timeout_s: float = 300) -> int:
    deadline = time.monotonic() + timeout_s
    folder = _run_dir(stack, ep_id, run_id) / "checkpoints"
    while time.monotonic() < deadline:
        done = len(list(folder.glob("segment-*.ckpt"))) if folder.is_dir() else 0
        if done >= count:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} segment checkpoints after {timeout_s} s")


def _final(
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub, job_id: str, timeout_s: float = 600
) -> orchestrator_pb2.Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = stub.GetJob(orchestrator_pb2.GetJobRequest(job_id=job_id), timeout=10)
            if job.progress.state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED):
                return job
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def _running_again(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, job_id: str, killed: float) -> float:
    """Seconds from the kill until a replica has claimed the job again (its second attempt)."""
    while True:
        job = stub.GetJob(orchestrator_pb2.GetJobRequest(job_id=job_id))
        if job.attempts >= 2:
            return time.monotonic() - killed
        assert job.progress.state == JobState.JOB_STATE_RUNNING, job  # never failed by the kill
        assert time.monotonic() - killed < 120, job
        time.sleep(0.05)


def _outputs(stack: LocalStack, ep_id: str) -> dict[str, object]:
    folder = stack.data_root / "episodes" / ep_id
    screen = json.loads((folder / "screentime.json").read_text())
    identities = json.loads((folder / "identities.json").read_text())
    return {
        "tracks": (folder / "tracks.mot.txt").read_bytes(),
        "tracks_jsonl": (folder / "tracks.jsonl").read_bytes(),
        "screen": sorted((i["identity_id"], round(i["seconds"], 6)) for i in screen["identities"]),
        "identities": sorted((i["identity_id"], tuple(i["track_ids"])) for i in identities["identities"]),
    }


def _uninterrupted(stack: LocalStack, video: Path, ep_id: str) -> dict[str, object]:
    with _stub(stack) as stub:
        stub.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_path=str(video)))
        final = list(stub.RunEpisode(orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, options=OPTIONS)))[-1]
        assert final.state == JobState.JOB_STATE_SUCCEEDED, final.message
    return _outputs(stack, ep_id)


def _kill_mid_run(
    stack: LocalStack, replica: str, video: Path, ep_id: str, key: str
) -> tuple[orchestrator_pb2.Job, int]:
    """Submit through `replica`, SIGKILL it once two segments are checkpointed; the job and how many."""
    with _stub(stack, replica) as stub:
        stub.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_path=str(video)))
        job = stub.SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, options=OPTIONS, idempotency_key=key))
    done = _wait_for_checkpoints(stack, ep_id, job.run_id, 2)
    stack.processes[replica].process.kill()
    stack.processes[replica].process.wait()
    return job, done


def _check_resumed(stack: LocalStack, job: orchestrator_pb2.Job, ep_id: str, expected: dict[str, object]) -> dict:
    manifest = json.loads((stack.data_root / "episodes" / ep_id / "manifest.json").read_text())
    assert manifest["run_id"] == job.run_id
    resumed, total = manifest["counts"]["segments_resumed"], manifest["counts"]["segments"]
    assert total == 5 and 2 <= resumed < total, manifest["counts"]
    assert _outputs(stack, ep_id) == expected  # byte-identical track files, the same identities and seconds
    # No leftovers: the checkpoints are gone, and the episode has this one run.
    assert not (_run_dir(stack, ep_id, job.run_id) / "checkpoints").exists()
    assert [p.name for p in (stack.data_root / "episodes" / ep_id / "runs").iterdir()] == [job.run_id]
    return {"segments_resumed": resumed, "segments": total}


def test_a_killed_orchestrator_resumes_its_job_after_a_restart(sample_episode: Path, tmp_path: Path) -> None:
    video = sample_episode / "episode.mp4"
    with LocalStack(tmp_path / "data", extra_env=ENV) as stack:
        expected = _uninterrupted(stack, video, "whole")
        job, _ = _kill_mid_run(stack, "orchestrator", video, "killed", "resume-key")
        killed = time.monotonic()
        stack.restart("orchestrator")
        with _stub(stack) as stub:
            # The same idempotency key after the restart is the same job, not a new one.
            again = stub.SubmitJob(
                orchestrator_pb2.SubmitJobRequest(ep_id="killed", options=OPTIONS, idempotency_key="resume-key")
            )
            assert again.job_id == job.job_id
            running_again = _running_again(stub, job.job_id, killed)
            final = _final(stub, job.job_id)
        assert final.progress.state == JobState.JOB_STATE_SUCCEEDED, final.error
        counts = _check_resumed(stack, job, "killed", expected)
        assert running_again < 60
        print(f"\nSQLite: running again {running_again:.1f} s after the kill; {counts}")


def test_another_replica_takes_over_on_a_shared_postgres_store(
    sample_episode: Path, tmp_path: Path, postgres_dsn: str
) -> None:
    video = sample_episode / "episode.mp4"
    with LocalStack(tmp_path / "data", extra_env={**ENV, "FACEFLOW_JOBS_DSN": postgres_dsn}) as stack:
        expected = _uninterrupted(stack, video, "whole")
        stack.add_replica("orchestrator")  # orchestrator-2: the same store, the same services
        job, _ = _kill_mid_run(stack, "orchestrator", video, "killed", "pg-key")
        killed = time.monotonic()
        with _stub(stack, "orchestrator-2") as stub:
            running_again = _running_again(stub, job.job_id, killed)
            final = _final(stub, job.job_id)
        assert final.progress.state == JobState.JOB_STATE_SUCCEEDED, final.error
        counts = _check_resumed(stack, job, "killed", expected)
        print(f"\nPostgreSQL: running again on the other replica {running_again:.1f} s after the kill; {counts}")
