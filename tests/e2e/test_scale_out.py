"""One episode sharded across three detector replicas: same outputs as one, and a lost replica is survived."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.cli.stack import LocalStack

pytestmark = pytest.mark.e2e
OPTIONS = orchestrator_pb2.RunOptions(stride=2, skip_crops=True)


@pytest.fixture(scope="module")
def sharded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, orchestrator_pb2_grpc.OrchestratorServiceStub]]:
    with (
        LocalStack(tmp_path_factory.mktemp("sharded"), detector_replicas=3) as stack,
        stack.channel("orchestrator") as channel,
    ):
        yield stack, orchestrator_pb2_grpc.OrchestratorServiceStub(channel)


def _outputs(root: Path, ep_id: str) -> tuple[set[tuple[int, ...]], list[float], dict]:
    folder = root / "episodes" / ep_id
    rows = {
        (int(r[0]), *(round(float(v)) for v in r[2:6]))
        for r in (line.split(",") for line in (folder / "tracks.mot.txt").read_text().splitlines())
    }
    seconds = sorted(round(i["seconds"], 1) for i in json.loads((folder / "screentime.json").read_text())["identities"])
    return rows, seconds, json.loads((folder / "manifest.json").read_text())


def _run(orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub, ep_id: str, video: Path) -> None:
    orchestrator.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_path=str(video)))
    final = list(orchestrator.RunEpisode(orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, options=OPTIONS)))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message


def test_three_replicas_give_the_same_outputs_as_one_and_survive_a_killed_replica(
    sharded: tuple[LocalStack, orchestrator_pb2_grpc.OrchestratorServiceStub],
    stack: LocalStack,
    stubs: dict,
    sample_episode: Path,
) -> None:
    video = sample_episode / "episode.mp4"
    _run(stubs["orchestrator"], "shard-ref", video)  # one detector (the session stack)
    many_stack, many = sharded
    _run(many, "shard-3", video)
    one_rows, one_seconds, _ = _outputs(stack.data_root, "shard-ref")
    rows, seconds, manifest = _outputs(many_stack.data_root, "shard-3")
    assert manifest["counts"]["segments"] == 3 and manifest["counts"]["detector_replicas"] == 3
    assert len(rows ^ one_rows) <= 0.01 * len(one_rows), len(rows ^ one_rows)  # borders may shift a face or two
    assert len(seconds) == len(one_seconds)
    assert all(abs(a - b) <= 0.2 for a, b in zip(seconds, one_seconds, strict=True)), (seconds, one_seconds)

    # Kill a replica while the job runs: its segment is redone on another replica.
    many.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id="shard-kill", source_path=str(video)))
    job = many.SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id="shard-kill", options=OPTIONS))
    victim = many_stack.processes["detector-2"].process
    for progress in many.WatchJob(orchestrator_pb2.WatchJobRequest(job_id=job.job_id)):
        if progress.frames_done >= 40 and victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
    final = many.GetJob(orchestrator_pb2.GetJobRequest(job_id=job.job_id)).progress
    assert victim.poll() is not None
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    killed_rows, killed_seconds, _ = _outputs(many_stack.data_root, "shard-kill")
    assert len(killed_rows ^ one_rows) <= 0.01 * len(one_rows)
    assert len(killed_seconds) == len(one_seconds)
