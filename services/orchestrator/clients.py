"""Channels and stubs to the other services, created once per orchestrator process."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from faceflow.v1 import detector_pb2_grpc, embedder_pb2_grpc, storage_pb2_grpc, tracker_pb2_grpc

from services.common.config import Settings
from services.common.errors import FailedPrecondition
from services.common.server import CHANNEL_OPTIONS


@dataclass
class ServiceClients:
    detector: detector_pb2_grpc.DetectorServiceStub
    embedder: embedder_pb2_grpc.EmbedderServiceStub
    tracker: tracker_pb2_grpc.TrackerServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    channels: list[grpc.Channel]

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
        channels = {
            name: grpc.insecure_channel(address, options=CHANNEL_OPTIONS) for name, address in addresses.items()
        }
        return cls(
            detector=detector_pb2_grpc.DetectorServiceStub(channels["detector"]),
            embedder=embedder_pb2_grpc.EmbedderServiceStub(channels["embedder"]),
            tracker=tracker_pb2_grpc.TrackerServiceStub(channels["tracker"]),
            storage=storage_pb2_grpc.StorageServiceStub(channels["storage"]),
            channels=list(channels.values()),
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
