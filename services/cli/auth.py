"""`faceflow auth token`: tokens signed by the local stack's issuer (DATA_ROOT/auth)."""

from __future__ import annotations

import argparse

from services.cli.session import data_root
from services.cli.stack import local_user
from services.common.local_issuer import LocalIssuer, parse_ttl


def cmd_auth_token(args: argparse.Namespace) -> int:
    """Print a token signed by the local stack's issuer (DATA_ROOT/auth): for the web UI, FACEFLOW_TOKEN."""
    issuer = LocalIssuer.at(data_root(args))
    print(issuer.mint(args.role, args.subject or local_user(), parse_ttl(args.ttl)))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = sub.add_parser("auth", help="tokens of the local stack's issuer").add_subparsers(
        dest="auth_command", required=True
    )
    token = auth.add_parser("token", help="print a signed token (web UI sign-in, FACEFLOW_TOKEN)")
    token.add_argument("--role", required=True, choices=["viewer", "reviewer", "admin"])
    token.add_argument("--subject", default="", help="who the token names (default: this machine's user)")
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d (default 1h, at most 30d)")
    token.set_defaults(func=cmd_auth_token)
