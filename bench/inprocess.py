"""The four backend services in this process, behind a ServiceClients.

Why: to measure what the microservice split costs, the same pipeline (run_episode) must run with
and without gRPC. inprocess_clients() builds each servicer exactly as `python -m services.<name>`
does (its `build()` and warm-up), captures the method handlers the generated
`add_*Servicer_to_server` registers, and exposes them as stub-like objects that call the servicer
methods directly: request and response messages are passed as Python objects, never serialised,
and no socket or gRPC thread pool is involved.

Streaming calls return an iterator with `cancel()`, like a gRPC call object, because
detect_track.py cancels its DetectVideo and Track calls.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from services.common.config import Settings
from services.common.service_main import ServiceParts
from services.orchestrator.api.clients import ServiceClients

SERVICES = ("detector", "embedder", "tracker", "storage")


class InProcessAbort(Exception):
    """Raised by FakeContext.abort: a servicer gave up on the call (over gRPC: a status code)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """The minimum of grpc.ServicerContext the servicers use: is_active() until cancelled, abort()."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def is_active(self) -> bool:
        return not self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise InProcessAbort(code, details)

    def code(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "inprocess"


class StreamCall:
    """A server-streaming response as the caller sees it: an iterator that can be cancelled."""

    def __init__(self, responses: Iterator[Any], context: FakeContext) -> None:
        self._responses = responses
        self._context = context

    def __iter__(self) -> StreamCall:
        return self

    def __next__(self) -> Any:
        return next(self._responses)

    def cancel(self) -> bool:
        """Mark the call inactive and run the servicer's `finally` blocks (the caller's thread only)."""
        self._context.cancel()
        close = getattr(self._responses, "close", None)
        if close is not None:
            # A generator running in another thread cannot be closed: is_active() stops it instead.
            with contextlib.suppress(ValueError):
                close()
        return True


def _call(behaviour: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
    def invoke(request: Any, timeout: float | None = None, metadata: Any = None, **_: Any) -> Any:
        context = FakeContext()
        result = behaviour(request, context)
        return StreamCall(iter(result), context) if streaming_response else result

    return invoke


class InProcessStub:
    """One service's methods by name, each calling the servicer directly with a FakeContext."""

    def __init__(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service_name = service_name
        self.methods = sorted(handlers)
        for method, handler in handlers.items():
            behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
            setattr(self, method, _call(behaviour, bool(handler.response_streaming)))


@dataclass
class _CapturingServer:
    """Stands in for grpc.Server during `register()`: keeps the handlers, serves nothing."""

    handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = field(default_factory=dict)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the registered handlers below carry the same behaviours, already split by method

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers[service_name] = handlers


def _build(name: str) -> Callable[[Settings], ServiceParts]:
    # Imported here so that importing this module does not load onnxruntime or the models.
    if name == "detector":
        from services.detector.__main__ import build
    elif name == "embedder":
        from services.embedder.__main__ import build
    elif name == "tracker":
        from services.tracker.__main__ import build
    elif name == "storage":
        from services.storage.__main__ import build
    else:
        raise ValueError(f"unknown service {name!r}")
    return build


def build_stub(name: str, settings: Settings) -> InProcessStub:
    """Build service `name` as its __main__ does, run its warm-up, and return a stub over it."""
    parts = _build(name)(settings)
    server = _CapturingServer()
    parts.register(server)  # type: ignore[arg-type]
    parts.warm_up()  # loads and checks the model, then sets the WarmValue the servicer reads
    if len(server.handlers) != 1:
        raise RuntimeError(f"{name} registered {sorted(server.handlers)}; expected exactly one service")
    ((service_name, handlers),) = server.handlers.items()
    return InProcessStub(service_name, handlers)


def build_detector_stub(settings: Settings, detector_settings: Any) -> InProcessStub:
    """The detector service with non-default RetinaFaceSettings (e.g. max_side), for experiments.

    Mirrors services/detector/__main__.py's warm-up; only the settings object differs.
    """
    import numpy as np
    from faceflow.v1 import detector_pb2_grpc

    from services.common.models import load_model, model_info
    from services.common.warm import WarmValue
    from services.detector.__main__ import MODEL_NAME
    from services.detector.retinaface import RetinaFaceDetector
    from services.detector.server import DetectorServicer, LoadedDetector
    from services.detector.sources import VideoSources

    model: WarmValue[LoadedDetector] = WarmValue("the detector model")
    spec, backend = load_model(settings, MODEL_NAME)
    detector = RetinaFaceDetector(backend, detector_settings, spec)
    detector.detect_batch([np.zeros((360, 640, 3), np.uint8)] * 2)
    model.set(LoadedDetector(backend, detector, model_info(spec, backend)))
    server = _CapturingServer()
    sources = VideoSources.from_settings(settings)
    detector_pb2_grpc.add_DetectorServiceServicer_to_server(DetectorServicer(model, sources), server)  # type: ignore[arg-type]
    ((service_name, handlers),) = server.handlers.items()
    return InProcessStub(service_name, handlers)


def inprocess_clients(
    data_root: Path | None = None, settings: Settings | None = None, detector_settings: Any = None
) -> ServiceClients:
    """Every backend service in this process, as a ServiceClients whose stubs call servicers directly.

    Settings come from FACEFLOW_* like the real services; detector_settings (a RetinaFaceSettings)
    replaces the detector's defaults, for experiments. A real ServiceClients (not a look-alike) so
    the pipeline sees exactly the attributes it sees in production.
    """
    if settings is None:
        settings = Settings.from_env(data_root=str(data_root) if data_root is not None else None)
    # In one process there is no remote caller: the bench opens its own files wherever they are.
    settings = replace(settings, allow_local_sources=True)
    stubs = {
        name: build_detector_stub(settings, detector_settings)
        if name == "detector" and detector_settings is not None
        else build_stub(name, settings)
        for name in SERVICES
    }
    return ServiceClients(
        detector=stubs["detector"],
        embedder=stubs["embedder"],
        tracker=stubs["tracker"],
        storage=stubs["storage"],
        channels=[],
    )
