"""The token over TLS travels as call credentials (the metadata plugin), with mutual TLS when asked."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from faceflow.client import Client, InvalidArgument, TlsOptions, Unavailable
from faceflow.client.aio import AsyncClient

from tests.client.fakes import JS, Servers, WatchScript, progress, serve


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA and one certificate for 127.0.0.1 (server and client auth), as tests/e2e/test_tls.py makes."""
    d = tmp_path_factory.mktemp("client-certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=faceflow-client-test-ca", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "svc.key", "-out", "svc.csr", "-subj", "/CN=localhost",
             cwd=d)  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "svc.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "svc.crt", "-days", "2", "-extfile", "ext", cwd=d)  # fmt: skip
    return d


@pytest.fixture()
def servers(certs: Path) -> Iterator[Servers]:
    key, cert, ca = ((certs / name).read_bytes() for name in ("svc.key", "svc.crt", "ca.crt"))
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    with serve(credentials) as running:
        yield running


def mutual(certs: Path) -> TlsOptions:
    return TlsOptions(ca_file=certs / "ca.crt", cert_file=certs / "svc.crt", key_file=certs / "svc.key")


def test_the_token_travels_as_call_credentials_over_mutual_tls(servers: Servers, certs: Path) -> None:
    servers.orchestrator.watch_scripts = [WatchScript([progress(JS.JOB_STATE_SUCCEEDED)])]
    with Client(servers.address, token=lambda: "tls-token", tls=mutual(certs)) as client:
        assert client.job("job-1").job_id == "job-1"
        assert [p.state.value for p in client.watch("job-1")] == ["succeeded"]
    for method in ("GetJob", "WatchJob"):
        assert servers.orchestrator.metadata[method][0]["authorization"] == "Bearer tls-token"

    async def main() -> None:
        async with AsyncClient(servers.address, token="aio-token", tls=mutual(certs)) as client:
            await client.job("job-1")

    asyncio.run(main())
    assert servers.orchestrator.metadata["GetJob"][1]["authorization"] == "Bearer aio-token"


def test_without_the_client_certificate_the_server_refuses(servers: Servers, certs: Path) -> None:
    anonymous = TlsOptions(ca_file=certs / "ca.crt")
    with Client(servers.address, token="t", tls=anonymous, timeout_s=5) as client, pytest.raises(Unavailable):
        client.job("job-1")
    assert servers.orchestrator.calls == []


def test_half_a_client_identity_or_a_missing_file_is_refused(certs: Path) -> None:
    with pytest.raises(InvalidArgument, match="both cert_file and key_file"):
        Client("127.0.0.1:1", tls=TlsOptions(cert_file=certs / "svc.crt"))
    with pytest.raises(InvalidArgument, match="ca_file"):
        Client("127.0.0.1:1", tls=TlsOptions(ca_file=certs / "missing.crt"))
