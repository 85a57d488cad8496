"""The Helm chart's Deployments run from the faceflow images (`make images`) with `podman kube play`
(tests/container/chart_stack.py), and the sample episode goes through them: natively over gRPC from
this machine, and through the containerized Envoy over gRPC-Web. Identities and screen time must equal
those of the local stack on the same episode. Also: each container runs exactly what the chart
renders, as a non-root user on a read-only root filesystem; the probes the chart declares pass; every
container ends by itself on SIGTERM within its terminationGracePeriodSeconds.

Run by `make container-e2e` (and by `make test`); needs podman (tools/system-packages.sh installs it).
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.stack import LocalStack
from services.common.auth import ClientCredentials
from services.common.local_issuer import AUDIENCE, ISSUER, LocalIssuer
from services.common.tls import open_channel
from tests.container import chart_stack as cs
from tests.envoy.grpc_web import start_call

pytestmark = pytest.mark.e2e

# The chart's probes allow this much warm-up (startupProbe period x threshold); a loaded CI box needs it.
READY_TIMEOUT_S = 300.0
ORCH = "/faceflow.v1.OrchestratorService"
ARTIFACTS = ("identities.json", "screentime.json")
# Environment podman itself adds to every container.
PODMAN_ENV = {"container", "HOSTNAME", "TERM"}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    """A throwaway token issuer: its public key goes into the chart as auth.jwks."""
    return LocalIssuer.at(tmp_path_factory.mktemp("e2e-issuer")).ensure()


@pytest.fixture(scope="module")
def stack(issuer: LocalIssuer) -> Iterator[cs.ChartStack]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `make container-e2e` installs it (tools/system-packages.sh containers)")
    for image in ("localhost/faceflow:dev", "localhost/faceflow-envoy:dev"):
        if cs.podman("image", "exists", image, check=False).returncode != 0:
            pytest.fail(f"image {image} is missing: run `make images`")
    if not cs.HELM.is_file():
        pytest.fail(f"{cs.HELM} is missing: run `make chart-check`")
    with cs.chart_stack(ISSUER, AUDIENCE, issuer.jwks_path) as running:
        wait_ready(running)
        yield running


# --- probes, as the kubelet would run them ------------------------------------------------------------


def probe(pod: cs.Pod, spec: dict[str, Any]) -> bool:
    def port(value: int | str) -> int:
        return pod.port(value) if isinstance(value, str) else int(value)

    try:
        if "grpc" in spec:
            with grpc.insecure_channel(f"{pod.ip}:{port(spec['grpc']['port'])}") as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=spec["grpc"].get("service", "")), timeout=5
                )
            return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
        if "httpGet" in spec:
            url = f"http://{pod.ip}:{port(spec['httpGet']['port'])}{spec['httpGet']['path']}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(200 <= response.status < 400)
        if "tcpSocket" in spec:
            with socket.create_connection((pod.ip, port(spec["tcpSocket"]["port"])), timeout=5):
                return True
    except (grpc.RpcError, OSError):
        return False
    raise AssertionError(f"unknown probe {spec}")


def wait_ready(stack: cs.ChartStack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = dict(stack.pods)
    while waiting and time.monotonic() < deadline:
        for name, pod in list(waiting.items()):
            if probe(pod, pod.container["readinessProbe"]):
                del waiting[name]
        time.sleep(1)
    if waiting:
        logs = "\n".join(f"--- {name}\n{stack.logs(name)}" for name in waiting)
        pytest.fail(f"not ready after {READY_TIMEOUT_S:.0f} s: {sorted(waiting)}\n{logs}")


# --- running the sample episode -------------------------------------------------------------------------


@dataclass
class Result:
    summary: orchestrator_pb2.RunSummary
    artifacts: dict[str, Any]

    def identities(self) -> list[tuple[str, float, int]]:
        """(facebank name, seconds, tracks) per identity; identity ids are per run, names are not."""
        return sorted((r.label, round(r.seconds, 3), r.track_count) for r in self.summary.screen_time)


def run_sample(channel: grpc.Channel, storage_channel: grpc.Channel, sample: Path, ep_id: str) -> Result:
    """Enrol the sample's three people, upload the episode, run it, read its outputs."""
    orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
    storage = storage_pb2_grpc.StorageServiceStub(storage_channel)
    for folder in sorted((sample / "enrol").iterdir()):
        images = [
            orchestrator_pb2.EnrollPersonRequest.SeedImage(name=p.name, data=p.read_bytes())
            for p in sorted(folder.iterdir())
        ]
        orchestrator.EnrollPerson(orchestrator_pb2.EnrollPersonRequest(name=folder.name, images=images), timeout=300)

    def chunks() -> Iterator[orchestrator_pb2.UploadEpisodeRequest]:
        header = orchestrator_pb2.UploadEpisodeRequest.Header(ep_id=ep_id, filename="episode.mp4")
        yield orchestrator_pb2.UploadEpisodeRequest(header=header)
        data = (sample / "episode.mp4").read_bytes()
        for start in range(0, len(data), 1 << 20):
            yield orchestrator_pb2.UploadEpisodeRequest(chunk=data[start : start + (1 << 20)])

    orchestrator.UploadEpisode(chunks(), timeout=300)
    request = orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, idempotency_key=uuid.uuid4().hex)
    final = list(orchestrator.RunEpisode(request, timeout=1800))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    return Result(final.summary, fetch(storage, ep_id))


