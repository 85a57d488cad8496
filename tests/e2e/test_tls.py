"""Mutual TLS between the services (the chart's tls.enabled), with certificates made by openssl here."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.stack import LocalStack

pytestmark = pytest.mark.e2e


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA and one service certificate (server and client auth) for 127.0.0.1 / localhost."""
    d = tmp_path_factory.mktemp("certs")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=faceflow-test-ca",
        cwd=d,
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "svc.key", "-out", "svc.csr", "-subj", "/CN=localhost", cwd=d
    )
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "svc.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "svc.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
        cwd=d,
    )
    return {
        "FACEFLOW_TLS_CERT_FILE": str(d / "svc.crt"),
        "FACEFLOW_TLS_KEY_FILE": str(d / "svc.key"),
        "FACEFLOW_TLS_CA_FILE": str(d / "ca.crt"),
        "FACEFLOW_TLS_CLIENT_AUTH": "require",
    }


@pytest.fixture(scope="module")
def tls_stack(certs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("tls-data"), extra_env=certs) as stack:
        yield stack


def test_a_run_goes_through_mutual_tls(tls_stack: LocalStack, certs: dict[str, str], media: Path) -> None:
    with tls_stack.channel("orchestrator") as channel:
        orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        orchestrator.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(ep_id="tls-1", source_path=str(media / "single_face.mp4"))
        )
        request = orchestrator_pb2.SubmitJobRequest(ep_id="tls-1", options=orchestrator_pb2.RunOptions(stride=4))
        final = list(orchestrator.RunEpisode(request))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    assert final.summary.tracks == 1


def test_plaintext_and_certificate_less_clients_are_refused(tls_stack: LocalStack, certs: dict[str, str]) -> None:
    address = tls_stack.address("storage")
    ca = Path(certs["FACEFLOW_TLS_CA_FILE"]).read_bytes()
    attempts = {
        "plaintext": grpc.insecure_channel(address),
        "no client certificate": grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)),
    }
    for what, channel in attempts.items():
        with channel, pytest.raises(grpc.RpcError) as refused:
            storage_pb2_grpc.StorageServiceStub(channel).ListEpisodes(storage_pb2.ListEpisodesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what


def test_probes_use_a_plaintext_health_only_port(certs: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    port_file = tmp_path / "tracker.port"
    from services.common.local_issuer import LocalIssuer

    auth = LocalIssuer.at(tmp_path).ensure().service_env()
    env = {**os.environ, **certs, **auth, "FACEFLOW_TLS_HEALTH_PORT": str(health_port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.tracker", "--port", "0", "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)
