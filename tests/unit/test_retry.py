"""The one retry policy (services/common/retry.py) on real loopback channels: UNAVAILABLE is retried
with backoff and then given up, other failures are not retried, and a replica list is one balanced
channel that keeps working when a replica is gone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.errors import FailedPrecondition
from services.common.retry import MAX_ATTEMPTS, replica_target
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import open_channel


class Flaky(health_pb2_grpc.HealthServicer):
    """Fails the first `failures` calls with `code`, then answers SERVING; counts calls."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.failures, self.code, self.calls = failures, code, 0
        self._lock = threading.Lock()

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> object:
        with self._lock:
            self.calls += 1
            failing = self.calls <= self.failures
        if failing:
            context.abort(self.code, "not now")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def serve(servicer: Flaky) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def servers() -> Iterator[list[grpc.Server]]:
    started: list[grpc.Server] = []
    yield started
    for server in started:
        server.stop(None)


def check(address: str) -> health_pb2.HealthCheckResponse:
    with open_channel(address, None, CHANNEL_OPTIONS) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)


def test_unavailable_is_retried_until_the_peer_answers(servers: list[grpc.Server]) -> None:
    flaky = Flaky(failures=MAX_ATTEMPTS - 1)
    server, address = serve(flaky)
    servers.append(server)
    assert check(address).status == health_pb2.HealthCheckResponse.SERVING
    assert flaky.calls == MAX_ATTEMPTS


def test_unavailable_is_given_up_after_the_last_attempt(servers: list[grpc.Server]) -> None:
    flaky = Flaky(failures=100)
    server, address = serve(flaky)
    servers.append(server)
    with pytest.raises(grpc.RpcError) as caught:
        check(address)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls == MAX_ATTEMPTS


def test_other_failures_are_not_retried(servers: list[grpc.Server]) -> None:
    flaky = Flaky(failures=1, code=grpc.StatusCode.INTERNAL)
    server, address = serve(flaky)
    servers.append(server)
    with pytest.raises(grpc.RpcError) as caught:
        check(address)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert flaky.calls == 1


def test_a_replica_list_is_balanced_and_survives_a_lost_replica(servers: list[grpc.Server]) -> None:
    replicas = [Flaky(failures=0) for _ in range(2)]
    served = [serve(replica) for replica in replicas]
    servers.extend(server for server, _ in served)
    with open_channel(",".join(address for _, address in served), None, CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(10):
            stub.Check(health_pb2.HealthCheckRequest(), timeout=20)
        assert all(r.calls >= 3 for r in replicas), [r.calls for r in replicas]  # round robin
        served[0][0].stop(None).wait()
        before = replicas[1].calls
        for _ in range(5):
            stub.Check(health_pb2.HealthCheckRequest(), timeout=20)
        assert replicas[1].calls == before + 5


def test_replica_lists_must_be_addresses() -> None:
    assert replica_target("detector:50051") == ("detector:50051", ())
    assert replica_target("127.0.0.1:1, 127.0.0.1:2")[0] == "ipv4:127.0.0.1:1,127.0.0.1:2"
    with pytest.raises(FailedPrecondition, match="dns:///"):
        replica_target("detector-a:50051,detector-b:50051")
