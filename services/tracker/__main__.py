"""python -m services.tracker --port N"""

from __future__ import annotations

import grpc
from faceflow.v1 import tracker_pb2_grpc

from services.common.config import Settings
from services.common.service_main import ServiceParts, service_main
from services.tracker.server import SERVICE_NAME, TrackerServicer


def build(settings: Settings) -> ServiceParts:
    def register(server: grpc.Server) -> None:
        tracker_pb2_grpc.add_TrackerServiceServicer_to_server(TrackerServicer(), server)

    return ServiceParts(register, [SERVICE_NAME], warm_up=lambda: None)


if __name__ == "__main__":
    service_main("tracker", build)
