"""TLS and mutual TLS between services (optional; the chart's `tls.enabled` turns it on).

Certificates come from files (a Kubernetes Secret mounted read-only): FACEFLOW_TLS_CERT_FILE and
FACEFLOW_TLS_KEY_FILE are this service's identity, FACEFLOW_TLS_CA_FILE the authority it trusts,
FACEFLOW_TLS_CLIENT_AUTH=require makes servers demand a client certificate (mTLS) and clients
present theirs. Probes cannot speak TLS, so FACEFLOW_TLS_HEALTH_PORT opens a plaintext port that
serves only gRPC health.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.retry import replica_target

CLIENT_AUTH = ("none", "require")


@dataclass(frozen=True)
class TlsConfig:
    cert: bytes
    key: bytes
    ca: bytes | None
    require_client_auth: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsConfig | None:
        """None when TLS is off; InvalidArgument naming the setting when it is half-configured."""
        if not (settings.tls_cert_file or settings.tls_key_file):
            return None
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise InvalidArgument("TLS needs both FACEFLOW_TLS_CERT_FILE and FACEFLOW_TLS_KEY_FILE")
        if settings.tls_client_auth not in CLIENT_AUTH:
            raise InvalidArgument(
                f"FACEFLOW_TLS_CLIENT_AUTH must be one of {CLIENT_AUTH}, got {settings.tls_client_auth!r}"
            )
        if settings.tls_client_auth == "require" and not settings.tls_ca_file:
            raise InvalidArgument("mutual TLS (FACEFLOW_TLS_CLIENT_AUTH=require) needs FACEFLOW_TLS_CA_FILE")

        def read(name: str, path: str) -> bytes:
            file = Path(path)
            if not file.is_file():
                raise InvalidArgument(f"{name} {path} does not exist")
            return file.read_bytes()

        return cls(
            cert=read("FACEFLOW_TLS_CERT_FILE", settings.tls_cert_file),
            key=read("FACEFLOW_TLS_KEY_FILE", settings.tls_key_file),
            ca=read("FACEFLOW_TLS_CA_FILE", settings.tls_ca_file) if settings.tls_ca_file else None,
            require_client_auth=settings.tls_client_auth == "require",
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=self.require_client_auth
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if self.require_client_auth:
            return grpc.ssl_channel_credentials(self.ca, private_key=self.key, certificate_chain=self.cert)
        return grpc.ssl_channel_credentials(self.ca)


def open_channel(
    address: str,
    tls: TlsConfig | None,
    options: Sequence[tuple[str, Any]] = (),
    credentials: ClientCredentials | None = None,
) -> grpc.Channel:
    """A channel to another faceflow service, secure exactly when this process is configured for TLS,
    carrying `credentials` (a token: services/common/auth.py) on every call. `address` may list
    several IP:port replicas, balanced over one channel (services/common/retry.py)."""
    target, extra = replica_target(address)
    options = [*options, *extra]
    if tls is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, tls.channel_credentials(), options=options)
    return credentials.intercept(channel) if credentials is not None else channel
