"""One measured process: the in-process pipeline or the naive baseline, run N times on one video.

Why a separate process: peak RSS (VmHWM) is per process and never goes down, so each mode and
episode length gets a fresh process; and models are loaded once per process, outside the timing,
exactly as the services load them once at start-up.

    python -m bench.worker inprocess|naive --video V --data-root D --stride S [--runs N]
        [--enrol DIR] [--facebank-root R]

Prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceflow.v1 import detector_pb2, orchestrator_pb2, storage_pb2

from bench.inprocess import inprocess_clients
from bench.procmem import status_kb
from services.orchestrator.facebank.enrolment import enroll_person
from services.orchestrator.run.options import RunSettings
from services.orchestrator.run.pipeline import run_episode
from services.orchestrator.run.sampler import SamplerSettings
from services.storage.local import LocalStorage

if TYPE_CHECKING:
    pass

EPISODE_ID = "bench"


def enrol_requests(enrol_dir: Path) -> list[orchestrator_pb2.EnrollPersonRequest]:
    """One EnrollPersonRequest per person folder of the sample episode's enrol/ directory."""
    requests = []
    for person in sorted(p for p in enrol_dir.iterdir() if p.is_dir()):
        images = [
            orchestrator_pb2.EnrollPersonRequest.SeedImage(name=f.name, data=f.read_bytes())
            for f in sorted(person.iterdir())
            if f.is_file()
        ]
        requests.append(orchestrator_pb2.EnrollPersonRequest(show_id="default", name=person.name, images=images))
    return requests


def run_inprocess(args: argparse.Namespace) -> dict[str, Any]:
    detector_settings = None
    if args.max_side:
        from services.detector.retinaface import RetinaFaceSettings

        detector_settings = RetinaFaceSettings(max_side=args.max_side)
    started = time.monotonic()
    clients = inprocess_clients(args.data_root, detector_settings=detector_settings)
    startup_s = time.monotonic() - started
    if args.enrol:
        for request in enrol_requests(args.enrol):
            enroll_person(clients, request)
    video = str(args.video.resolve())
    info = clients.detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri=video)).info
    clients.storage.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id=EPISODE_ID, source_path=video, video=info, replace_video=True)
    )
    settings = RunSettings(stride=args.stride)
    if args.window_s is not None:
        settings = dataclasses.replace(settings, sampler=SamplerSettings(window_s=args.window_s))
    runs = []
    for _ in range(args.runs):
        t0 = time.monotonic()
        summary = run_episode(
            clients,
            EPISODE_ID,
            settings,
            lambda _: None,
            threading.Event(),  # type: ignore[arg-type]
        )
        wall = time.monotonic() - t0
        run_dir = args.data_root / "episodes" / EPISODE_ID / "runs" / summary.run_id
        manifest = json.loads((run_dir / "manifest.json").read_text())
        runs.append(
            {"wall_s": wall, "run_dir": str(run_dir), "timings_s": manifest["timings_s"], "counts": manifest["counts"]}
        )
    return {"startup_s": startup_s, "runs": runs}


def run_naive_mode(args: argparse.Namespace) -> dict[str, Any]:
    from bench.naive import NaiveModels, run_naive
    from services.common.config import Settings

    started = time.monotonic()
    models = NaiveModels.load(Settings.from_env())
    startup_s = time.monotonic() - started
    people = LocalStorage(args.facebank_root).list_people("default") if args.facebank_root else []
    runs = []
    for i in range(args.runs):
        out_dir = args.data_root / f"naive-{i}"
        result = run_naive(models, args.video, out_dir, people, args.stride)
        runs.append(
            {
                "wall_s": result.wall_s,
                "run_dir": str(out_dir),
                "stage_s": result.stage_s,
                "counts": {
                    "frames_processed": result.frames,
                    "faces": result.faces,
                    "faces_embedded": result.faces_embedded,
                    "tracks": result.tracks,
                    "identities": result.identities,
                },
            }
        )
    return {"startup_s": startup_s, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("mode", choices=["inprocess", "naive", "stages"])
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--enrol", type=Path, default=None)
    parser.add_argument("--facebank-root", type=Path, default=None)
    parser.add_argument("--max-side", type=int, default=0, help="inprocess: detector max_side (0: default)")
    parser.add_argument("--window-s", type=float, default=None, help="inprocess: sampler window (default: 0.5 s)")
    args = parser.parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    if args.mode == "inprocess":
        result = run_inprocess(args)
    elif args.mode == "naive":
        result = run_naive_mode(args)
    else:
        from bench.stages import measure_stages

        result = measure_stages(args.video)
    result["peak_rss_mb"] = round((status_kb(_self_pid(), "VmHWM") or 0) / 1024, 1)
    print(json.dumps(result))
    return 0


def _self_pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    raise SystemExit(main())
