"""`faceflow report` and `faceflow timeline`: an episode's current outputs as an HTML report, CSV or JSON."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceflow.v1 import storage_pb2

from services.cli.session import data_root, fetch_outputs, session
from services.common import errors
from services.common.grpc_errors import translate_rpc_errors

REPORT_FILES = ("manifest.json", "identities.json", "screentime.json", "tracks.jsonl", "detections.jsonl")
REVIEWED_FILES = ("identities.reviewed.json", "screentime.reviewed.json")


@contextmanager
def run_folder(args: argparse.Namespace) -> Iterator[Path]:
    """The current outputs of an episode as a folder: the local data root's, or fetched through storage."""
    local = data_root(args) / "episodes" / args.episode
    if (local / "manifest.json").is_file() and args.storage == "local":
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="faceflow-run-") as scratch, session(args, ("storage",)) as s:
        folder = fetch_outputs(s, args.episode, Path(scratch), REPORT_FILES)
        with translate_rpc_errors("storage"):
            crops = s.storage.ListArtifacts(
                storage_pb2.ListArtifactsRequest(prefix=storage_pb2.ArtifactRef(ep_id=args.episode, name="crops/"))
            )
        fetch_outputs(s, args.episode, folder, [a.ref.name for a in crops.artifacts])
        with contextlib.suppress(errors.NotFound):  # reviewed outputs exist only once someone reviewed
            fetch_outputs(s, args.episode, folder, REVIEWED_FILES)
        yield folder


def cmd_report(args: argparse.Namespace) -> int:
    from services.reports.report import write_report

    with run_folder(args) as folder:
        path = write_report(folder, Path(args.out), args.episode)
    print(f"report: {path}")
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from services.reports.timeline import load_rows, write_csv, write_json

    if not (args.csv or args.json):
        raise errors.InvalidArgument("give --csv FILE and/or --json FILE")
    with run_folder(args) as folder:
        rows, meta = load_rows(folder)
        if args.csv:
            write_csv(rows, Path(args.csv), args.episode)
        if args.json:
            write_json(rows, Path(args.json), meta)
    print(
        f"{len(rows)} timeline rows"
        + (f" -> {args.csv}" if args.csv else "")
        + (f" -> {args.json}" if args.json else "")
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write the HTML report of an episode (contact sheet, charts)")
    report.add_argument("episode")
    report.add_argument("--out", default="report", help="output folder (report.html)")
    report.set_defaults(func=cmd_report)
    timeline = sub.add_parser("timeline", help="export the screen-time timeline as CSV and/or JSON")
    timeline.add_argument("episode")
    timeline.add_argument("--csv", help="CSV file to write")
    timeline.add_argument("--json", help="JSON file to write")
    timeline.set_defaults(func=cmd_timeline)
