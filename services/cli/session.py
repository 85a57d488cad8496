"""How a command reaches the services: a running stack (FACEFLOW_ORCHESTRATOR_ADDR / FACEFLOW_STORAGE_ADDR),
or an ephemeral local stack started for the one command; and the exit codes every command shares."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faceflow.client import Client, TlsOptions
from faceflow.v1 import orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

from services.cli import render
from services.cli.seaweed import SeaweedServer
from services.cli.settings import cli_settings
from services.cli.stack import ORDER, LocalStack, local_credentials, local_user
from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.grpc_errors import translate_rpc_errors
from services.common.local_issuer import LocalIssuer
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel

EXIT_USER_ERROR = 2  # bad input: the user can fix it
EXIT_FAILURE = 1
# A user's JWT for a running stack. Read here and nowhere else, straight from the environment rather
# than through Settings: Settings is the services' wiring (every process of a local stack inherits this
# environment and reads it), and a user's credential must not become part of it.
TOKEN_ENV = "FACEFLOW_TOKEN"


# How long the JWT the CLI mints for this machine's user lasts: one command against a running stack.
LOCAL_TOKEN_TTL_S = 3600


@dataclass
class Session:
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    data_root: Path | None
    # Calling with the stack's service token: the trusted local CLI, which may name files on this disk.
    trusted_local: bool = False
    # A running stack: the Python client (faceflow.client), which uploads videos as any remote caller does.
    client: Client | None = None


def data_root(args: argparse.Namespace) -> Path:
    """--data-root, else FACEFLOW_DATA_ROOT, else ./data."""
    return Path(args.data_root or cli_settings().data_root).resolve()


def running_stack_addresses(args: argparse.Namespace) -> tuple[str, str]:
    """The orchestrator (--orchestrator, else FACEFLOW_ORCHESTRATOR_ADDR) and storage (FACEFLOW_STORAGE_ADDR)
    of a running stack; empty when not set."""
    settings = cli_settings()
    return getattr(args, "orchestrator", None) or settings.orchestrator_addr, settings.storage_addr


def running_stack_credentials(args: argparse.Namespace) -> ClientCredentials | None:
    """FACEFLOW_TOKEN (a user's JWT) if set; else, on the machine that runs `faceflow up` with this data
    root, its service token (the trusted local user); else none, and the services will say so."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return ClientCredentials(bearer=token)
    issuer = LocalIssuer.at(data_root(args))
    return local_credentials(issuer) if issuer.service_token() else None


def running_stack_client(args: argparse.Namespace, orchestrator_addr: str, storage_addr: str) -> Client:
    """faceflow.client for a running stack, as the user: FACEFLOW_TOKEN, else (on the machine that runs
    `faceflow up` with this data root) a short-lived admin JWT for this machine's user from its issuer."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        issuer = LocalIssuer.at(data_root(args))
        if issuer.service_token():
            token = issuer.mint("admin", f"{local_user()}@local", LOCAL_TOKEN_TTL_S)
    settings = Settings.from_env()
    tls: bool | TlsOptions = False
    if settings.tls_ca_file or settings.tls_cert_file:  # the stack speaks TLS (services/common/tls.py)
        tls = TlsOptions(settings.tls_ca_file, settings.tls_cert_file or None, settings.tls_key_file or None)
    return Client(orchestrator_addr, token=token or None, tls=tls, storage_address=storage_addr)


@contextmanager
def session(args: argparse.Namespace, services: tuple[str, ...] = ORDER) -> Iterator[Session]:
    """Use the services at FACEFLOW_ORCHESTRATOR_ADDR / FACEFLOW_STORAGE_ADDR, or start a local stack."""
    orchestrator_addr, storage_addr = running_stack_addresses(args)
    if orchestrator_addr and storage_addr:
        tls = TlsConfig.from_settings(Settings.from_env())
        credentials = running_stack_credentials(args)
        with (
            open_channel(orchestrator_addr, tls, CHANNEL_OPTIONS, credentials) as o,
            open_channel(storage_addr, tls, CHANNEL_OPTIONS, credentials) as s,
            running_stack_client(args, orchestrator_addr, storage_addr) as client,
        ):
            yield Session(
                orchestrator_pb2_grpc.OrchestratorServiceStub(o),
                storage_pb2_grpc.StorageServiceStub(s),
                None,
                trusted_local=bool(credentials and credentials.service_token),
                client=client,
            )
        return
    root = data_root(args)
    with contextlib.ExitStack() as resources:
        extra_env: dict[str, str] = {}
        if getattr(args, "storage", "local") == "s3":
            s3 = resources.enter_context(SeaweedServer(root / "seaweed"))
            render.status(f"S3 mode: SeaweedFS at {s3.endpoint_url}, bucket {s3.bucket} (data in {root}/seaweed)")
            extra_env = s3.env()
        render.status(f"starting a local stack ({', '.join(services)}) on 127.0.0.1, data root {root}")
        stack = resources.enter_context(LocalStack(root, services, extra_env=extra_env))
        orch = stack.address("orchestrator") if "orchestrator" in services else stack.address("storage")
        o = resources.enter_context(open_channel(orch, stack.tls(), CHANNEL_OPTIONS, stack.credentials()))
        s = resources.enter_context(stack.channel("storage"))
        yield Session(
            orchestrator_pb2_grpc.OrchestratorServiceStub(o),
            storage_pb2_grpc.StorageServiceStub(s),
            root,
            trusted_local=True,
        )


def fetch_outputs(s: Session, ep_id: str, dest: Path, names: Sequence[str]) -> Path:
    """Download an episode's current outputs (any backend) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    with translate_rpc_errors("storage"):
        for name in names:
            ref = storage_pb2.ArtifactRef(ep_id=ep_id, name=name)
            chunks = s.storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref))
            (dest / name).write_bytes(b"".join(c.chunk for c in chunks))
    return dest
