"""The one retry policy of every gRPC client in faceflow: the channel retries, the code does not.

gRPC's service config retries a call that failed with UNAVAILABLE (the peer is down, restarting or
draining) with exponential backoff, and round_robin spreads calls over every address of a channel,
so a retry reaches another replica when one is gone. That covers unary calls and streams that have
not answered yet; a stream that broke after answering (a detector replica dying mid-segment) is
work the caller redoes (services/orchestrator/run/detect_track.py), not a transport retry.

Only UNAVAILABLE is retried: every faceflow RPC that can see it is safe to repeat (reads, and
writes keyed by the caller: artifacts by name, review records by sequence number, jobs by
idempotency key).
"""

from __future__ import annotations

import json
from typing import Any

from services.common.errors import FailedPrecondition

# 5 attempts over ~3 s (0.2 + 0.4 + 0.8 + 1.6 s, jittered by gRPC): long enough for a supervised
# service to restart (its reconnect backoff is capped at 2 s) or a balanced channel to drop a dead
# pod, short enough that a caller with nothing to reach hears UNAVAILABLE within its patience.
MAX_ATTEMPTS = 5
INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0

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


def replica_target(addresses: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A gRPC target for "host:port" or a comma-separated list of IP:port replicas (one balanced
    channel: "ipv4:a,b"), with the channel options it needs. A list of names cannot be one channel:
    give a name that resolves to every replica instead (dns:///detector-headless:50051)."""
    parts = [a.strip() for a in addresses.split(",") if a.strip()]
    if len(parts) <= 1:
        return (parts[0] if parts else addresses), ()
    hosts = [p.rsplit(":", 1)[0] for p in parts]
    if all(_is_ipv4(h) for h in hosts):
        scheme = "ipv4"
    elif all(h.startswith("[") and h.endswith("]") for h in hosts):
        scheme = "ipv6"
    else:
        raise FailedPrecondition(
            f"a replica list must be IP:port addresses, got {addresses!r}; for names, use one that resolves to "
            "every replica (e.g. dns:///detector-headless:50051)"
        )
    # TLS checks the peer's name against the authority: the first replica's, as for one address.
    return f"{scheme}:{','.join(parts)}", (("grpc.default_authority", parts[0]),)


def _is_ipv4(host: str) -> bool:
    pieces = host.split(".")
    return len(pieces) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in pieces)
