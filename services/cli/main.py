"""`faceflow`: the command line over the services (an ephemeral local stack when no address is given).

This module assembles the parser and runs a command; each command group lives in a module of its own:
up (the supervised local stack), run, facebank, episodes, jobs, review, evaluate (eval, sample),
outputs (report, timeline) and auth. session.py is how every command reaches the services.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from faceflow.client import FaceflowError as ClientError

from services.cli import auth, episodes, evaluate, facebank, jobs, outputs, render, review, run, show, up
from services.cli.session import EXIT_FAILURE, EXIT_USER_ERROR
from services.cli.settings import cli_settings
from services.common import errors
from services.common.grpc_errors import from_rpc_error, from_status

GLOBAL_OPTIONS = ("--data-root", "--storage")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceflow", description="Who is on screen, for how long.")
    parser.add_argument("--data-root", help="storage root for a local stack (FACEFLOW_DATA_ROOT, default ./data)")
    parser.add_argument(
        "--storage",
        choices=["local", "s3"],
        default=None,  # FACEFLOW_CLI_STORAGE, else local: main resolves it (cli_settings)
        help="local stack storage: the data root, or S3 on a SeaweedFS server started on loopback",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_parser(sub)
    run.add_parser(sub)
    facebank.add_parser(sub)
    episodes.add_parser(sub)
    jobs.add_parser(sub)
    review.add_parser(sub)
    show.add_parser(sub)
    evaluate.add_eval_parser(sub)
    outputs.add_parser(sub)
    auth.add_parser(sub)
    evaluate.add_sample_parser(sub)
    return parser


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
        if args.storage is None:
            args.storage = cli_settings().cli_storage
        try:
            return int(args.func(args))
        except ClientError as error:  # faceflow.client's errors are the same statuses, with the same sentences
            raise from_status(error.code, error.details, "faceflow") from None
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
