"""`faceflow up`: the five services on loopback (optionally S3 on SeaweedFS, Envoy and the review UI),
supervised until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Callable

from services.cli import render
from services.cli.seaweed import SeaweedServer
from services.cli.session import EXIT_FAILURE, data_root
from services.cli.stack import ORDER, KeepsFailing, LocalStack, RestartPolicy, Supervisor

SUPERVISE_INTERVAL_S = 0.5  # how often `faceflow up` looks for processes that exited


def cmd_up(args: argparse.Namespace) -> int:
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
    root = data_root(args)
    policy = RestartPolicy(max_restarts=args.max_restarts)
    supervisor = Supervisor(policy, report=render.status, abort=stop.is_set)
    with contextlib.ExitStack() as resources:
        extra_env: dict[str, str] = {}
        if args.storage == "s3":
            s3 = resources.enter_context(SeaweedServer(root / "seaweed"))
            print(f"{'s3':<13} {s3.endpoint_url:<22} bucket {s3.bucket} (SeaweedFS, data in {root}/seaweed)")
            extra_env = s3.env()
            supervisor.watch_seaweed(s3)
        stack = resources.enter_context(LocalStack(root, extra_env=extra_env))
        supervisor.watch_stack(stack)
        for name in ORDER:
            p = stack.processes[name]
            print(f"{name:<13} {p.address:<22} metrics http://{stack.host}:{p.metrics_port}/metrics")
        print(
            f"export FACEFLOW_ORCHESTRATOR_ADDR={stack.address('orchestrator')} "
            f"FACEFLOW_STORAGE_ADDR={stack.address('storage')}"
        )
        print(
            f"every call needs a token: `faceflow auth token --data-root {root} --role reviewer` "
            "(viewer | reviewer | admin); this machine's user may call without one"
        )
        if args.web:
            from services.cli.web import web_frontend

            web = resources.enter_context(web_frontend(stack, root / "web", args.web_port))
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
