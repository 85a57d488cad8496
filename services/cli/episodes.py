"""`faceflow episodes ...`: stored episodes, their deletion, saved face crops and crop harvesting."""

from __future__ import annotations

import argparse
import json

from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli import render
from services.cli.run import add_numbers_arguments
from services.cli.session import EXIT_FAILURE, session
from services.common.grpc_errors import translate_rpc_errors


def cmd_episodes_list(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        episodes = s.storage.ListEpisodes(storage_pb2.ListEpisodesRequest(show_id=args.show)).episodes
    print(f"{'EPISODE':<24} {'SHOW':<20} {'SEASON':>6} {'NUMBER':>6} {'VIDEO':<10} {'DURATION':>9} RUN")
    for ep in episodes:
        print(
            f"{ep.ep_id:<24} {ep.show_id or 'default':<20} {ep.season or '-':>6} {ep.episode_number or '-':>6} "
            f"{f'{ep.video.width}x{ep.video.height}':<10} {ep.video.duration_s:8.1f}s {ep.current_run_id or '-'}"
        )
    if not episodes:
        render.status("no episodes" + (f" in show {args.show}" if args.show else ""))
    return 0


def cmd_episodes_set_show(args: argparse.Namespace) -> int:
    request = orchestrator_pb2.SetEpisodeShowRequest(
        ep_id=args.episode, show_id=args.show, season=args.season, episode_number=args.episode_number
    )
    with session(args) as s, translate_rpc_errors("orchestrator"):
        episode = s.orchestrator.SetEpisodeShow(request)
    place = f"show {episode.show_id}"
    if episode.season:
        place += f", season {episode.season}"
    if episode.episode_number:
        place += f", episode {episode.episode_number}"
    print(f"{episode.ep_id}: {place}")
    return 0


def cmd_episodes_show(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        episode = s.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=args.episode))
    print(json.dumps(json_format.MessageToDict(episode, preserving_proto_field_name=True), indent=1))
    return 0


def cmd_episodes_delete(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        result = s.storage.DeleteEpisode(
            storage_pb2.DeleteEpisodeRequest(ep_id=args.episode, include_s3=args.include_s3)
        )
    print(f"deleted {args.episode}: {result.local_dirs_removed} local dir(s), {result.s3_objects_removed} S3 object(s)")
    return 0


def cmd_episodes_delete_all(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        result = s.storage.DeleteAllEpisodes(
            storage_pb2.DeleteAllEpisodesRequest(confirm=args.confirm, include_s3=args.include_s3)
        )
    print(
        f"deleted {result.episodes_deleted} episode(s): {result.local_dirs_removed} local dir(s), "
        f"{result.s3_objects_removed} S3 object(s)"
    )
    return 0


def cmd_episodes_crops(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        page = s.storage.ListTrackCrops(
            storage_pb2.ListTrackCropsRequest(
                ep_id=args.episode,
                track_id=args.track,
                sample=args.sample,
                limit=args.limit,
                start_after=args.start_after,
            )
        )
    for item in page.items:
        print(f"{item.frame_idx:>7} {item.ts:9.3f}s {item.width}x{item.height} {item.key} {item.url}")
    if page.next_start_after:
        print(f"more: --start-after {page.next_start_after}")
    return 0


def cmd_episodes_harvest(args: argparse.Namespace) -> int:
    with session(args) as s:
        final = render.follow_progress(
            s.orchestrator.HarvestCrops(orchestrator_pb2.HarvestCropsRequest(ep_id=args.episode, run_id=args.run))
        )
    if final.state != orchestrator_pb2.JOB_STATE_SUCCEEDED:
        render.status(f"error: harvest failed: {final.message}")
        return EXIT_FAILURE
    print(f"saved {final.summary.crops_saved} crop(s) for {final.summary.tracks_harvested} track(s) without crops")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    episodes = sub.add_parser("episodes", help="stored episodes").add_subparsers(dest="episodes_command", required=True)
    listing = episodes.add_parser("list", help="stored episodes with their show, season and number")
    listing.add_argument("--show", default="", help="only this show's episodes (default: every show)")
    listing.set_defaults(func=cmd_episodes_list)
    set_show = episodes.add_parser(
        "set-show", help="move an episode to a show, season and number (each as given: 0 or none clears it)"
    )
    set_show.add_argument("episode")
    set_show.add_argument("--show", default="default", help="the show (default: 'default')")
    add_numbers_arguments(set_show)
    set_show.set_defaults(func=cmd_episodes_set_show)
    show = episodes.add_parser("show")
    show.add_argument("episode")
    show.set_defaults(func=cmd_episodes_show)
    delete = episodes.add_parser("delete")
    delete.add_argument("episode")
    delete.add_argument("--include-s3", action="store_true", help="also delete object-store artifacts")
    delete.set_defaults(func=cmd_episodes_delete)

    delete_all = episodes.add_parser("delete-all", help="delete every episode (needs the confirmation phrase)")
    delete_all.add_argument("--confirm", required=True, help='exactly "delete all episodes"')
    delete_all.add_argument("--include-s3", action="store_true", help="also delete the episodes' S3 objects")
    delete_all.set_defaults(func=cmd_episodes_delete_all)
    crops = episodes.add_parser("crops", help="list a track's saved face crops with URLs")
    crops.add_argument("episode")
    crops.add_argument("track", type=int)
    crops.add_argument("--sample", type=int, default=1, help="every Nth crop")
    crops.add_argument("--limit", type=int, default=100, help="items per page (max 500)")
    crops.add_argument("--start-after", default="", help="cursor from the previous page")
    crops.set_defaults(func=cmd_episodes_crops)

    harvest = episodes.add_parser("harvest", help="save crops for the tracks of a run that have none")
    harvest.add_argument("episode")
    harvest.add_argument("--run", default="", help="run id (default: the current run)")
    harvest.set_defaults(func=cmd_episodes_harvest)
