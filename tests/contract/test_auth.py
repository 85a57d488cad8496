"""Every call carries an identity and roles gate it, in the services themselves (a caller that bypasses
Envoy meets the same checks): each attack from the security review, reproduced against the real stack."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from faceflow.v1 import (
    detector_pb2,
    detector_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from faceflow.v1 import orchestrator_pb2 as orch

from services.cli.stack import LocalStack
from services.common.auth import ClientCredentials
from services.common.local_issuer import AUDIENCE, ISSUER, LocalIssuer
from tests.contract.helpers import expect_status
from tests.listener import CountingListener

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


class Caller:
    """Stubs of the stack's services, calling with given credentials (or none)."""

    def __init__(self, stack: LocalStack, credentials: ClientCredentials | None) -> None:
        from services.common.server import CHANNEL_OPTIONS
        from services.common.tls import open_channel

        self._channels = {
            name: open_channel(stack.address(name), None, CHANNEL_OPTIONS, credentials)
            for name in ("orchestrator", "storage", "detector")
        }
        self.orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channels["orchestrator"])
        self.storage = storage_pb2_grpc.StorageServiceStub(self._channels["storage"])
        self.detector = detector_pb2_grpc.DetectorServiceStub(self._channels["detector"])

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


@pytest.fixture(scope="module")
def issuer(stack: LocalStack) -> LocalIssuer:
    return LocalIssuer.at(stack.data_root)


@pytest.fixture(scope="module")
def as_role(stack: LocalStack, issuer: LocalIssuer) -> Iterator[Callable[[str], Caller]]:
    callers: dict[str, Caller] = {}

    def get(role: str) -> Caller:
        if role not in callers:
            callers[role] = Caller(stack, ClientCredentials(bearer=issuer.mint(role, f"{role}-tester", 600)))
        return callers[role]

    yield get
    for caller in callers.values():
        caller.close()


@pytest.fixture()
def bearer(stack: LocalStack) -> Iterator[Callable[[str], Caller]]:
    opened: list[Caller] = []

    def make(token: str) -> Caller:
        opened.append(Caller(stack, ClientCredentials(bearer=token)))
        return opened[-1]

    yield make
    for caller in opened:
        caller.close()


@pytest.fixture(scope="module")
def episode(stack: LocalStack, media: Path) -> str:
    """An episode created by the trusted local CLI (the stack's service token)."""
    with stack.channel("orchestrator") as channel:
        orchestrator_pb2_grpc.OrchestratorServiceStub(channel).CreateEpisode(
            storage_pb2.CreateEpisodeRequest(ep_id="auth-ep", source_path=str(media / "single_face.mp4"))
        )
    return "auth-ep"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "roles": ["admin"], "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(issuer: LocalIssuer, **overrides: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(issuer.key_path.read_bytes(), password=None)
    return jwt.encode(_claims(**overrides), key, algorithm="ES256", headers={"kid": issuer.key_id})


def _hmac_signed_with_public_key(issuer: LocalIssuer) -> str:
    import base64
    import hashlib
    import hmac
    import json

    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    private = serialization.load_pem_private_key(issuer.key_path.read_bytes(), password=None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.key_id}).encode())
    body = b64(json.dumps(_claims()).encode())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def test_no_credentials_is_unauthenticated_everywhere(stack: LocalStack) -> None:
    caller = Caller(stack, None)
    try:
        expect_status(UNAUTHENTICATED, lambda: caller.storage.ListEpisodes(storage_pb2.ListEpisodesRequest()))
        expect_status(
            UNAUTHENTICATED,
            lambda: caller.storage.DeleteAllEpisodes(
                storage_pb2.DeleteAllEpisodesRequest(confirm="delete all episodes")
            ),
            "needs credentials",
        )
        expect_status(UNAUTHENTICATED, lambda: caller.orchestrator.ListJobs(orch.ListJobsRequest()))
        expect_status(
            UNAUTHENTICATED, lambda: caller.detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri="/etc/passwd"))
        )
    finally:
        caller.close()


