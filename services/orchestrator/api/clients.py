"""Channels and stubs to the other services, created once per orchestrator process."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from faceflow.v1 import detector_pb2_grpc, embedder_pb2_grpc, storage_pb2_grpc, tracker_pb2_grpc

from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.errors import FailedPrecondition
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel
from services.orchestrator.run.segments import SEGMENT_S


@dataclass
class ServiceClients:
    """Stubs of the other services, one channel each. Detector and embedder may stand for several
    replicas (a comma-separated IP:port list, or one name that resolves to every pod): their channel
    balances calls over them and retries on another when one is gone (services/common/retry.py)."""

    detector: detector_pb2_grpc.DetectorServiceStub
    embedder: embedder_pb2_grpc.EmbedderServiceStub
    tracker: tracker_pb2_grpc.TrackerServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    channels: list[grpc.Channel]
    # Addresses listed (a balanced name counts as one: set segment_parallelism for it).
    detector_replicas: int = 1
    embedder_replicas: int = 1
    # Segments of one episode in flight; 0 = one per listed detector address.
    segment_parallelism: int = 0
    segment_s: float = SEGMENT_S  # Settings.segment_s

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
        channels = {name: open_channel(addr, tls, CHANNEL_OPTIONS, credentials) for name, addr in addresses.items()}
        return cls(
            detector=detector_pb2_grpc.DetectorServiceStub(channels["detector"]),
            embedder=embedder_pb2_grpc.EmbedderServiceStub(channels["embedder"]),
            tracker=tracker_pb2_grpc.TrackerServiceStub(channels["tracker"]),
            storage=storage_pb2_grpc.StorageServiceStub(channels["storage"]),
            channels=list(channels.values()),
            detector_replicas=_count(settings.detector_addr),
            embedder_replicas=_count(settings.embedder_addr),
            segment_parallelism=settings.segment_parallelism,
            segment_s=settings.segment_s,
        )

    @property
    def segment_workers(self) -> int:
        return self.segment_parallelism or self.detector_replicas

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def _count(addresses: str) -> int:
    return len([a for a in addresses.split(",") if a.strip()])
