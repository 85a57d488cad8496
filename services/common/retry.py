"""The one retry policy of every gRPC client in faceflow: the channel retries, the code does not.

The policy itself (retry UNAVAILABLE with backoff, round_robin over a channel's addresses) is
faceflow.client.policy's, so services and remote clients behave alike; here is what only the services
need: a replica list as one balanced channel. A stream that broke after answering (a detector replica
dying mid-segment) is work the caller redoes (services/orchestrator/run/detect_track.py), not a
transport retry.
"""

from __future__ import annotations

from typing import Any

from faceflow.client.policy import MAX_ATTEMPTS, RETRY_OPTIONS

from services.common.errors import FailedPrecondition

__all__ = ["MAX_ATTEMPTS", "RETRY_OPTIONS", "replica_target"]


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