def test_forged_expired_and_foreign_tokens_are_refused(
    stack: LocalStack, issuer: LocalIssuer, bearer: Callable[[str], Caller]
) -> None:
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    tokens = {
        "expired": _signed(issuer, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "foreign key": jwt.encode(_claims(), foreign_key, algorithm="ES256", headers={"kid": issuer.key_id}),
        "other audience": _signed(issuer, aud="another-app"),
        "other issuer": _signed(issuer, iss="https://evil.example"),
        "no expiry": _signed(issuer, exp=None),
        "alg none": jwt.encode(_claims(), None, algorithm="none"),
        # The public key used as an HMAC secret: accepted by a verifier that trusts the token's alg.
        "alg confusion": _hmac_signed_with_public_key(issuer),
        "garbage": "not.a.token",
    }
    for name, token in tokens.items():
        caller = bearer(token)
        details = expect_status(
            UNAUTHENTICATED, lambda c=caller: c.storage.ListEpisodes(storage_pb2.ListEpisodesRequest())
        )
        assert "mallory" not in details, name


def test_a_wrong_service_token_is_refused(stack: LocalStack) -> None:
    caller = Caller(stack, ClientCredentials(service_token="x" * 48, acting_for="mallory"))
    try:
        expect_status(
            UNAUTHENTICATED,
            lambda: caller.storage.DeleteAllEpisodes(
                storage_pb2.DeleteAllEpisodesRequest(confirm="delete all episodes")
            ),
            "service token is not valid",
        )
    finally:
        caller.close()


def test_viewer_reads_but_cannot_write_or_delete(as_role: Callable[[str], Caller], episode: str) -> None:
    viewer = as_role("viewer")
    assert episode in {e.ep_id for e in viewer.storage.ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes}
    viewer.orchestrator.GetRunChoices(orch.GetRunChoicesRequest())
    expect_status(
        DENIED,
        lambda: viewer.storage.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id=episode)),
        "viewer-tester is a viewer; DeleteEpisode needs the admin role",
    )
    expect_status(
        DENIED,
        lambda: viewer.storage.DeleteAllEpisodes(storage_pb2.DeleteAllEpisodesRequest(confirm="delete all episodes")),
        "admin",
    )
    expect_status(DENIED, lambda: viewer.orchestrator.SubmitJob(orch.SubmitJobRequest(ep_id=episode)), "reviewer")
    expect_status(
        DENIED,
        lambda: viewer.orchestrator.BeginUpload(
            orch.BeginUploadRequest(header=orch.UploadEpisodeRequest.Header(ep_id="x"), size_bytes=10)
        ),
        "reviewer",
    )


def test_reviewer_cannot_delete_and_users_never_make_internal_calls(
    as_role: Callable[[str], Caller], episode: str
) -> None:
    reviewer = as_role("reviewer")
    expect_status(
        DENIED,
        lambda: reviewer.storage.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id=episode)),
        "reviewer-tester is a reviewer; DeleteEpisode needs the admin role",
    )
    expect_status(
        DENIED,
        lambda: reviewer.storage.RemovePerson(storage_pb2.RemovePersonRequest(show_id="default", person_id="p")),
        "admin",
    )
    admin = as_role("admin")
    put = storage_pb2.PutArtifactRequest(ref=storage_pb2.ArtifactRef(ep_id=episode, run_id="r1", name="x.json"))
    expect_status(DENIED, lambda: admin.storage.PutArtifact(iter([put])), "PutArtifact needs the service role")
    expect_status(
        DENIED,
        lambda: admin.detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri="/etc/passwd")),
        "service role",
    )


