"""One real SeaweedFS S3 server per test session, and storage backends (local and S3) per test.

Each S3 backend gets its own key prefix in the shared bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from services.cli.seaweed import SeaweedServer
from services.storage.file_server import FileServer, UrlSigner
from services.storage.local import LocalStorage
from services.storage.s3 import S3Settings, S3Storage

BUCKET = "faceflow-tests"
MIB = 1024 * 1024

BackendFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with SeaweedServer(tmp_path_factory.mktemp("seaweed"), bucket=BUCKET) as server:
        yield server


@pytest.fixture(scope="session")
def s3_session(seaweed: SeaweedServer) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key)


@pytest.fixture(scope="session")
def s3_client(seaweed: SeaweedServer, s3_session: boto3.session.Session) -> Any:
    """A raw client to look at the bucket behind the backend's back (object counts, ETags)."""
    from botocore.config import Config

    return s3_session.client(
        "s3", endpoint_url=seaweed.endpoint_url, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    )


def count_objects(client: Any, prefix: str) -> int:
    paginator = client.get_paginator("list_objects_v2")
    return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix))


@pytest.fixture
def s3_factory(seaweed: SeaweedServer, s3_session: boto3.session.Session, tmp_path: Path) -> Callable[..., S3Storage]:
    """S3Storage on the session server under a fresh prefix; keyword overrides go to S3Settings."""

    def make(serve_urls: bool = True, **overrides: Any) -> S3Storage:
        values: dict[str, Any] = {
            "bucket": BUCKET,
            "prefix": f"t-{uuid.uuid4().hex[:10]}",
            "endpoint_url": seaweed.endpoint_url,
            "local_cache_dir": tmp_path / "s3-cache",
            "max_attempts": 3,
        }
        values.update(overrides)
        storage = S3Storage(S3Settings(**values), s3_session)
        storage.ensure_bucket()
        return storage

    return make


@pytest.fixture
def local_factory(tmp_path: Path) -> Iterator[Callable[..., LocalStorage]]:
    """LocalStorage on a temporary data root; with serve_urls, its signed-URL file server on loopback
    (only then: stopping it costs half a second)."""
    servers: list[FileServer] = []

    def make(serve_urls: bool = False, **_s3_only: Any) -> LocalStorage:
        signer = UrlSigner()
        storage = LocalStorage(tmp_path / f"data-{uuid.uuid4().hex[:8]}", signer)
        if serve_urls:
            server = FileServer(signer, storage.open_url_path).start()
            storage.base_url = server.base_url
            servers.append(server)
        return storage

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def backend_factory(request: pytest.FixtureRequest) -> BackendFactory:
    """Conformance tests run against both backends; S3-only keyword overrides are ignored locally."""
    return request.getfixturevalue(f"{request.param}_factory")  # type: ignore[no-any-return]


@pytest.fixture
def backend(backend_factory: BackendFactory) -> Any:
    return backend_factory()
