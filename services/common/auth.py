"""Who is calling, and may they: one identity on every call, checked in every service.

Two kinds of caller (docs/security.md):
- people and their programs present a JWT (`authorization: Bearer …`), issued by the operator's
  identity provider (or, on a laptop, the local issuer in services/common/local_issuer.py). Envoy
  validates it at the edge and forwards it; each service validates it again, so a caller that
  bypasses Envoy meets the same check. The token's role claim gives one of the roles below.
- services present the shared service token (`x-faceflow-service-token`), and may name the person
  they act for (`x-faceflow-principal`) so that audit lines show who asked. Envoy strips both headers
  from browser requests; a service honours the second only next to a valid first.

Roles are ordered: a caller may make every call its role or a lower one allows. The table of which
call needs which role is `services/common/access.py`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from hmac import compare_digest
from pathlib import Path
from typing import Any

import grpc
import jwt
from faceflow.client.policy import MetadataInterceptor

from services.common.config import Settings
from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
SERVICE_TOKEN_HEADER = "x-faceflow-service-token"
ACTING_FOR_HEADER = "x-faceflow-principal"
# Asymmetric algorithms only: a verifier that accepted HS256 could be fed a token "signed" with the
# public key, and "none" is never a signature.
ALGORITHMS = ("ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA")
# Clock skew tolerated between the issuer and this service, seconds.
LEEWAY_S = 30
# A JWKS at a URI is fetched again after this long (key rotation), seconds.
JWKS_CACHE_S = 300
# The service token is a random secret; shorter ones are refused as guessable.
MIN_SERVICE_TOKEN_CHARS = 32
MAX_SUBJECT_CHARS = 128


class Role(IntEnum):
    """What a caller may do; each role includes the ones below it."""

    VIEWER = 1  # reads: episodes, jobs, review state, screen time, crops, the facebank
    REVIEWER = 2  # + runs, uploads, review operations, enrolment
    ADMIN = 3  # + every delete: episodes, all episodes, people, exemplars
    SERVICE = 4  # + the internal calls services make to each other; never granted by a JWT

    @property
    def label(self) -> str:
        return self.name.lower()


USER_ROLES = {role.label: role for role in (Role.VIEWER, Role.REVIEWER, Role.ADMIN)}


@dataclass(frozen=True)
class Principal:
    """A verified caller. `acting_for` is the person a service (or the local CLI) called for."""

    subject: str
    role: Role
    acting_for: str = ""

    @property
    def is_service(self) -> bool:
        return self.role is Role.SERVICE

    @property
    def audit_name(self) -> str:
        """The name that goes into audit lines and records: the person, not the relaying service."""
        if self.acting_for:
            return self.acting_for
        return f"{self.subject} ({self.role.label})"


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("faceflow_principal", default=None)


def current_principal() -> Principal | None:
    """The caller of the RPC this thread is serving (None outside an RPC, e.g. at start-up)."""
    return _current.get()


def audit_name() -> str:
    principal = _current.get()
    return principal.audit_name if principal else "system"


def acting_as(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Make `principal` the current caller (the server interceptor; a job thread resuming its submitter)."""
    return _current.set(principal)


