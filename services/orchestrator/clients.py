"""Channels and stubs to the other services, created once per orchestrator process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from faceflow.v1 import detector_pb2_grpc, embedder_pb2_grpc, storage_pb2_grpc, tracker_pb2_grpc

from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.errors import FailedPrecondition, Unavailable
from services.common.grpc_errors import translate_rpc_errors
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel
from services.orchestrator.segments import SEGMENT_S

S = TypeVar("S")
R = TypeVar("R")


@dataclass
class ServiceClients:
    """Stubs of the other services. Detector and embedder may be several replicas (a comma-separated
    address list): `detector`/`embedder` are the first, `detectors`/`embedders` all of them."""

    detector: detector_pb2_grpc.DetectorServiceStub
    embedder: embedder_pb2_grpc.EmbedderServiceStub
    tracker: tracker_pb2_grpc.TrackerServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    channels: list[grpc.Channel]
    detectors: list[detector_pb2_grpc.DetectorServiceStub] = field(default_factory=list)
    embedders: list[embedder_pb2_grpc.EmbedderServiceStub] = field(default_factory=list)
    # Segments of one episode in flight; 0 = one per detector stub.
    segment_parallelism: int = 0
    segment_s: float = SEGMENT_S  # Settings.segment_s

    def __post_init__(self) -> None:
        self.detectors = self.detectors or [self.detector]
        self.embedders = self.embedders or [self.embedder]

    @classmethod
    def connect(cls, settings: Settings) -> ServiceClients:
        addresses = {
            "detector": settings.detector_addr,
            "embedder": settings.embedder_addr,
            "tracker": settings.tracker_addr,
            "storage": settings.storage_addr,
        }
        missing = [name for name, address in addresses.items() if not address]
        if missing:
            raise FailedPrecondition(
                "the orchestrator needs the address of every service; missing: "
                + ", ".join(f"--{name}-addr (FACEFLOW_{name.upper()}_ADDR)" for name in missing)
            )
        tls = TlsConfig.from_settings(settings)
        credentials = ClientCredentials.for_service(settings)

        def open_all(address_list: str) -> list[grpc.Channel]:
            # "a:1,b:2" is a list of replicas; "dns:///detector-headless:50051" one balanced channel.
            options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
            return [open_channel(a.strip(), tls, options, credentials) for a in address_list.split(",") if a.strip()]

        detector_channels = open_all(addresses["detector"])
        embedder_channels = open_all(addresses["embedder"])
        tracker = open_channel(addresses["tracker"], tls, CHANNEL_OPTIONS, credentials)
        storage = open_channel(addresses["storage"], tls, CHANNEL_OPTIONS, credentials)
        detectors = [detector_pb2_grpc.DetectorServiceStub(c) for c in detector_channels]
        embedders = [embedder_pb2_grpc.EmbedderServiceStub(c) for c in embedder_channels]
        return cls(
            detector=detectors[0],
            embedder=embedders[0],
            tracker=tracker_pb2_grpc.TrackerServiceStub(tracker),
            storage=storage_pb2_grpc.StorageServiceStub(storage),
            channels=[*detector_channels, *embedder_channels, tracker, storage],
            detectors=detectors,
            embedders=embedders,
            segment_parallelism=settings.segment_parallelism,
            segment_s=settings.segment_s,
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def call_any(stubs: Sequence[S], service: str, call: Callable[[S], R]) -> R:
    """Call the first replica that answers: a lost replica is skipped, other errors are final."""
    for attempt, stub in enumerate(stubs):
        try:
            with translate_rpc_errors(service):
                return call(stub)
        except Unavailable:
            if attempt == len(stubs) - 1:
                raise
    raise Unavailable(f"no {service} endpoint is configured")
