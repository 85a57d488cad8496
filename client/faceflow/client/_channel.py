"""Channels: the retry policy, keepalive, message sizes, TLS and the bearer token on every call.

The retry policy is the one every faceflow service uses (services/common/retry.py, copied here so the
client needs nothing of the services): gRPC itself retries a call that failed with UNAVAILABLE (a
service restarting, a replica going away) with exponential backoff, 5 attempts over about 3 s. Only
UNAVAILABLE is retried, and every call that can see it is safe to repeat (reads, and writes keyed by
the caller: jobs by idempotency key, upload chunks by offset).

The token travels as `authorization: Bearer <jwt>` metadata: through a call-credentials plugin on a
TLS channel, and through an interceptor on a plaintext one (gRPC sends call credentials only over
TLS; plaintext is meant for loopback, e.g. a local `faceflow up`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from faceflow.client._version import __version__
from faceflow.client.errors import InvalidArgument
from faceflow.client.policy import CHANNEL_OPTIONS as BASE_OPTIONS
from faceflow.client.policy import MetadataInterceptor, merged

# A token, or a function returning the current one (called before every call: refresh it there).
TokenSource = str | Callable[[], str]

AUTHORIZATION = "authorization"
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    *BASE_OPTIONS,
    ("grpc.primary_user_agent", f"faceflow-client/{__version__}"),
)


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings: `ca_file` the authority to trust (default: the system's roots); `cert_file` and
    `key_file` this client's certificate, for servers that require mutual TLS."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise InvalidArgument("mutual TLS needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(
            root_certificates=_read("ca_file", self.ca_file),
            private_key=_read("key_file", self.key_file),
            certificate_chain=_read("cert_file", self.cert_file),
        )


def _read(name: str, path: str | Path | None) -> bytes | None:
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        raise InvalidArgument(f"TLS {name} {file} does not exist")
    return file.read_bytes()


def bearer(token: TokenSource) -> tuple[tuple[str, str], ...]:
    """The metadata that carries `token`."""
    value = token() if callable(token) else token
    return ((AUTHORIZATION, f"Bearer {value}"),) if value else ()


class _TokenPlugin(grpc.AuthMetadataPlugin):
    """Call credentials for TLS channels."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            metadata = bearer(self._token)
        except Exception as error:  # a token function that failed: the call fails with its message
            callback((), error)
            return
        callback(metadata, None)


class _AioToken:
    """The token on every call of a plaintext asyncio channel (the client makes unary and server-streaming
    calls only). grpc.aio files an interceptor under the first kind it is an instance of, so each kind
    of call gets an interceptor of its own."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*merged(list(details.metadata or ()), bearer(self._token)))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _AioUnaryUnary(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def _secure_credentials(tls: bool | TlsOptions, token: TokenSource | None) -> grpc.ChannelCredentials:
    credentials = tls.credentials() if isinstance(tls, TlsOptions) else grpc.ssl_channel_credentials()
    if token is None:
        return credentials
    return grpc.composite_channel_credentials(credentials, grpc.metadata_call_credentials(_TokenPlugin(token)))


def open_channel(address: str, tls: bool | TlsOptions, token: TokenSource | None) -> grpc.Channel:
    """A channel to `address` ("host:port") with the retry policy, and the token on every call."""
    if tls:
        return grpc.secure_channel(address, _secure_credentials(tls, token), options=CHANNEL_OPTIONS)
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if token is None:
        return channel
    return grpc.intercept_channel(channel, MetadataInterceptor(lambda: bearer(token)))


def open_aio_channel(address: str, tls: bool | TlsOptions, token: TokenSource | None) -> grpc.aio.Channel:
    """The asyncio twin of open_channel."""
    if tls:
        return grpc.aio.secure_channel(address, _secure_credentials(tls, token), options=CHANNEL_OPTIONS)
    interceptors = [_AioUnaryUnary(token), _AioUnaryStream(token)] if token is not None else None
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