def fetch(storage: storage_pb2_grpc.StorageServiceStub, ep_id: str) -> dict[str, Any]:
    out = {}
    for name in ARTIFACTS:
        ref = storage_pb2.ArtifactRef(ep_id=ep_id, name=name)
        out[name] = json.loads(b"".join(c.chunk for c in storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref))))
    return out


# Orchestrator settings of the rendered chart that change results, given to the local stack too: the
# chart splits an episode into at least FACEFLOW_SEGMENT_PARALLELISM segments (one per detector pod it
# may reach), the local stack by default into one per detector process, and segments are tracked
# apart and stitched, which moves a few tenths of a second of screen time between identities.
SAME_AS_CHART = ("FACEFLOW_SEGMENT_PARALLELISM",)


@pytest.fixture(scope="module")
def local_result(stack: cs.ChartStack, sample_episode: Path, tmp_path_factory: pytest.TempPathFactory) -> Result:
    """The same episode on the local stack (five processes on loopback), as `make demo` runs it, with the
    chart's segmentation."""
    rendered = {e["name"]: e.get("value", "") for e in stack.pods["orchestrator"].container["env"]}
    with (
        LocalStack(tmp_path_factory.mktemp("e2e-local"), extra_env={k: rendered[k] for k in SAME_AS_CHART}) as local,
        local.channel("orchestrator") as o,
        local.channel("storage") as s,
    ):
        return run_sample(o, s, sample_episode, "sample")


@pytest.fixture(scope="module")
def token(issuer: LocalIssuer) -> str:
    return issuer.mint("admin", "container-e2e", 3600)


@pytest.fixture(scope="module")
def container_result(stack: cs.ChartStack, sample_episode: Path, token: str) -> Result:
    credentials = ClientCredentials(bearer=token)
    with (
        open_channel(stack.pods["orchestrator"].address("grpc"), None, (), credentials) as o,
        open_channel(stack.pods["storage"].address("grpc"), None, (), credentials) as s,
    ):
        return run_sample(o, s, sample_episode, "sample")


# --- tests --------------------------------------------------------------------------------------------------


def test_containers_run_exactly_what_the_chart_renders(stack: cs.ChartStack) -> None:
    """Image, command, args, environment, user, mounts and hardening of each running container are the
    rendered Deployment's."""
    assert set(stack.pods) == {"orchestrator", "detector", "embedder", "tracker", "storage", "envoy", "web"}
    for name, pod in stack.pods.items():
        c = pod.container
        info = stack.inspect(name)
        config, host = info["Config"], info["HostConfig"]
        assert info["ImageName"] == c["image"], name
        entrypoint = config["Entrypoint"]
        entrypoint = entrypoint.split(" ") if isinstance(entrypoint, str) else list(entrypoint or [])
        assert entrypoint == c["command"] and list(config["Cmd"] or []) == c.get("args", []), (name, config)
        image_env = json.loads(cs.podman("image", "inspect", c["image"], "--format", "{{json .Config.Env}}").stdout)
        running = dict(e.split("=", 1) for e in config["Env"])
        from_image = {e.split("=", 1)[0] for e in image_env}
        rendered = {e["name"]: e for e in c.get("env", [])}
        extra = set(running) - set(rendered) - from_image - PODMAN_ENV
        assert not extra, (name, extra)
        for var, entry in rendered.items():
            if "value" in entry:
                assert running.get(var) == entry["value"], (name, var)
            else:  # secretKeyRef: the S3 keys the test created
                assert running.get(var) in stack.s3_keys, (name, var)
        user = pod.spec["securityContext"]["runAsUser"]
        assert config["User"].split(":")[0] == str(user) == str(c["securityContext"]["runAsUser"]), name
        assert host["ReadonlyRootfs"] is c["securityContext"]["readOnlyRootFilesystem"] is True, name
        mounts = {m["Destination"] for m in info["Mounts"]}
        assert {m["mountPath"] for m in c["volumeMounts"]} <= mounts, (name, mounts)


