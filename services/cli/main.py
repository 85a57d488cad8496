"""`faceflow`: the command line over the services (an ephemeral local stack when no address is given)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc
from tqdm import tqdm

from services.cli import jobs, render
from services.cli.stack import (
    ORDER,
    KeepsFailing,
    LocalStack,
    RestartPolicy,
    Supervisor,
    local_credentials,
    local_user,
)
from services.common import errors
from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.grpc_errors import from_rpc_error, translate_rpc_errors
from services.common.local_issuer import LocalIssuer, parse_ttl
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel
from services.storage.seaweed import SeaweedServer

EXIT_USER_ERROR = 2  # bad input: the user can fix it
EXIT_FAILURE = 1
SUPERVISE_INTERVAL_S = 0.5  # how often `faceflow up` looks for processes that exited


@dataclass
class Session:
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    data_root: Path | None
    # Calling with the stack's service token: the trusted local CLI, which may name files on this disk.
    trusted_local: bool = False


def _data_root(args: argparse.Namespace) -> Path:
    return Path(args.data_root or os.environ.get("FACEFLOW_DATA_ROOT") or "data").resolve()


def running_stack_credentials(args: argparse.Namespace) -> ClientCredentials | None:
    """FACEFLOW_TOKEN (a user's JWT) if set; else, on the machine that runs `faceflow up` with this data
    root, its service token (the trusted local user); else none, and the services will say so."""
    token = os.environ.get("FACEFLOW_TOKEN", "").strip()
    if token:
        return ClientCredentials(bearer=token)
    issuer = LocalIssuer.at(_data_root(args))
    return local_credentials(issuer) if issuer.service_token() else None


@contextmanager
def session(args: argparse.Namespace, services: tuple[str, ...] = ORDER) -> Iterator[Session]:
    """Use the services at FACEFLOW_ORCHESTRATOR_ADDR / FACEFLOW_STORAGE_ADDR, or start a local stack."""
    orchestrator_addr = getattr(args, "orchestrator", None) or os.environ.get("FACEFLOW_ORCHESTRATOR_ADDR")
    storage_addr = os.environ.get("FACEFLOW_STORAGE_ADDR")
    if orchestrator_addr and storage_addr:
        tls = TlsConfig.from_settings(Settings.from_env())
        credentials = running_stack_credentials(args)
        with (
            open_channel(orchestrator_addr, tls, CHANNEL_OPTIONS, credentials) as o,
            open_channel(storage_addr, tls, CHANNEL_OPTIONS, credentials) as s,
        ):
            yield Session(
                orchestrator_pb2_grpc.OrchestratorServiceStub(o),
                storage_pb2_grpc.StorageServiceStub(s),
                None,
                trusted_local=bool(credentials and credentials.service_token),
            )
        return
    data_root = _data_root(args)
    with contextlib.ExitStack() as resources:
        extra_env: dict[str, str] = {}
        if getattr(args, "storage", "local") == "s3":
            s3 = resources.enter_context(SeaweedServer(data_root / "seaweed"))
            render.status(f"S3 mode: SeaweedFS at {s3.endpoint_url}, bucket {s3.bucket} (data in {data_root}/seaweed)")
            extra_env = s3.env()
        render.status(f"starting a local stack ({', '.join(services)}) on 127.0.0.1, data root {data_root}")
        stack = resources.enter_context(LocalStack(data_root, services, extra_env=extra_env))
        orch = stack.address("orchestrator") if "orchestrator" in services else stack.address("storage")
        o = resources.enter_context(open_channel(orch, stack.tls(), CHANNEL_OPTIONS, stack.credentials()))
        s = resources.enter_context(stack.channel("storage"))
        yield Session(
            orchestrator_pb2_grpc.OrchestratorServiceStub(o),
            storage_pb2_grpc.StorageServiceStub(s),
            data_root,
            trusted_local=True,
        )


# ---- commands -------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    import signal
    import threading

    stop = threading.Event()

    def handle_signals(handler: Callable[[int, object], None] | signal.Handlers) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def on_signal(*_: object) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for a start or restart to finish
            handle_signals(signal.SIG_IGN)  # stopping is bounded (SIGKILL after a while): never cut it short
            raise KeyboardInterrupt
        stop.set()

    handle_signals(on_signal)
    data_root = _data_root(args)
    policy = RestartPolicy(max_restarts=args.max_restarts)
    supervisor = Supervisor(policy, report=render.status, abort=stop.is_set)
    with contextlib.ExitStack() as resources:
        extra_env: dict[str, str] = {}
        if args.storage == "s3":
            s3 = resources.enter_context(SeaweedServer(data_root / "seaweed"))
            print(f"{'s3':<13} {s3.endpoint_url:<22} bucket {s3.bucket} (SeaweedFS, data in {data_root}/seaweed)")
            extra_env = s3.env()
            supervisor.watch_seaweed(s3)
        stack = resources.enter_context(LocalStack(data_root, extra_env=extra_env))
        supervisor.watch_stack(stack)
        for name in ORDER:
            p = stack.processes[name]
            print(f"{name:<13} {p.address:<22} metrics http://{stack.host}:{p.metrics_port}/metrics")
        print(
            f"export FACEFLOW_ORCHESTRATOR_ADDR={stack.address('orchestrator')} "
            f"FACEFLOW_STORAGE_ADDR={stack.address('storage')}"
        )
        print(
            f"every call needs a token: `faceflow auth token --data-root {data_root} --role reviewer` "
            "(viewer | reviewer | admin); this machine's user may call without one"
        )
        if args.web:
            from services.cli.web import web_frontend

            web = resources.enter_context(web_frontend(stack, data_root / "web", args.web_port))
            print(f"{'envoy':<13} {web.envoy.address:<22} gRPC-Web (admin {web.envoy.admin_url})")
            print(f"web UI: {web.url}")
            supervisor.watch_envoy(web.envoy)
        print(
            f"logs in {stack.logs}; a process that exits is restarted on its port "
            f"(at most {policy.max_restarts} times in {policy.window_s / 60:g} minutes)"
        )
        print("faceflow is up; Ctrl-C stops every service", flush=True)
        try:
            while not stop.wait(SUPERVISE_INTERVAL_S):
                supervisor.check()
        except KeepsFailing as error:
            render.status(f"error: {error}")
            render.status("stopping every service")
            return EXIT_FAILURE
        finally:
            handle_signals(signal.SIG_IGN)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    options = orchestrator_pb2.RunOptions(
        stride=args.stride,
        tracker=args.tracker,
        skip_track_refine=args.no_track_refine,
        detector=args.detector,
        show_id=args.show,
        det_score_threshold=args.det_threshold,
    )
    with session(args) as s:
        if args.video:
            create_episode(s, args.video, args.episode, args.show, args.replace_video)
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


UPLOAD_CHUNK = 1024 * 1024


def create_episode(s: Session, video: str, ep_id: str, show: str, replace: bool) -> storage_pb2.Episode:
    """The trusted local CLI lets the stack read the file where it is; any other caller streams it
    (UploadEpisode), since services never open a path a remote client chose."""
    path = Path(video)
    if not path.is_file():
        raise errors.NotFound(f"video file {video} does not exist")
    with translate_rpc_errors("orchestrator"):
        if s.trusted_local:
            return s.orchestrator.CreateEpisode(
                storage_pb2.CreateEpisodeRequest(
                    ep_id=ep_id, source_path=str(path.resolve()), show_id=show, replace_video=replace
                )
            )

        def messages() -> Iterator[orchestrator_pb2.UploadEpisodeRequest]:
            header = orchestrator_pb2.UploadEpisodeRequest.Header(
                ep_id=ep_id, filename=path.name, show_id=show, replace_video=replace
            )
            yield orchestrator_pb2.UploadEpisodeRequest(header=header)
            with (
                path.open("rb") as stream,
                tqdm(
                    total=path.stat().st_size, unit="B", unit_scale=True, desc="upload", file=sys.stderr, disable=None
                ) as bar,
            ):
                while chunk := stream.read(UPLOAD_CHUNK):
                    bar.update(len(chunk))
                    yield orchestrator_pb2.UploadEpisodeRequest(chunk=chunk)

        return s.orchestrator.UploadEpisode(messages())


def cmd_facebank_add(args: argparse.Namespace) -> int:
    images = []
    for path in args.images:
        p = Path(path)
        if not p.is_file():
            raise errors.NotFound(f"image file {path} does not exist")
        images.append(orchestrator_pb2.EnrollPersonRequest.SeedImage(name=p.name, data=p.read_bytes()))
    with session(args) as s, translate_rpc_errors("orchestrator"):
        response = s.orchestrator.EnrollPerson(
            orchestrator_pb2.EnrollPersonRequest(show_id=args.show, name=args.name, images=images, append=args.append)
        )
    print(
        f"enrolled {response.person.name} ({response.person.person_id}) in show {response.person.show_id} "
        f"with {len(response.person.exemplars)} exemplar(s)"
    )
    for rejected in response.rejected:
        print(f"  rejected {rejected.name}: {rejected.reason}")
    return 0


def cmd_facebank_list(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        people = s.storage.ListPeople(storage_pb2.ListPeopleRequest(show_id=args.show)).people
    for person in people:
        models = sorted({e.model_id for e in person.exemplars})
        print(f"{person.person_id:<24} {person.name:<28} exemplars={len(person.exemplars)} models={','.join(models)}")
    return 0


def cmd_facebank_show(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        person = s.storage.GetPerson(storage_pb2.GetPersonRequest(show_id=args.show, person_id=args.person_id))
    print(f"{person.name} ({person.person_id}) in show {person.show_id}, enrolled {person.created_at}")
    for e in person.exemplars:
        print(f"  {e.exemplar_id}  {e.source_name:<32} quality={e.quality:.2f} model={e.model_id}")
    return 0


def cmd_facebank_remove_exemplar(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        person = s.storage.RemoveExemplar(
            storage_pb2.RemoveExemplarRequest(show_id=args.show, person_id=args.person_id, exemplar_id=args.exemplar_id)
        )
    print(f"removed exemplar {args.exemplar_id}; {person.name} keeps {len(person.exemplars)}")
    return 0


def cmd_facebank_reembed(args: argparse.Namespace) -> int:
    with session(args) as s, translate_rpc_errors("orchestrator"):
        result = s.orchestrator.ReembedFacebank(orchestrator_pb2.ReembedFacebankRequest(show_id=args.show))
    print(f"re-embedded {result.exemplars_reembedded} exemplar(s) of {result.people} person(s) with {result.model_id}")
    return 0


def cmd_facebank_remove(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        removed = s.storage.RemovePerson(storage_pb2.RemovePersonRequest(show_id=args.show, person_id=args.person_id))
    print(f"removed {args.person_id} and {removed.exemplars_removed} exemplar(s)")
    return 0


def cmd_episodes_list(args: argparse.Namespace) -> int:
    with session(args, ("storage",)) as s, translate_rpc_errors("storage"):
        episodes = s.storage.ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes
    for ep in episodes:
        print(
            f"{ep.ep_id:<24} {ep.video.width}x{ep.video.height} {ep.video.duration_s:7.1f}s "
            f"run={ep.current_run_id or '-'}"
        )
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


EVAL_FILES = ("tracks.mot.txt", "identities.json", "screentime.json", "manifest.json")


def fetch_outputs(s: Session, ep_id: str, dest: Path, names: Sequence[str] = EVAL_FILES) -> Path:
    """Download an episode's current outputs (any backend) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    with translate_rpc_errors("storage"):
        for name in names:
            ref = storage_pb2.ArtifactRef(ep_id=ep_id, name=name)
            chunks = s.storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref))
            (dest / name).write_bytes(b"".join(c.chunk for c in chunks))
    return dest