def restore(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def parse_role_map(text: str) -> dict[str, Role]:
    """`"faceflow-admins=admin, staff=viewer"` -> {claim value: role}; the role names map to themselves."""
    mapping = dict(USER_ROLES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, sep, role = item.partition("=")
        if not sep or not value.strip() or role.strip() not in USER_ROLES:
            raise InvalidArgument(
                f"auth_role_map entry {item!r} is not VALUE=ROLE with ROLE one of {', '.join(USER_ROLES)}"
            )
        mapping[value.strip()] = USER_ROLES[role.strip()]
    return mapping


class _JwksKeys:
    """Signing keys by `kid`, from a file (reloaded when it changes) or a URI (cached, refetched)."""

    def __init__(self, file: str, uri: str) -> None:
        self._file = Path(file) if file else None
        self._client = jwt.PyJWKClient(uri, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=5) if uri else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: jwt.PyJWKSet | None = None

    def key_for(self, token: str) -> Any:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as error:
                log.warning("jwks fetch failed", extra={"error": str(error)})
                raise Unauthenticated("the token cannot be verified now: the issuer's keys are unreachable") from None
        header = jwt.get_unverified_header(token)
        keys = self._file_keys()
        kid = header.get("kid")
        for key in keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise Unauthenticated("the token was signed by a key this deployment does not trust")

    def _file_keys(self) -> jwt.PyJWKSet:
        assert self._file is not None
        try:
            stat = self._file.stat()
        except OSError:
            raise FailedPrecondition(f"the JWKS file {self._file} is missing") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._keys is None or stamp != self._stamp:
                self._keys = jwt.PyJWKSet.from_dict(json.loads(self._file.read_text()))
                self._stamp = stamp
            return self._keys


@dataclass(frozen=True)
class AuthConfig:
    issuer: str
    audiences: tuple[str, ...]
    jwks_file: str
    jwks_uri: str
    roles_claim: str
    role_map: Mapping[str, Role]
    service_token: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        """Fail fast: a service that cannot authenticate anyone must not start open."""
        token = read_service_token(settings.service_token_file) if settings.service_token_file else ""
        has_jwks = bool(settings.auth_jwks_file or settings.auth_jwks_uri)
        if not token and not has_jwks:
            raise FailedPrecondition(
                "authentication is not configured: set FACEFLOW_SERVICE_TOKEN_FILE (services) and "
                "FACEFLOW_AUTH_JWKS_FILE or FACEFLOW_AUTH_JWKS_URI with FACEFLOW_AUTH_ISSUER and "
                "FACEFLOW_AUTH_AUDIENCES (users); the local stack sets them itself (docs/security.md)"
            )
        audiences = tuple(a.strip() for a in settings.auth_audiences.split(",") if a.strip())
        if has_jwks and not (settings.auth_issuer and audiences):
            raise FailedPrecondition(
                "a JWKS is configured without FACEFLOW_AUTH_ISSUER and FACEFLOW_AUTH_AUDIENCES: "
                "tokens of any issuer or audience would pass"
            )
        return cls(
            issuer=settings.auth_issuer,
            audiences=audiences,
            jwks_file=settings.auth_jwks_file,
            jwks_uri=settings.auth_jwks_uri,
            roles_claim=settings.auth_roles_claim,
            role_map=parse_role_map(settings.auth_role_map),
            service_token=token,
        )


def read_service_token(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FailedPrecondition(f"the service token file {path} (FACEFLOW_SERVICE_TOKEN_FILE) does not exist")
    token = file.read_text().strip()
    if len(token) < MIN_SERVICE_TOKEN_CHARS:
        raise FailedPrecondition(
            f"the service token in {path} is shorter than {MIN_SERVICE_TOKEN_CHARS} characters; use a random secret"
        )
    return token


class Authenticator:
    """Turns a call's metadata into a verified Principal, or raises Unauthenticated."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        has_jwks = bool(config.jwks_file or config.jwks_uri)
        self._keys = _JwksKeys(config.jwks_file, config.jwks_uri) if has_jwks else None

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        headers: dict[str, str] = {}
        for key, value in metadata:
            if isinstance(value, str):
                headers.setdefault(key.lower(), value)
        service_token = headers.get(SERVICE_TOKEN_HEADER)
        if service_token is not None:
            return self._service(service_token, headers.get(ACTING_FOR_HEADER, ""))
        bearer = headers.get(AUTHORIZATION, "")
        if not bearer:
            raise Unauthenticated("this call needs credentials: send `authorization: Bearer <token>`")
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization header must be `Bearer <token>`")
        return self._user(token.strip())

    def _service(self, token: str, acting_for: str) -> Principal:
        expected = self._config.service_token
        if not expected or not compare_digest(token.encode(), expected.encode()):
            raise Unauthenticated("the service token is not valid")
        return Principal("service", Role.SERVICE, acting_for[:MAX_SUBJECT_CHARS])

    def _user(self, token: str) -> Principal:
        if self._keys is None:
            raise Unauthenticated("this service takes no user tokens (no JWKS configured)")
        try:
            key = self._keys.key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=list(self._config.audiences),
                issuer=self._config.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; get a new one") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is not meant for this deployment (audience)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token comes from an issuer this deployment does not trust") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError):
            raise Unauthenticated("the token is not valid (malformed, or signed by an unknown key)") from None
        subject = str(claims["sub"])[:MAX_SUBJECT_CHARS]
        role = self._role(claims)
        if role is None:
            raise PermissionDenied(
                f"{subject} has no faceflow role: the token's {self._config.roles_claim!r} claim names none of "
                f"{', '.join(sorted(self._config.role_map))}"
            )
        return Principal(subject, role)

    def _role(self, claims: Mapping[str, Any]) -> Role | None:
        raw = claims.get(self._config.roles_claim)
        values: Sequence[Any] = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = [self._config.role_map[v] for v in values if isinstance(v, str) and v in self._config.role_map]
        return max(roles, default=None)


class AccessCheck:
    """What the server interceptor asks before every call: who is this, and may they make it?"""

    def __init__(self, authenticator: Authenticator, required: Callable[[str], Role | None]) -> None:
        self._authenticator = authenticator
        self._required = required

    def check(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> Principal | None:
        """None for public calls (health); raises Unauthenticated / PermissionDenied with one sentence."""
        needed = self._required(method)
        if needed is None:
            return None
        principal = self._authenticator.authenticate(metadata)
        if principal.role < needed:
            call = method.rsplit("/", 1)[-1]
            log.warning(
                "rpc denied",
                extra={"method": method, "principal": principal.audit_name, "needs": needed.label},
            )
            raise PermissionDenied(
                f"{principal.subject} is a {principal.role.label}; {call} needs the {needed.label} role"
            )
        return principal


# ---- the client side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCredentials:
    """What a caller attaches to every call: a user's bearer token, or the service token (with the
    person it acts for: fixed for the local CLI, else whoever the current RPC is serving)."""

    bearer: str = ""
    service_token: str = ""
    acting_for: str = ""

    @classmethod
    def for_service(cls, settings: Settings) -> ClientCredentials:
        if not settings.service_token_file:
            raise FailedPrecondition(
                "this service calls others but has no service token: set FACEFLOW_SERVICE_TOKEN_FILE"
            )
        return cls(service_token=read_service_token(settings.service_token_file))

    def metadata(self) -> list[tuple[str, str]]:
        if self.bearer:
            return [(AUTHORIZATION, f"Bearer {self.bearer}")]
        if not self.service_token:
            return []
        pairs = [(SERVICE_TOKEN_HEADER, self.service_token)]
        acting_for = self.acting_for or (p.audit_name if (p := _current.get()) else "")
        if acting_for:
            pairs.append((ACTING_FOR_HEADER, acting_for))
        return pairs

    def intercept(self, channel: grpc.Channel) -> grpc.Channel:
        return grpc.intercept_channel(channel, MetadataInterceptor(self.metadata))


