"""Admission on the real stack: ten submitted runs with the default concurrency of two."""

from __future__ import annotations

import time
from pathlib import Path

from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.common.config import Settings

JobState = orchestrator_pb2.JobState


def test_ten_jobs_run_two_at_a_time_in_order_and_all_finish(stubs: dict, media: Path) -> None:
    orchestrator = stubs["orchestrator"]
    limit = Settings.from_env().max_running_jobs
    assert limit == 2
    orchestrator.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="queue-1", source_path=str(media / "single_face.mp4"))
    )
    options = orchestrator_pb2.RunOptions(stride=3, skip_crops=True)
    submitted = [
        orchestrator.SubmitJob(
            orchestrator_pb2.SubmitJobRequest(ep_id="queue-1", options=options, idempotency_key=f"q{i}")
        )
        for i in range(10)
    ]
    ids = [job.job_id for job in submitted]
    most_running, first_look = 0, None
    started_order: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = {j.job_id: j for j in orchestrator.ListJobs(orchestrator_pb2.ListJobsRequest(ep_id="queue-1")).jobs}
        states = [jobs[i].progress.state for i in ids]
        running = [i for i in ids if jobs[i].progress.state == JobState.JOB_STATE_RUNNING]
        most_running = max(most_running, len(running))
        started_order += [
            i for i in ids if states[ids.index(i)] != JobState.JOB_STATE_QUEUED and i not in started_order
        ]
        if first_look is None:
            first_look = {i: (jobs[i].progress.state, jobs[i].queue_position) for i in ids}
        if all(s in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED) for s in states):
            break
        time.sleep(0.1)
    assert first_look is not None
    queued = sorted(pos for state, pos in first_look.values() if state == JobState.JOB_STATE_QUEUED)
    assert len(queued) >= 10 - limit - 1 and queued == list(range(1, len(queued) + 1)), first_look
    assert most_running <= limit
    assert started_order == ids  # first in, first out
    final = orchestrator.ListJobs(orchestrator_pb2.ListJobsRequest(ep_id="queue-1")).jobs
    assert {j.job_id: j.progress.state for j in final if j.job_id in ids} == dict.fromkeys(
        ids, JobState.JOB_STATE_SUCCEEDED
    )
    assert all(j.submitted_by.endswith("@local") for j in final if j.job_id in ids)
