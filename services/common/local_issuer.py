"""The local stack's own token issuer: an ES256 key pair and a service token in DATA_ROOT/auth.

A laptop has no identity provider, so `faceflow up` (and every ephemeral stack) keeps one here:
the services trust the public half (jwks.json) exactly as a cluster trusts its provider's JWKS, and
`faceflow auth token` signs tokens with the private half. Whoever can read this folder can mint an
admin token, which on a laptop is whoever can read the data anyway. Files are created once, 0600 in
a 0700 folder, and never rewritten, so tokens stay valid across restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.auth import USER_ROLES
from services.common.errors import FailedPrecondition, InvalidArgument

ISSUER = "faceflow-local"
AUDIENCE = "faceflow"
ROLES_CLAIM = "roles"
MAX_TTL_S = 30 * 24 * 3600


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only; never overwrite (a concurrent creator wins)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@dataclass(frozen=True)
class LocalIssuer:
    folder: Path

    @classmethod
    def at(cls, data_root: Path) -> LocalIssuer:
        return cls(data_root.resolve() / "auth")

    @property
    def key_path(self) -> Path:
        return self.folder / "signing-key.pem"

    @property
    def jwks_path(self) -> Path:
        return self.folder / "jwks.json"

    @property
    def service_token_path(self) -> Path:
        return self.folder / "service-token"

    @property
    def key_id(self) -> str:
        return json.loads(self.jwks_path.read_text())["keys"][0]["kid"]

    def ensure(self) -> LocalIssuer:
        """Create the key pair, its JWKS and the service token if they are not there yet."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        if not self.key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            with contextlib.suppress(FileExistsError):
                _write_private(self.key_path, pem)
        if not self.jwks_path.exists():
            public = jwt.algorithms.ECAlgorithm.to_jwk(self._private_key().public_key(), as_dict=True)
            public.update(kid=uuid.uuid4().hex[:16], use="sig", alg="ES256")
            tmp = self.jwks_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"keys": [public]}, indent=1))
            tmp.replace(self.jwks_path)
        if not self.service_token_path.exists():
            with contextlib.suppress(FileExistsError):
                _write_private(self.service_token_path, secrets.token_urlsafe(32).encode())
        return self

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        if not self.key_path.is_file():
            raise FailedPrecondition(
                f"no local signing key in {self.folder}: start the stack once (`faceflow up`) with this data root"
            )
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FailedPrecondition(f"{self.key_path} is not an EC private key")
        return key

    def service_token(self) -> str:
        return self.service_token_path.read_text().strip() if self.service_token_path.is_file() else ""

    def mint(self, role: str, subject: str, ttl_s: int, now: float | None = None) -> str:
        """A signed JWT for `subject` with `role`, valid for ttl_s seconds."""
        if role not in USER_ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(USER_ROLES)}, got {role!r}")
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"ttl must be between 1 s and {MAX_TTL_S // 86400} days, got {ttl_s} s")
        if not subject or len(subject) > 128:
            raise InvalidArgument("subject must be 1-128 characters")
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            ROLES_CLAIM: [role],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._private_key(), algorithm="ES256", headers={"kid": self.key_id})

    def service_env(self) -> dict[str, str]:
        """FACEFLOW_* settings that make a service trust this issuer and the service token."""
        return {
            "FACEFLOW_AUTH_ISSUER": ISSUER,
            "FACEFLOW_AUTH_AUDIENCES": AUDIENCE,
            "FACEFLOW_AUTH_JWKS_FILE": str(self.jwks_path),
            "FACEFLOW_AUTH_JWKS_URI": "",
            "FACEFLOW_AUTH_ROLES_CLAIM": ROLES_CLAIM,
            "FACEFLOW_AUTH_ROLE_MAP": "",
            "FACEFLOW_SERVICE_TOKEN_FILE": str(self.service_token_path),
        }


def parse_ttl(text: str) -> int:
    """`90`, `90s`, `15m`, `1h`, `7d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isdigit():
        raise InvalidArgument(f"ttl {text!r} is not a duration like 90s, 15m, 1h or 7d")
    return int(number) * units[unit]
