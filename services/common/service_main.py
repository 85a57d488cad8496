"""The entry point shared by `python -m services.<name>`: flags, logging, serve, warm up, wait for SIGTERM."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.access import required_role
from services.common.auth import AccessCheck, AuthConfig, Authenticator
from services.common.config import Settings
from services.common.logging import configure_logging
from services.common.server import run_until_signalled, start_service
from services.common.tls import TlsConfig

log = logging.getLogger(__name__)


@dataclass
class ServiceParts:
    """What a service contributes: its servicers, their full names, and a warm-up run before SERVING."""

    register: Callable[[grpc.Server], None]
    service_names: list[str]
    warm_up: Callable[[], None]
    # On SIGTERM, before the server stops taking calls.
    shut_down: Callable[[], None] = lambda: None


def parse_flags(name: str, argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"faceflow {name} service")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: any free port, -1: off)")
    parser.add_argument("--port-file", type=Path, default=None, help="write 'grpc_port metrics_port' here once bound")
    parser.add_argument("--data-root", default=None, help="storage root (FACEFLOW_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None, help="model cache (FACEFLOW_CACHE_DIR)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="inference device (FACEFLOW_DEVICE)")
    for dep in ("detector", "embedder", "tracker", "storage"):
        parser.add_argument(f"--{dep}-addr", default=None, help=f"address of the {dep} service")
    args = parser.parse_args(argv)
    settings = Settings.from_env(
        host=args.host,
        data_root=args.data_root,
        cache_dir=args.cache_dir,
        device=args.device,
        detector_addr=args.detector_addr,
        embedder_addr=args.embedder_addr,
        tracker_addr=args.tracker_addr,
        storage_addr=args.storage_addr,
    )
    return args, settings


def service_main(name: str, build: Callable[[Settings], ServiceParts], argv: Sequence[str] | None = None) -> None:
    args, settings = parse_flags(name, argv)
    configure_logging(name, settings.log_level)
    access = AccessCheck(Authenticator(AuthConfig.from_settings(settings)), required_role)
    parts = build(settings)
    running = start_service(
        name,
        parts.register,
        parts.service_names,
        access=access,
        host=settings.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        tls=TlsConfig.from_settings(settings),
        health_port=settings.tls_health_port,
    )
    if args.port_file is not None:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(f"{running.port} {running.metrics_port}\n")
        tmp.replace(args.port_file)
    run_until_signalled(running, parts.warm_up, before_stop=parts.shut_down)
