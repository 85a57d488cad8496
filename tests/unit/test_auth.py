"""Authentication primitives and the detector's source rule, without servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.common.access import required_role
from services.common.auth import (
    ACTING_FOR_HEADER,
    SERVICE_TOKEN_HEADER,
    AuthConfig,
    Authenticator,
    ClientCredentials,
    Principal,
    Role,
    acting_as,
    parse_role_map,
    restore,
)
from services.common.config import Settings
from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated
from services.common.local_issuer import LocalIssuer, parse_ttl
from services.detector.sources import VideoSources, object_store_prefixes


@pytest.fixture()
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer.at(tmp_path).ensure()


def _authenticator(issuer: LocalIssuer, **overrides: str) -> Authenticator:
    env = {**issuer.service_env(), **overrides}
    return Authenticator(AuthConfig.from_settings(Settings.from_env(env)))


def test_local_issuer_files_are_private_and_stable(issuer: LocalIssuer) -> None:
    assert issuer.folder.stat().st_mode & 0o777 == 0o700
    for path in (issuer.key_path, issuer.service_token_path):
        assert path.stat().st_mode & 0o777 == 0o600
    token, kid = issuer.service_token(), issuer.key_id
    issuer.ensure()
    assert (issuer.service_token(), issuer.key_id) == (token, kid)
    assert len(token) >= 32


def test_tokens_give_their_role_and_subject(issuer: LocalIssuer) -> None:
    auth = _authenticator(issuer)
    for role in ("viewer", "reviewer", "admin"):
        principal = auth.authenticate([("authorization", "Bearer " + issuer.mint(role, "ana", 60))])
        assert principal == Principal("ana", Role[role.upper()])
    assert principal.audit_name == "ana (admin)"


def test_role_map_translates_an_identity_providers_groups(issuer: LocalIssuer) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(issuer.key_path.read_bytes(), password=None)
    claims = {"iss": "faceflow-local", "aud": "faceflow", "sub": "bo", "iat": 1, "exp": 2**31, "groups": ["tv-ops"]}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": issuer.key_id})
    mapped = _authenticator(issuer, FACEFLOW_AUTH_ROLES_CLAIM="groups", FACEFLOW_AUTH_ROLE_MAP="tv-ops=reviewer")
    assert mapped.authenticate([("authorization", f"Bearer {token}")]).role is Role.REVIEWER
    with pytest.raises(PermissionDenied, match="no faceflow role"):
        _authenticator(issuer).authenticate([("authorization", f"Bearer {token}")])
    with pytest.raises(InvalidArgument, match="VALUE=ROLE"):
        parse_role_map("tv-ops=service")


def test_service_token_and_acting_for(issuer: LocalIssuer) -> None:
    auth = _authenticator(issuer)
    principal = auth.authenticate(
        [(SERVICE_TOKEN_HEADER, issuer.service_token()), (ACTING_FOR_HEADER, "ana (reviewer)")]
    )
    assert principal.is_service and principal.audit_name == "ana (reviewer)"
    with pytest.raises(Unauthenticated):
        auth.authenticate([(SERVICE_TOKEN_HEADER, issuer.service_token()[:-1] + "x")])
    with pytest.raises(Unauthenticated, match="Bearer"):
        auth.authenticate([("authorization", "Basic YTpi")])


def test_a_service_forwards_the_person_it_serves() -> None:
    credentials = ClientCredentials(service_token="s" * 40)
    assert dict(credentials.metadata()) == {SERVICE_TOKEN_HEADER: "s" * 40}
    token = acting_as(Principal("ana", Role.REVIEWER))
    try:
        assert dict(credentials.metadata())[ACTING_FOR_HEADER] == "ana (reviewer)"
    finally:
        restore(token)


def test_a_service_never_starts_open(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="not configured"):
        AuthConfig.from_settings(Settings.from_env({}))
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    with pytest.raises(FailedPrecondition, match="ISSUER"):
        AuthConfig.from_settings(Settings.from_env({"FACEFLOW_AUTH_JWKS_FILE": str(tmp_path / "jwks.json")}))
    (tmp_path / "short").write_text("tooshort")
    with pytest.raises(FailedPrecondition, match="shorter"):
        AuthConfig.from_settings(Settings.from_env({"FACEFLOW_SERVICE_TOKEN_FILE": str(tmp_path / "short")}))


def test_access_table_defaults() -> None:
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/faceflow.v1.StorageService/ListEpisodes") is Role.VIEWER
    assert required_role("/faceflow.v1.StorageService/DeleteAllEpisodes") is Role.ADMIN
    assert required_role("/faceflow.v1.OrchestratorService/SubmitJob") is Role.REVIEWER
    assert required_role("/faceflow.v1.StorageService/SomethingNew") is Role.SERVICE
    assert required_role("/faceflow.v1.DetectorService/ProbeVideo") is Role.SERVICE


def test_ttl_parsing() -> None:
    assert [parse_ttl(t) for t in ("90", "90s", "15m", "1h", "7d")] == [90, 90, 900, 3600, 7 * 86400]
    with pytest.raises(InvalidArgument):
        parse_ttl("soon")


# ---- the detector's sources -------------------------------------------------------------------------


def _sources(root: Path, allow_local: bool = False, env: dict[str, str] | None = None) -> VideoSources:
    settings = Settings.from_env(env or {}, data_root=str(root), allow_local_sources=allow_local)
    return VideoSources.from_settings(settings)


def test_local_files_only_under_the_data_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "episodes" / "ep").mkdir(parents=True)
    inside = root / "episodes" / "ep" / "video.mp4"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    escape = root / "episodes" / "ep" / "link.mp4"
    os.symlink(outside, escape)
    sources = _sources(root)
    sources.check(str(inside))
    sources.check(f"file://{inside}")
    for uri in (str(outside), str(escape), f"{root}/../secret.mp4", "/etc/passwd", "relative.mp4", "concat:/a|/b"):
        with pytest.raises(PermissionDenied):
            sources.check(uri)
    _sources(root, allow_local=True).check(str(outside))
    with pytest.raises(PermissionDenied):
        _sources(root, allow_local=True).check("concat:/etc/passwd|/etc/hosts")


def test_urls_only_of_the_configured_bucket(tmp_path: Path) -> None:
    env = {"FACEFLOW_S3_BUCKET": "media", "FACEFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:8333"}
    sources = _sources(tmp_path, env=env)
    sources.check("http://127.0.0.1:8333/media/faceflow/episodes/ep/video.mp4?X-Amz-Signature=abc")
    sources.check("http://media.127.0.0.1:8333/faceflow/episodes/ep/video.mp4?X-Amz-Signature=abc")
    for url in (
        "http://127.0.0.1:8333/other-bucket/x.mp4",
        "http://127.0.0.1:8333/media/../admin",
        "http://127.0.0.1:8333@127.0.0.1:9000/media/x.mp4",
        "http://127.0.0.1:9000/media/x.mp4",
        "https://127.0.0.1:8333/media/x.mp4",
        "rtsp://127.0.0.1:8333/media/x.mp4",
        "http://127.0.0.1:8333/mediax/x.mp4",
    ):
        with pytest.raises(PermissionDenied):
            sources.check(url)
    with pytest.raises(PermissionDenied):
        _sources(tmp_path).check("http://127.0.0.1:8333/media/x.mp4")  # no bucket configured: no URL at all
    aws = object_store_prefixes(Settings.from_env({"FACEFLOW_S3_BUCKET": "media", "FACEFLOW_S3_REGION": "eu-west-1"}))
    assert any(p.admits("https://media.s3.eu-west-1.amazonaws.com/k.mp4?sig=1") for p in aws)
    assert not any(p.admits("https://evil.s3.eu-west-1.amazonaws.com/k.mp4") for p in aws)
