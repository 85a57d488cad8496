"""`faceflow show SHOW ...`: a show's screen time per person and episode (a season roll-up), its
exports (CSV, JSON, Parquet: services/reports/show_export.py), and the reviewers' cross-episode
decisions: link identities of different episodes into one person, unlink one, name a person.

Identities are named EP/IDENTITY (an episode id and an identity id of its current run, as
`faceflow review EP show` lists them); a malformed one is refused before any call is made.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faceflow.v1 import orchestrator_pb2

from services.cli import render
from services.cli.session import session
from services.common.errors import InvalidArgument
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.reports import show_export

REF_EXAMPLE = "an episode id and an identity id of its current run, e.g. s1e02/id_0003"
REF_HELP = f"an identity: {REF_EXAMPLE}"
MAX_SUGGESTIONS_SHOWN = 5


def parse_ref(text: str) -> orchestrator_pb2.IdentityRef:
    """EP/IDENTITY as an IdentityRef; InvalidArgument naming the problem otherwise."""
    ep_id, slash, identity_id = text.partition("/")
    if not slash or not ep_id or not identity_id or "/" in identity_id:
        raise InvalidArgument(f"{text!r} is not EP/IDENTITY ({REF_EXAMPLE})")
    validate_id("episode", ep_id)
    validate_id("identity", identity_id)
    return orchestrator_pb2.IdentityRef(ep_id=ep_id, identity_id=identity_id)


def _seconds_cell(value: float, counted: bool) -> str:
    if not counted:
        return "n/a"
    return f"{value:.2f}" if value > 0 else "-"


def print_table(show: orchestrator_pb2.ShowScreenTime) -> None:
    """The person x episode table: seconds per episode (S1E2, else the episode id), Total, Share %,
    Episodes appeared in, and the identities (EP/IDENTITY) that make each row."""
    table = show_export.wide_table(show)
    counted = [bool(e.run_id) for e in show.episodes]
    where = f"season {show.season}" if show.season else "every season"
    print(
        f"show {show.show_id}, {where}: {len(show.episodes)} episode(s), {sum(counted)} with a run, "
        f"{show.total_duration_s:.1f} s in all; {len(show.people)} people"
    )
    headers = ["person", *table.episode_columns, "Total", "Share", "Episodes", "identities"]
    cells = []
    for person, row in zip(show.people, table.rows, strict=True):
        cells.append(
            [
                row["person"],
                *(_seconds_cell(row[c], ok) for c, ok in zip(table.episode_columns, counted, strict=True)),
                f"{row['total_s']:.2f}",
                f"{row['share']:.1%}",
                str(row["episodes_appeared"]),
                " ".join(f"{i.identity.ep_id}/{i.identity.identity_id}" for i in person.identities),
            ]
        )
    widths = [max([len(h), *(len(c[k]) for c in cells)]) for k, h in enumerate(headers)]
    last = len(headers) - 1

    def line(values: list[str]) -> str:
        parts = [
            v if k == last else (v.ljust(widths[k]) if k == 0 else v.rjust(widths[k])) for k, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    print(line(headers))
    for row_cells in cells:
        print(line(row_cells))
    uncounted = [e.ep_id for e in show.episodes if not e.run_id]
    if uncounted:
        print(f"not counted (no completed run): {', '.join(uncounted)}")
    if show.unlinked_episodes:
        print(f"unknown people not linked across (another embedding model): {', '.join(show.unlinked_episodes)}")
    suggested = [(p.display_name, s) for p in show.people for s in p.suggestions]
    for name, suggestion in suggested[:MAX_SUGGESTIONS_SHOWN]:
        print(f"may be one person: {name} and {suggestion.display_name} (similarity {suggestion.similarity:.2f})")
    if len(suggested) > MAX_SUGGESTIONS_SHOWN:
        print(f"... and {len(suggested) - MAX_SUGGESTIONS_SHOWN} more suggestion(s) (--json lists them all)")


def _output(args: argparse.Namespace, show: orchestrator_pb2.ShowScreenTime) -> None:
    if args.json:
        print(show_export.json_text(show), end="")
    else:
        print_table(show)


def cmd_show(args: argparse.Namespace) -> int:
    action = args.show_command
    # Everything the user typed is checked before a stack is started or a call made.
    exports = action == "screentime" and (args.csv or args.parquet)
    if action == "screentime" and args.long and not args.csv:
        raise InvalidArgument("--long shapes the CSV export: give it with --csv FILE")
    refs = [parse_ref(r) for r in args.refs] if action in ("link", "unlink", "name") else []
    if action == "link" and len(refs) < 2:
        raise InvalidArgument("link needs two or more identities (EP/IDENTITY) of different episodes")
    if action == "name" and not args.name.strip():
        raise InvalidArgument("the name is empty")
    show_id, season = args.show, args.season
    with session(args) as s, translate_rpc_errors("orchestrator"):
        if action == "screentime":
            show = s.orchestrator.GetShowScreenTime(
                orchestrator_pb2.GetShowScreenTimeRequest(show_id=show_id, season=season)
            )
        elif action == "link":
            show = s.orchestrator.LinkIdentities(
                orchestrator_pb2.LinkIdentitiesRequest(show_id=show_id, season=season, identities=refs)
            )
        elif action == "unlink":
            show = s.orchestrator.UnlinkIdentity(
                orchestrator_pb2.UnlinkIdentityRequest(show_id=show_id, season=season, identity=refs[0])
            )
        else:
            show = s.orchestrator.NameShowPerson(
                orchestrator_pb2.NameShowPersonRequest(show_id=show_id, season=season, identity=refs[0], name=args.name)
            )
    if exports:
        if args.csv:
            path = show_export.write_csv(show, Path(args.csv), long=args.long)
            render.status(f"csv ({'long' if args.long else 'wide'}): {path}")
        if args.parquet:
            render.status(f"parquet: {show_export.write_parquet(show, Path(args.parquet))}")
    _output(args, show)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = sub.add_parser(
        "show", help="a show's screen time per person and episode; link, unlink and name people across episodes"
    )
    show.add_argument("show", metavar="SHOW", help="show id")
    show.add_argument("--season", type=int, default=0, help="only this season (default: every season)")
    # --season and --json also after the action (`faceflow show S screentime --season 2`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--season", type=int, default=argparse.SUPPRESS, help="only this season")
    common.add_argument("--json", action="store_true", help="the roll-up as JSON on stdout instead of the table")
    actions = show.add_subparsers(dest="show_command", required=True)
    screentime = actions.add_parser(
        "screentime", parents=[common], help="seconds per person and episode, total, share; exports"
    )
    screentime.add_argument("--csv", help="write the table as CSV here (one row per person, a column per episode)")
    screentime.add_argument("--long", action="store_true", help="the CSV as one row per person x episode")
    screentime.add_argument("--parquet", help="write the long table (person x episode) as Parquet here")
    screentime.set_defaults(refs=[])
    link = actions.add_parser("link", parents=[common], help="these identities (of different episodes) are one person")
    link.add_argument("refs", nargs="+", metavar="EP/IDENTITY", help=REF_HELP)
    unlink = actions.add_parser(
        "unlink", parents=[common], help="take an identity out of its row (never linked automatically again)"
    )
    unlink.add_argument("refs", nargs=1, metavar="EP/IDENTITY", help=REF_HELP)
    name = actions.add_parser("name", parents=[common], help="name a person: the identity and every one linked to it")
    name.add_argument("refs", nargs=1, metavar="EP/IDENTITY", help=REF_HELP)
    name.add_argument("name")
    show.set_defaults(func=cmd_show)
