"""Shared fixtures: real media and models from the cache `make test` fills, and a real local stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faceflow.v1 import (
    detector_pb2_grpc,
    embedder_pb2_grpc,
    orchestrator_pb2_grpc,
    storage_pb2_grpc,
    tracker_pb2_grpc,
)

from services.cli.stack import LocalStack
from services.common.config import Settings

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def media(settings: Settings) -> Path:
    path = settings.cache_dir / "media"
    if not (path / "manifest.json").is_file():
        pytest.fail(f"test media missing in {path}: run `make media` (make test does it)")
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """All five services as real processes on loopback, sharing one temporary data root."""
    with LocalStack(tmp_path_factory.mktemp("stack-data")) as running:
        yield running


@pytest.fixture(scope="session")
def stubs(stack: LocalStack) -> Iterator[dict[str, object]]:
    # Calls as the trusted local user (the stack's service token): the contract tests exercise the
    # services' behaviour; what each role may do is tested in tests/contract/test_auth.py.
    channels = {name: stack.channel(name) for name in stack.processes}
    yield {
        "channels": channels,
        "detector": detector_pb2_grpc.DetectorServiceStub(channels["detector"]),
        "embedder": embedder_pb2_grpc.EmbedderServiceStub(channels["embedder"]),
        "tracker": tracker_pb2_grpc.TrackerServiceStub(channels["tracker"]),
        "storage": storage_pb2_grpc.StorageServiceStub(channels["storage"]),
        "orchestrator": orchestrator_pb2_grpc.OrchestratorServiceStub(channels["orchestrator"]),
    }
    for channel in channels.values():
        channel.close()


@pytest.fixture(scope="session")
def sample_episode(media: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's sample episode (seed 0) with its ground truth and enrolment images."""
    from services.evaluation.sample_episode import build_episode

    out = tmp_path_factory.mktemp("sample")
    build_episode(media, out, seed=0, model_path=settings.model_dir / "retinaface_mnet025.onnx")
    return out


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the session (Debian's postgresql, run as its own user)."""
    from tests.postgres_server import PostgresServer

    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture()
def postgres_dsn(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session's server, for one test."""
    import re

    return postgres_server.create_database("t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50])
