"""Memory under a burst of submitted runs: the job queue keeps it at the level of its concurrency.

For each burst size (default 2 and 10 runs submitted at once) a fresh local stack runs the same clip
that many times; the peak RSS of each service is read from /proc (VmHWM and sampled VmRSS). The
ratio burst/2 is the figure: with at most FACEFLOW_MAX_RUNNING_JOBS (2) running, ten submitted runs
should need no more memory than two.

    python -m bench.admission [--bursts 2,10] [--video PATH] [--out bench]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from bench.procmem import PeakRss
from services.cli.stack import LocalStack
from services.common.config import Settings

JobState = orchestrator_pb2.JobState
TERMINAL = (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED)


def measure(burst: int, video: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="faceflow-admission-") as root, LocalStack(Path(root)) as stack:
        pids = {name: p.process.pid for name, p in stack.processes.items()}
        with stack.channel("orchestrator") as channel:
            orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            orchestrator.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id="burst", source_path=str(video)))
            options = orchestrator_pb2.RunOptions(stride=5, skip_crops=True)
            started = time.monotonic()
            most_running = most_queued = 0
            with PeakRss(pids) as rss:
                ids = [
                    orchestrator.SubmitJob(orchestrator_pb2.SubmitJobRequest(ep_id="burst", options=options)).job_id
                    for _ in range(burst)
                ]
                while True:
                    jobs = [
                        j for j in orchestrator.ListJobs(orchestrator_pb2.ListJobsRequest()).jobs if j.job_id in ids
                    ]
                    states = [j.progress.state for j in jobs]
                    most_running = max(most_running, states.count(JobState.JOB_STATE_RUNNING))
                    most_queued = max(most_queued, states.count(JobState.JOB_STATE_QUEUED))
                    if all(s in TERMINAL for s in states):
                        break
                    time.sleep(0.2)
            failed = [j.error for j in jobs if j.progress.state != JobState.JOB_STATE_SUCCEEDED]
    return {
        "burst": burst,
        "wall_s": round(time.monotonic() - started, 1),
        "most_running": most_running,
        "most_queued": most_queued,
        "failed": failed,
        "peak_rss_mb": rss.peak_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="2,10", help="runs submitted at once, comma-separated")
    parser.add_argument(
        "--video", type=Path, default=Settings.from_env().cache_dir / "media" / "WolfgangLanger_Pexels.mp4"
    )
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args()
    results = [measure(int(b), args.video.resolve()) for b in args.bursts.split(",")]
    base = results[0]["peak_rss_mb"]
    assert isinstance(base, dict)
    lines = [
        "| submitted | running at most | queued at most | wall s | " + " | ".join(f"{n} MB" for n in base) + " |",
        "|---:|---:|---:|---:|" + "---:|" * len(base),
    ]
    for result in results:
        peaks = result["peak_rss_mb"]
        assert isinstance(peaks, dict)
        cells = " | ".join(f"{peaks[n]:.0f} ({peaks[n] / base[n]:.2f}x)" for n in base)
        lines.append(
            f"| {result['burst']} | {result['most_running']} | {result['most_queued']} | {result['wall_s']} | {cells} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "admission.json").write_text(json.dumps(results, indent=1))
    (args.out / "admission.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