def test_no_caller_makes_a_service_fetch_a_url_or_read_a_server_path(
    stack: LocalStack, as_role: Callable[[str], Caller]
) -> None:
    with CountingListener() as listener:
        reviewer = as_role("reviewer")
        for source in (listener.url, "/etc/passwd", "/root/.ssh/id_rsa"):
            details = expect_status(
                DENIED,
                lambda s=source: reviewer.orchestrator.CreateEpisode(
                    storage_pb2.CreateEpisodeRequest(ep_id="ssrf", source_path=s)
                ),
                "only as an upload",
            )
            assert source not in details
        # Even the trusted local CLI names files, not URLs.
        with stack.channel("orchestrator") as channel:
            expect_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                lambda: orchestrator_pb2_grpc.OrchestratorServiceStub(channel).CreateEpisode(
                    storage_pb2.CreateEpisodeRequest(ep_id="ssrf", source_path=listener.url)
                ),
                "absolute path",
            )
        # And the detector itself, asked by a service, opens no URL outside the store.
        with stack.channel("detector") as channel:
            detector = detector_pb2_grpc.DetectorServiceStub(channel)
            for uri in (listener.url, listener.url.replace("127.0.0.1", "localhost")):
                expect_status(
                    DENIED,
                    lambda u=uri: detector.ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri=u)),
                    "handed out by the storage service",
                )
        time.sleep(0.2)
        assert listener.hits == []


def test_remote_callers_cannot_tell_existing_server_files_from_missing_ones(
    as_role: Callable[[str], Caller], tmp_path: Path
) -> None:
    reviewer = as_role("reviewer")
    missing = tmp_path / "id_rsa"
    answers = {
        expect_status(
            DENIED,
            lambda s=source: reviewer.orchestrator.CreateEpisode(
                storage_pb2.CreateEpisodeRequest(ep_id="probe", source_path=str(s))
            ),
        )
        for source in ("/etc/passwd", missing, tmp_path)
    }
    assert len(answers) == 1, answers
    assert "/" not in answers.pop().replace("BeginUpload/UploadChunk/FinishUpload", "")


def test_every_rpc_of_every_service_has_a_decided_role() -> None:
    from faceflow.v1 import embedder_pb2, tracker_pb2

    from services.common.access import listed_methods

    table = listed_methods()
    for module in (orchestrator_pb2, storage_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            listed = table[service.full_name]
            missing = [m.name for m in service.methods if m.name not in listed]
            assert not missing, f"{service.full_name}: decide the role of {missing} in services/common/access.py"
            stale = [name for name in listed if name not in {m.name for m in service.methods}]
            assert not stale, f"{service.full_name}: {stale} are not RPCs any more"
    for module in (detector_pb2, embedder_pb2, tracker_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert table[service.full_name] == {}, "internal services take only service calls"


def test_people_never_see_where_the_video_lives(
    as_role: Callable[[str], Caller], stack: LocalStack, episode: str
) -> None:
    viewer = as_role("viewer")
    shown = viewer.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=episode))
    listed = [e for e in viewer.storage.ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes if e.ep_id == episode]
    for seen in (shown, *listed):
        assert seen.video.frame_count > 0 and not seen.video_uri and not seen.video.uri
    with stack.channel("storage") as channel:  # services still get it: the detector opens it
        internal = storage_pb2_grpc.StorageServiceStub(channel).GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=episode))
    assert internal.video_uri.startswith(str(stack.data_root.resolve()))


def test_an_upload_answers_people_without_where_the_video_lives(as_role: Callable[[str], Caller], media: Path) -> None:
    reviewer = as_role("reviewer")
    data = (media / "single_face.mp4").read_bytes()
    Header = orchestrator_pb2.UploadEpisodeRequest.Header
    streamed = reviewer.orchestrator.UploadEpisode(
        iter(
            [
                orchestrator_pb2.UploadEpisodeRequest(header=Header(ep_id="auth-uri-1", filename="a.mp4", season=2)),
                orchestrator_pb2.UploadEpisodeRequest(chunk=data),
            ]
        )
    )
    session = reviewer.orchestrator.BeginUpload(
        orchestrator_pb2.BeginUploadRequest(header=Header(ep_id="auth-uri-2", filename="b.mp4"), size_bytes=len(data))
    )
    reviewer.orchestrator.UploadChunk(
        orchestrator_pb2.UploadChunkRequest(session_id=session.session_id, offset=0, data=data)
    )
    finished = reviewer.orchestrator.FinishUpload(orchestrator_pb2.FinishUploadRequest(session_id=session.session_id))
    for seen in (streamed, finished):
        assert seen.video.frame_count > 0 and not seen.video_uri and not seen.video.uri
    assert streamed.season == 2
