"""`faceflow review EPISODE ...`: correct identities (kept across re-runs, with undo and an audit log)."""

from __future__ import annotations

import argparse

from faceflow.v1 import orchestrator_pb2

from services.cli import render
from services.cli.session import session
from services.common.grpc_errors import translate_rpc_errors


def _review_op(args: argparse.Namespace) -> orchestrator_pb2.ReviewOp:
    op = orchestrator_pb2.ReviewOp()  # the orchestrator records who made it from the verified caller
    action = args.review_command
    if action == "rename":
        op.rename.CopyFrom(orchestrator_pb2.ReviewOp.Rename(identity_id=args.identity, name=args.name))
    elif action == "merge":
        op.merge.CopyFrom(
            orchestrator_pb2.ReviewOp.Merge(source_identity_id=args.source, target_identity_id=args.target)
        )
    elif action == "move":
        op.move_track.CopyFrom(orchestrator_pb2.ReviewOp.MoveTrack(track_id=args.track, target_identity_id=args.to))
    elif action == "remove-track":
        op.remove_track.CopyFrom(orchestrator_pb2.ReviewOp.RemoveTrack(track_id=args.track))
    elif action == "delete-track":
        op.delete_track.CopyFrom(orchestrator_pb2.ReviewOp.DeleteTrack(track_id=args.track))
    elif action == "delete-face":
        op.delete_face.CopyFrom(orchestrator_pb2.ReviewOp.DeleteFace(track_id=args.track, frame=args.frame))
    elif action == "split":
        op.split.CopyFrom(orchestrator_pb2.ReviewOp.Split(identity_id=args.identity, track_ids=args.tracks))
    return op


def cmd_review(args: argparse.Namespace) -> int:
    with session(args) as s, translate_rpc_errors("orchestrator"):
        if args.review_command in ("show", "log"):
            state = s.orchestrator.GetReview(orchestrator_pb2.GetReviewRequest(ep_id=args.episode))
        elif args.review_command == "undo":
            state = s.orchestrator.UndoReview(orchestrator_pb2.UndoReviewRequest(ep_id=args.episode))
        else:
            state = s.orchestrator.Review(orchestrator_pb2.ReviewRequest(ep_id=args.episode, op=_review_op(args)))
    render.review_state(state, show_log=args.review_command == "log")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    review = sub.add_parser("review", help="correct identities (kept across re-runs, with undo)")
    review.add_argument("episode")
    actions = review.add_subparsers(dest="review_command", required=True)
    actions.add_parser("show", help="identities after review")
    actions.add_parser("log", help="the audit log")
    actions.add_parser("undo", help="undo the last operation")
    rename = actions.add_parser("rename", help="name an identity")
    rename.add_argument("identity")
    rename.add_argument("name")
    merge = actions.add_parser("merge", help="merge SOURCE into TARGET")
    merge.add_argument("source")
    merge.add_argument("target")
    move = actions.add_parser("move", help="move a track to another identity (or a new one)")
    move.add_argument("track", type=int)
    move.add_argument("--to", default="", help="target identity (default: a new identity)")
    for name, text in (("remove-track", "take a track out of its identity"), ("delete-track", "delete a track")):
        action = actions.add_parser(name, help=text)
        action.add_argument("track", type=int)
    delete_face = actions.add_parser("delete-face", help="delete one face of a track")
    delete_face.add_argument("track", type=int)
    delete_face.add_argument("frame", type=int)
    split = actions.add_parser("split", help="move some tracks of an identity into a new identity")
    split.add_argument("identity")
    split.add_argument("tracks", type=int, nargs="+")
    review.set_defaults(func=cmd_review)
