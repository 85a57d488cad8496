"""Terminal output: the progress bar fed by the progress stream, and the screen-time table."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from faceflow.v1 import orchestrator_pb2
from tqdm import tqdm

from services.common.grpc_errors import translate_rpc_errors


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stage(progress: orchestrator_pb2.Progress) -> str:
    return orchestrator_pb2.Stage.Name(progress.stage).removeprefix("STAGE_").lower()


def follow_progress(stream: Iterable[orchestrator_pb2.Progress]) -> orchestrator_pb2.Progress:
    """Draw a bar (frames) until the stream ends; return the last progress message."""
    last = orchestrator_pb2.Progress()
    bar: tqdm | None = None
    with translate_rpc_errors("orchestrator"):
        for progress in stream:
            last = progress
            if bar is None and progress.frames_total:
                status(
                    f"job {progress.job_id}: episode {progress.ep_id}, detector={progress.detector} "
                    f"tracker={progress.tracker} device={progress.device}"
                )
                bar = tqdm(
                    total=progress.frames_total,
                    unit="frame",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    disable=None if sys.stderr.isatty() else False,
                    mininterval=0.5,
                )
            if bar is not None:
                bar.n = progress.frames_done
                bar.set_postfix_str(
                    f"{_stage(progress)} tracks={progress.tracks_so_far} {progress.fps:.1f}fps", refresh=False
                )
                bar.refresh()
    if bar is not None:
        bar.close()
    return last


def screen_time_table(summary: orchestrator_pb2.RunSummary) -> None:
    print(
        f"run {summary.run_id}: {summary.frames_processed} frames, {summary.faces} faces, "
        f"{summary.tracks} tracks, {summary.identities} identities in {summary.wall_time_s:.1f} s "
        f"({summary.duration_s / max(summary.wall_time_s, 1e-9):.2f}x realtime)"
    )
    print(f"{'identity':<10} {'label':<22} {'seconds':>8} {'share':>6} {'tracks':>6}")
    for row in summary.screen_time:
        share = row.seconds / summary.duration_s if summary.duration_s else 0.0
        print(
            f"{row.identity_id:<10} {row.label or '(unknown)':<22} {row.seconds:8.2f} {share:6.1%} {row.track_count:6d}"
        )
    print(f"outputs: {summary.output_uri}")
