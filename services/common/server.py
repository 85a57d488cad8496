"""What every faceflow service shares: a gRPC server with health checking, reflection, error
translation, Prometheus metrics, structured logs and graceful shutdown on SIGTERM/SIGINT.

Health reports NOT_SERVING until the service's warm-up (model load and a test inference) has passed,
so Kubernetes readiness probes and the local stack's start-up wait see a service only when it can work.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from faceflow.client.policy import CHANNEL_OPTIONS as POLICY_OPTIONS
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from services.common.auth import AccessCheck, acting_as, restore
from services.common.errors import FaceflowError
from services.common.grpc_errors import status_for
from services.common.tls import TlsConfig

log = logging.getLogger(__name__)

# Message limits, keepalive, reconnect backoff and the retry policy: faceflow.client.policy, shared with
# remote clients (services/common/retry.py adds replica lists).
CHANNEL_OPTIONS = list(POLICY_OPTIONS)


@dataclass
class ServiceMetrics:
    """Per-process Prometheus metrics: one registry per server, never the global default."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("faceflow_rpc_requests", "RPCs handled", ["method", "code"], registry=self.registry)
        self.latency = Histogram(
            "faceflow_rpc_seconds",
            "RPC handling time (streams: until the last message)",
            ["method"],
            registry=self.registry,
            buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300, 1800),
        )


class _ErrorAndMetricsInterceptor(grpc.ServerInterceptor):
    """Checks who calls and whether they may (services/common/access.py), maps domain errors to status
    codes in one place, and counts every RPC. The verified caller is current_principal() inside the call."""

    def __init__(self, metrics: ServiceMetrics, access: AccessCheck) -> None:
        self._metrics = metrics
        self._access = access

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _finish(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.requests.labels(method, code.name).inc()
        self._metrics.latency.labels(method).observe(time.monotonic() - started)

    def _abort(self, context: grpc.ServicerContext, method: str, error: FaceflowError, started: float) -> None:
        code = status_for(error)
        self._finish(method, code, started)
        log.info("rpc failed", extra={"method": method, "code": code.name, "error": str(error)})
        context.abort(code, str(error))

    def _wrap_unary(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.monotonic()
            token = None
            try:
                token = acting_as(self._access.check(method, context.invocation_metadata()))
                response = behaviour(request, context)
            except FaceflowError as error:
                self._abort(context, method, error, started)
            except Exception:
                self._finish(method, grpc.StatusCode.INTERNAL, started)
                raise
            finally:
                if token is not None:
                    restore(token)
            self._finish(method, context.code() or grpc.StatusCode.OK, started)
            return response

        return wrapped

    def _wrap_stream(self, behaviour: Callable[..., Iterable[Any]], method: str) -> Callable[..., Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.monotonic()
            token = None
            try:
                token = acting_as(self._access.check(method, context.invocation_metadata()))
                yield from behaviour(request, context)
            except FaceflowError as error:
                self._abort(context, method, error, started)
            except Exception:
                self._finish(method, grpc.StatusCode.INTERNAL, started)
                raise
            finally:
                if token is not None:
                    restore(token)
            self._finish(method, context.code() or grpc.StatusCode.OK, started)

        return wrapped


@dataclass
class RunningService:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics_port: int
    name: str
    service_names: list[str]
    _metrics_server: Any = None
    _health_server: Any = None

    def set_serving(self) -> None:
        for service in ["", *self.service_names]:
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let running ones finish for up to grace_s, then close."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        if self._health_server is not None:
            self._health_server.stop(0)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()


def start_service(
    name: str,
    register: Callable[[grpc.Server], None],
    service_full_names: list[str],
    *,
    access: AccessCheck,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: int | None = 0,
    max_workers: int = 16,
    tls: TlsConfig | None = None,
    health_port: int = 0,
) -> RunningService:
    """Bind and start a server (port 0 = any free port); health stays NOT_SERVING until set_serving().
    Every call but gRPC health goes through `access` (there is no unauthenticated mode)."""
    metrics = ServiceMetrics()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
        interceptors=[_ErrorAndMetricsInterceptor(metrics, access)],
        options=CHANNEL_OPTIONS,
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    for full_name in service_full_names:
        health_servicer.set(full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*service_full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, tls.server_credentials()) if tls else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"{name}: cannot bind {host}:{port} (in use or not permitted)")
    server.start()
    health_server = None
    if tls is not None and health_port:
        # Kubernetes' gRPC probes speak plaintext only: health (nothing else) on its own port.
        health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        if health_server.add_insecure_port(f"{host}:{health_port}") == 0:
            raise OSError(f"{name}: cannot bind the health port {host}:{health_port}")
        health_server.start()
    metrics_server = None
    bound_metrics = -1
    if metrics_port is not None:
        metrics_server, _thread = start_http_server(metrics_port, addr=host, registry=metrics.registry)
        bound_metrics = metrics_server.server_port
    running = RunningService(
        server, bound, health_servicer, bound_metrics, name, service_full_names, metrics_server, health_server
    )
    log.info("listening", extra={"address": f"{host}:{bound}", "metrics_port": bound_metrics})
    return running


def run_until_signalled(
    running: RunningService,
    warmup: Callable[[], None],
    grace_s: float = 10.0,
    before_stop: Callable[[], None] = lambda: None,
) -> None:
    """Warm up, report SERVING, then block until SIGTERM/SIGINT and shut down gracefully (before_stop
    first: e.g. hand running jobs over to another replica)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    warmup()
    running.set_serving()
    log.info("serving", extra={"warmup_s": round(time.monotonic() - started, 3)})
    stop.wait()
    log.info("shutting down", extra={"grace_s": grace_s})
    before_stop()
    running.stop(grace_s)
    log.info("stopped")
