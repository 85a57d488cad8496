"""Terminal output: the progress bar fed by the progress stream, and the screen-time table."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from faceflow.v1 import orchestrator_pb2
from tqdm import tqdm

from services.common.grpc_errors import translate_rpc_errors


def status(message: str) -> None:
    """A line on stderr, above a progress bar if one is drawn (tqdm.write keeps the bar intact)."""
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


def _stage(progress: orchestrator_pb2.Progress) -> str:
    return orchestrator_pb2.Stage.Name(progress.stage).removeprefix("STAGE_").lower()


def follow_progress(stream: Iterable[orchestrator_pb2.Progress]) -> orchestrator_pb2.Progress:
    """Draw a bar (frames) until the stream ends; return the last progress message. Give it
    jobs.follow_job(...) to keep following a job across orchestrator restarts."""
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


def review_state(state: orchestrator_pb2.ReviewState, show_log: bool = False) -> None:
    print(f"episode {state.ep_id}, run {state.run_id}: {len(state.identities)} identities after review")
    print(f"{'identity':<10} {'label':<24} {'source':<9} {'seconds':>8}  tracks")
    for row in state.identities:
        tracks = ",".join(str(t) for t in row.track_ids)
        label = row.label or "(unknown)"
        print(f"{row.identity_id:<10} {label:<24} {row.label_source or '-':<9} {row.seconds:8.2f}  {tracks}")
    if state.unassigned_track_ids or state.deleted_track_ids:
        print(f"unassigned tracks: {list(state.unassigned_track_ids)}  deleted tracks: {list(state.deleted_track_ids)}")
    for entry in state.log if show_log else state.log[-5:]:
        what = f"undo of #{entry.undo_of}" if entry.undo_of else entry.op.WhichOneof("op")
        flags = (" (undone)" if entry.undone else "") + (
            f" (not applied: {entry.not_applied})" if entry.not_applied else ""
        )
        print(f"  #{entry.seq} {entry.at} run {entry.run_id}: {what}{flags}")
