"""How every faceflow gRPC client calls: the one retry policy, channel options and per-call metadata.

The services (services/common/retry.py, server.py, auth.py) use this module too, so a remote client
and the services calling each other retry, balance and reconnect alike.

gRPC's service config retries a call that failed with UNAVAILABLE (the peer is down, restarting or
draining) with exponential backoff, and round_robin spreads calls over every address of a channel,
so a retry reaches another replica when one is gone. Only UNAVAILABLE is retried: every faceflow RPC
that can see it is safe to repeat (reads, and writes keyed by the caller: artifacts by name, review
records by sequence number, jobs by idempotency key, upload chunks by offset).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import grpc

# 5 attempts over ~3 s (0.2 + 0.4 + 0.8 + 1.6 s, jittered by gRPC): long enough for a restarted service
# (its reconnect backoff is capped at 2 s) or a balanced channel to drop a dead pod, short enough that
# a caller with nothing to reach hears UNAVAILABLE within its patience.
MAX_ATTEMPTS = 5
INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0
# 64 MiB: a batch of 1,000 aligned crops (37 KB each) fits in one message; larger artifacts stream.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],  # every method of every service
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": f"{INITIAL_BACKOFF_S}s",
                    "maxBackoff": f"{MAX_BACKOFF_S}s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
RETRY_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
)
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A restarted peer (a supervised service, a rescheduled pod) is reached again within ~2 s: gRPC's
    # default reconnect backoff grows to 120 s, and calls fail at once while it waits.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    *RETRY_OPTIONS,
)

# The metadata a caller adds to every call, computed per call (a token that is refreshed, the person a
# service acts for).
MetadataSource = Callable[[], Sequence[tuple[str, str]]]


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: list[tuple[str, Any]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def merged(metadata: Sequence[tuple[str, Any]] | None, own: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`own` pairs replace any of the same names the call already had."""
    names = {name for name, _ in own}
    return [*((k, v) for k, v in (metadata or ()) if k not in names), *own]


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `source()`'s pairs to every call of a channel (grpc.intercept_channel)."""

    def __init__(self, source: MetadataSource) -> None:
        self._source = source

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _Details(details, merged(details.metadata, self._source()))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)
