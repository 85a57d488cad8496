"""The microservice mode: the five real service processes (LocalStack) and the RunEpisode RPC.

Timing is client-side around RunEpisode (what a user waits for), models already warm; peak RSS
is sampled for each service process while the stack lives.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from bench.procmem import PeakRss
from bench.worker import EPISODE_ID, enrol_requests
from services.cli.stack import LocalStack


@dataclass
class MicroStack:
    """A started LocalStack with an episode created (and people enrolled), ready for timed runs."""

    data_root: Path
    video: Path
    enrol: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0

    def __enter__(self) -> MicroStack:
        t0 = time.monotonic()
        self._stack = LocalStack(self.data_root, extra_env=self.extra_env)
        self._stack.start()
        self.startup_s = time.monotonic() - t0
        self._channel = self._stack.channel("orchestrator")
        self._orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        if self.enrol is not None:
            for request in enrol_requests(self.enrol):
                self._orchestrator.EnrollPerson(request)
        self._orchestrator.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(
                ep_id=EPISODE_ID, source_path=str(self.video.resolve()), replace_video=True
            )
        )
        pids = {name: p.process.pid for name, p in self._stack.processes.items()}
        self._rss = PeakRss(pids).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._rss.__exit__()
        self._channel.close()
        self._stack.stop()

    def peak_rss_mb(self) -> dict[str, float]:
        """Per-service peak so far (VmHWM read now, plus the samples)."""
        self._rss._sample("VmHWM")
        return self._rss.peak_mb()

    def run(self, stride: int, tracker: str = "", refine: bool = True) -> dict[str, Any]:
        """One RunEpisode at `stride` (tracker: "" for the default; refine=False: the tracker's tracks
        without split/merge post-processing): wall time, the manifest's timings and counts, the run folder."""
        request = orchestrator_pb2.SubmitJobRequest(
            ep_id=EPISODE_ID,
            options=orchestrator_pb2.RunOptions(stride=stride, tracker=tracker, skip_track_refine=not refine),
            idempotency_key=uuid.uuid4().hex,
        )
        t0 = time.monotonic()
        last = orchestrator_pb2.Progress()
        for progress in self._orchestrator.RunEpisode(request):
            last = progress
        wall = time.monotonic() - t0
        if last.state != orchestrator_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"the benchmark run failed: {last.message}")
        run_dir = self.data_root.resolve() / "episodes" / EPISODE_ID / "runs" / last.summary.run_id
        manifest = json.loads((run_dir / "manifest.json").read_text())
        return {
            "wall_s": wall,
            "run_dir": str(run_dir),
            "timings_s": manifest["timings_s"],
            "counts": manifest["counts"],
        }