def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from services.evaluation.metrics import evaluate

    gt = Path(args.ground_truth)
    if not gt.is_file():
        raise errors.NotFound(f"ground truth file {gt} does not exist")
    run_dir = Path(args.run)
    with tempfile.TemporaryDirectory(prefix="faceflow-eval-") as scratch:
        if not (run_dir / "tracks.mot.txt").is_file():
            # An episode id: read its current outputs through storage (local or S3).
            with session(args, ("storage",)) as s:
                run_dir = fetch_outputs(s, args.run, Path(scratch))
        report = evaluate(run_dir, gt)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format_table())
    return 0


REPORT_FILES = ("manifest.json", "identities.json", "screentime.json", "tracks.jsonl", "detections.jsonl")
REVIEWED_FILES = ("identities.reviewed.json", "screentime.reviewed.json")


@contextmanager
def run_folder(args: argparse.Namespace) -> Iterator[Path]:
    """The current outputs of an episode as a folder: the local data root's, or fetched through storage."""
    import tempfile

    local = _data_root(args) / "episodes" / args.episode
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


def cmd_auth_token(args: argparse.Namespace) -> int:
    """Print a token signed by the local stack's issuer (DATA_ROOT/auth): for the web UI, FACEFLOW_TOKEN."""
    issuer = LocalIssuer.at(_data_root(args))
    print(issuer.mint(args.role, args.subject or local_user(), parse_ttl(args.ttl)))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from services.evaluation import sample_episode

    return sample_episode.main(["--media", str(args.media), "--out", str(args.out), "--seed", str(args.seed)])


