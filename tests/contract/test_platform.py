"""What every service promises: health after warm-up, reflection, metrics, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.cli.stack import ORDER, LocalStack

SERVICE_NAMES = {
    "detector": "faceflow.v1.DetectorService",
    "embedder": "faceflow.v1.EmbedderService",
    "tracker": "faceflow.v1.TrackerService",
    "storage": "faceflow.v1.StorageService",
    "orchestrator": "faceflow.v1.OrchestratorService",
}


def test_every_service_is_serving_and_reflects_its_api(stack: LocalStack, stubs: dict) -> None:
    for name in ORDER:
        channel = stubs["channels"][name]
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAMES[name]):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING, (name, service)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        listed = {s.name for r in responses for s in r.list_services_response.service}
        assert SERVICE_NAMES[name] in listed and "grpc.health.v1.Health" in listed


def test_metrics_endpoint_counts_rpcs(stack: LocalStack, stubs: dict) -> None:
    health_pb2_grpc.HealthStub(stubs["channels"]["storage"]).Check(health_pb2.HealthCheckRequest())
    from faceflow.v1 import storage_pb2

    stubs["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest())
    port = stack.processes["storage"].metrics_port
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'faceflow_rpc_requests_total{code="OK",method="/faceflow.v1.StorageService/ListEpisodes"}' in body


def test_a_service_without_credentials_configured_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEFLOW_AUTH_", "FACEFLOW_SERVICE_TOKEN"))}
    result = subprocess.run(
        [sys.executable, "-m", "services.tracker", "--port", "0", "--port-file", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "authentication is not configured" in result.stderr + result.stdout
    assert not (tmp_path / "p").exists()


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    from services.common.local_issuer import LocalIssuer

    port_file = tmp_path / "tracker.port"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.tracker", "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **LocalIssuer.at(tmp_path).ensure().service_env()},
    )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    port = port_file.read_text().split()[0]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b'"msg": "stopped"' in output