def test_containers_are_non_root_with_a_read_only_root(stack: cs.ChartStack) -> None:
    for name in stack.pods:
        assert stack.exec(name, "id", "-u").stdout.strip() == "10001", name
        assert stack.exec(name, "touch", "/opt/probe").returncode != 0, f"{name}: root filesystem is writable"
        assert stack.exec(name, "touch", "/tmp/probe").returncode == 0, f"{name}: /tmp is not writable"
    for name in ("orchestrator", "detector", "embedder", "tracker", "storage"):
        assert stack.exec(name, "touch", "/var/lib/faceflow/probe").returncode == 0, name
    # No compiler or package installer in the faceflow image.
    tools = stack.exec("orchestrator", "sh", "-c", "command -v gcc cc g++ make pip pip3 || true").stdout
    assert not tools.strip(), tools


def test_declared_probes_pass(stack: cs.ChartStack) -> None:
    for name, pod in stack.pods.items():
        declared = [k for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in pod.container]
        assert "readinessProbe" in declared and "livenessProbe" in declared, name
        for kind in declared:
            assert probe(pod, pod.container[kind]), (name, kind, pod.container[kind])


def test_sample_episode_matches_the_local_stack(local_result: Result, container_result: Result) -> None:
    assert container_result.identities() == local_result.identities()
    assert [r.label for r in container_result.summary.screen_time if r.label], "nobody was recognised"
    for field in ("frames_processed", "faces", "tracks", "identities"):
        assert getattr(container_result.summary, field) == getattr(local_result.summary, field), field
    assert container_result.summary.duration_s == pytest.approx(local_result.summary.duration_s)

    def people(result: Result) -> list[tuple[str, float]]:
        rows = result.artifacts["screentime.json"]["people"]
        return sorted((r.get("name", ""), round(r["seconds"], 3)) for r in rows)

    assert people(container_result) == people(local_result)


def test_sample_episode_through_envoy_grpc_web(stack: cs.ChartStack, container_result: Result, token: str) -> None:
    """A rerun of the stored episode over gRPC-Web through the containerized Envoy: same outcome."""
    envoy = stack.pods["envoy"].address("grpc-web")
    request = orchestrator_pb2.SubmitJobRequest(ep_id="sample", idempotency_key=uuid.uuid4().hex)
    call = start_call(envoy, f"{ORCH}/RunEpisode", request.SerializeToString(), token=token, timeout=1800)
    assert call.response.status == 200
    progress = [orchestrator_pb2.Progress.FromString(m) for m in call.messages()]
    assert call.trailers.get("grpc-status") == "0", call.grpc_message
    final = progress[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    assert len(progress) >= 3
    rerun = Result(final.summary, {})
    assert rerun.identities() == container_result.identities()
    # Without a token Envoy answers itself.
    refused = start_call(envoy, f"{ORCH}/ListJobs", orchestrator_pb2.ListJobsRequest().SerializeToString())
    list(refused.messages())
    assert refused.grpc_status == 16


def test_envoy_serves_the_review_ui(stack: cs.ChartStack) -> None:
    """`/` through Envoy is the web/dist bundle from the web Deployment, with no token; its config.json
    points the UI at its own origin."""
    envoy = stack.pods["envoy"].address("grpc-web")
    connection = http.client.HTTPConnection(envoy, timeout=10)
    connection.request("GET", "/")
    page = connection.getresponse()
    body = page.read().decode()
    assert page.status == 200 and "<html" in body.lower() and "app.js" in body, body[:300]
    connection.request("GET", "/config.json")
    config = connection.getresponse()
    assert config.status == 200 and json.loads(config.read()) == {"grpcWebUrl": "/"}
    # A POST that is not a gRPC-Web call still needs a token.
    connection.request("POST", "/index.html", body=b"")
    refused = connection.getresponse()
    refused.read()
    assert refused.status == 401
    connection.close()


def test_graceful_sigterm_within_the_grace_period(stack: cs.ChartStack) -> None:
    """Last: stops every container. SIGTERM must end each one by itself (exit 0) well before the
    Deployment's terminationGracePeriodSeconds (Kubernetes' default 30 s where none is set)."""
    timings = {}
    for name, pod in stack.pods.items():
        grace = int(pod.spec.get("terminationGracePeriodSeconds", 30))
        elapsed, code = stack.stop(name, grace)
        timings[name] = round(elapsed, 1)
        assert elapsed < grace and code == 0, (name, elapsed, grace, code, stack.logs(name, 20))
    print("SIGTERM -> exit (s):", timings)


def test_image_is_small_and_labelled() -> None:
    info = json.loads(cs.podman("image", "inspect", "localhost/faceflow:dev").stdout)[0]
    labels = info["Labels"]
    for key in ("source", "version", "licenses", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert info["Size"] <= 800 * 1000**2, f"{info['Size'] / 1000**2:.0f} MB"
    assert info["Config"]["User"] == "10001:10001"
    history = subprocess.run(
        ["podman", "image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", "localhost/faceflow:dev"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "apt-get install" not in history