# ---- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceflow", description="Who is on screen, for how long.")
    parser.add_argument("--data-root", help="storage root for a local stack (FACEFLOW_DATA_ROOT, default ./data)")
    parser.add_argument(
        "--storage",
        choices=["local", "s3"],
        default=os.environ.get("FACEFLOW_CLI_STORAGE", "local"),
        help="local stack storage: the data root, or S3 on a SeaweedFS server started on loopback",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the five services on loopback and wait")
    up.add_argument("--web", action="store_true", help="also start Envoy (gRPC-Web) and the review UI (make web)")
    up.add_argument("--web-port", type=int, default=0, help="port of the review UI (default: any free port)")
    up.add_argument(
        "--max-restarts",
        type=int,
        default=RestartPolicy.max_restarts,
        metavar="N",
        help="a process that exits again after N restarts within 5 minutes stops everything (default 5)",
    )
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run an episode and print its screen time")
    run.add_argument("video", nargs="?", help="video file (omit to rerun an existing episode)")
    run.add_argument("--episode", required=True, help="episode id")
    run.add_argument("--stride", type=int, default=0, help="process every Nth frame (default: ~5 per second)")
    run.add_argument("--tracker", default="bytetrack", help="bytetrack (default) or strongsort (appearance-aware)")
    run.add_argument(
        "--no-track-refine",
        action="store_true",
        help="keep the tracker's tracks as they are (no split/merge post-processing): to measure a tracker alone",
    )
    run.add_argument("--detector", default="retinaface", help="detector (retinaface)")
    run.add_argument("--det-threshold", type=float, default=0.0, help="detector score threshold (default: service's)")
    run.add_argument("--show", default="default", help="show whose facebank names identities")
    run.add_argument("--replace-video", action="store_true", help="replace the video of an existing episode")
    run.add_argument("--idempotency-key", default="", help="retry-safe key: a resubmit joins the same job")
    run.add_argument("--orchestrator", help="orchestrator address (FACEFLOW_ORCHESTRATOR_ADDR)")
    run.set_defaults(func=cmd_run)

    facebank = sub.add_parser("facebank", help="known people").add_subparsers(dest="facebank_command", required=True)
    add = facebank.add_parser("add", help="enrol a person from seed images")
    add.add_argument("--name", required=True)
    add.add_argument("--show", default="default")
    add.add_argument("--append", action="store_true", help="add exemplars to an existing person")
    add.add_argument("images", nargs="+")
    add.set_defaults(func=cmd_facebank_add)
    fl = facebank.add_parser("list", help="list enrolled people")
    fl.add_argument("--show", default="default")
    fl.set_defaults(func=cmd_facebank_list)
    fs = facebank.add_parser("show", help="a person and their exemplars")
    fs.add_argument("person_id")
    fs.add_argument("--show", default="default")
    fs.set_defaults(func=cmd_facebank_show)
    fe = facebank.add_parser("remove-exemplar", help="purge one exemplar (embedding and crop) of a person")
    fe.add_argument("person_id")
    fe.add_argument("exemplar_id")
    fe.add_argument("--show", default="default")
    fe.set_defaults(func=cmd_facebank_remove_exemplar)
    fre = facebank.add_parser("reembed", help="re-embed exemplars made by another model with the current one")
    fre.add_argument("--show", default="default")
    fre.set_defaults(func=cmd_facebank_reembed)
    fr = facebank.add_parser("remove", help="remove a person and their exemplars")
    fr.add_argument("person_id")
    fr.add_argument("--show", default="default")
    fr.set_defaults(func=cmd_facebank_remove)

    episodes = sub.add_parser("episodes", help="stored episodes").add_subparsers(dest="episodes_command", required=True)
    episodes.add_parser("list").set_defaults(func=cmd_episodes_list)
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

    jobs.add_parser(sub)

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

    ev = sub.add_parser("eval", help="score a run against ground truth")
    ev.add_argument("run", help="run directory or episode id")
    ev.add_argument("--ground-truth", required=True)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    report = sub.add_parser("report", help="write the HTML report of an episode (contact sheet, charts)")
    report.add_argument("episode")
    report.add_argument("--out", default="report", help="output folder (report.html)")
    report.set_defaults(func=cmd_report)
    timeline = sub.add_parser("timeline", help="export the screen-time timeline as CSV and/or JSON")
    timeline.add_argument("episode")
    timeline.add_argument("--csv", help="CSV file to write")
    timeline.add_argument("--json", help="JSON file to write")
    timeline.set_defaults(func=cmd_timeline)

    auth = sub.add_parser("auth", help="tokens of the local stack's issuer").add_subparsers(
        dest="auth_command", required=True
    )
    token = auth.add_parser("token", help="print a signed token (web UI sign-in, FACEFLOW_TOKEN)")
    token.add_argument("--role", required=True, choices=["viewer", "reviewer", "admin"])
    token.add_argument("--subject", default="", help="who the token names (default: this machine's user)")
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h, at most 30d)")
    token.set_defaults(func=cmd_auth_token)

    sample = sub.add_parser("sample", help="build the sample episode with ground truth")
    sample.add_argument("--media", type=Path, required=True)
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)
    return parser


GLOBAL_OPTIONS = ("--data-root", "--storage")


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Let --data-root / --storage stand anywhere (`faceflow run X --data-root D` as well as
    `faceflow --data-root D run X`): argparse only reads them before the subcommand."""
    front: list[str] = []
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item in GLOBAL_OPTIONS and i + 1 < len(items):
            front += items[i : i + 2]
            i += 2
            continue
        if item.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in item:
            front.append(item)
        else:
            rest.append(item)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(hoist_global_options(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except errors.FaceflowError as error:
        render.status(f"error: {error}")
        if isinstance(error, errors.Unauthenticated):
            render.status(
                "hint: set FACEFLOW_TOKEN to a token of this deployment "
                "(local stack: `faceflow auth token --data-root DIR --role reviewer`)"
            )
        user_errors = (
            errors.InvalidArgument,
            errors.NotFound,
            errors.FailedPrecondition,
            errors.AlreadyExists,
            errors.Unauthenticated,
            errors.PermissionDenied,
        )
        return EXIT_USER_ERROR if isinstance(error, user_errors) else EXIT_FAILURE
    except grpc.RpcError as error:
        render.status(f"error: {from_rpc_error(error, 'faceflow')}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        render.status("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
