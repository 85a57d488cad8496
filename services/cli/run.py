"""`faceflow run`: create (or reuse) an episode, run it through the pipeline, print its screen time."""

from __future__ import annotations

import argparse
import functools
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from faceflow.v1 import orchestrator_pb2, storage_pb2
from tqdm import tqdm

from services.cli import jobs, render
from services.cli.session import EXIT_FAILURE, Session, session
from services.common import errors
from services.common.grpc_errors import translate_rpc_errors
from services.common.sampling import check_stride


def cmd_run(args: argparse.Namespace) -> int:
    options = orchestrator_pb2.RunOptions(
        stride=args.stride,
        tracker=args.tracker,
        skip_track_refine=args.no_track_refine,
        detector=args.detector,
        show_id=args.show,
        det_score_threshold=args.det_threshold,
    )
    # The stride's one rule, before a long upload rather than after it (the server checks it again).
    check_stride(args.stride, "adaptive sampling")
    with session(args) as s:
        if args.video:
            place = Placement(args.show, args.season, args.episode_number)
            create_episode(s, args.video, args.episode, place, args.replace_video)
        request = orchestrator_pb2.SubmitJobRequest(
            ep_id=args.episode, options=options, idempotency_key=args.idempotency_key or uuid.uuid4().hex
        )
        stream: Iterable[orchestrator_pb2.Progress] = s.orchestrator.RunEpisode(request)
        if s.data_root is None:  # a running stack: submit again (same key) and follow the job across restarts
            resubmit = functools.partial(s.orchestrator.RunEpisode, request)
            stream = jobs.follow_job(stream, jobs.watcher(s.orchestrator), resubmit=resubmit)
        final = render.follow_progress(stream)
    if final.state != orchestrator_pb2.JOB_STATE_SUCCEEDED:
        render.status(
            f"error: run {orchestrator_pb2.JobState.Name(final.state).removeprefix('JOB_STATE_').lower()}: "
            f"{final.message}"
        )
        return EXIT_FAILURE
    render.screen_time_table(final.summary)
    return 0


@dataclass(frozen=True)
class Placement:
    """The show an episode is created in, its season and its number in it (0: not set)."""

    show: str = ""  # "default" for a new episode, the episode's own for a replaced video
    season: int = 0
    episode_number: int = 0

    def request(self, ep_id: str, replace: bool) -> storage_pb2.CreateEpisodeRequest:
        return storage_pb2.CreateEpisodeRequest(
            ep_id=ep_id,
            show_id=self.show,
            season=self.season,
            episode_number=self.episode_number,
            replace_video=replace,
        )


def create_episode(s: Session, video: str, ep_id: str, place: Placement, replace: bool) -> None:
    """The episode's video: s3://BUCKET/KEY already in the stack's bucket; else a local file, which a
    running stack gets as an upload (faceflow.client, resumable, progress bar) and the CLI's own local
    stack reads where it is (services never open a path a remote client chose)."""
    if video.startswith("s3://"):
        if s.client is not None:
            s.client.create_episode_from_s3(
                video,
                ep_id,
                show=place.show,
                replace_video=replace,
                season=place.season,
                episode_number=place.episode_number,
            )
            return
        request = place.request(ep_id, replace)
        request.source_uri = video
        with translate_rpc_errors("orchestrator"):
            s.orchestrator.CreateEpisode(request)
        return
    path = Path(video)
    if not path.is_file():
        raise errors.NotFound(f"video file {video} does not exist")
    if s.client is None:
        request = place.request(ep_id, replace)
        request.source_path = str(path.resolve())
        with translate_rpc_errors("orchestrator"):
            s.orchestrator.CreateEpisode(request)
        return
    size = path.stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, desc="upload", file=sys.stderr, disable=None) as bar:

        def progress(sent: int, _total: int) -> None:
            bar.update(sent - bar.n)

        s.client.upload(
            path,
            ep_id,
            show=place.show,
            season=place.season,
            episode_number=place.episode_number,
            replace_video=replace,
            on_progress=progress,
        )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run an episode and print its screen time")
    run.add_argument(
        "video",
        nargs="?",
        help="video file, or s3://BUCKET/KEY already in the stack's bucket (omit to rerun an existing episode)",
    )
    run.add_argument("--episode", required=True, help="episode id")
    run.add_argument(
        "--stride",
        type=int,
        default=0,
        help="process every Nth frame only (default: adaptive sampling, ~2.5 base frames per second)",
    )
    run.add_argument(
        "--tracker",
        default="",
        help="bytetrack or strongsort (appearance-aware); default: the tracker service's (bytetrack)",
    )
    run.add_argument(
        "--no-track-refine",
        action="store_true",
        help="keep the tracker's tracks as they are (no split/merge post-processing): to measure a tracker alone",
    )
    run.add_argument("--detector", default="retinaface", help="detector (retinaface)")
    run.add_argument("--det-threshold", type=float, default=0.0, help="detector score threshold (default: service's)")
    run.add_argument(
        "--show",
        default="",
        help="show whose facebank names identities (default: 'default'); with a video, the show the episode "
        "is created in (a replaced video keeps the episode's show unless one is given)",
    )
    add_numbers_arguments(run)  # with a video: the episode's place in its show
    run.add_argument("--replace-video", action="store_true", help="replace the video of an existing episode")
    run.add_argument("--idempotency-key", default="", help="retry-safe key: a resubmit joins the same job")
    run.add_argument("--orchestrator", help="orchestrator address (FACEFLOW_ORCHESTRATOR_ADDR)")
    run.set_defaults(func=cmd_run)


def add_numbers_arguments(parser: argparse.ArgumentParser) -> None:
    """--season and --episode-number, as every command that places an episode in a show takes them."""
    parser.add_argument("--season", type=int, default=0, metavar="N", help="season of the show (0: not set)")
    parser.add_argument(
        "--episode-number", type=int, default=0, metavar="N", help="the episode's number in its season (0: not set)"
    )
