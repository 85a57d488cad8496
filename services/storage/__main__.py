"""python -m services.storage --port N --data-root DIR"""

from __future__ import annotations

import grpc
from faceflow.v1 import storage_pb2_grpc

from services.common.config import Settings
from services.common.service_main import ServiceParts, service_main
from services.storage.local import LocalStorage
from services.storage.server import SERVICE_NAME, StorageServicer


def build(settings: Settings) -> ServiceParts:
    backend = LocalStorage(settings.data_root)

    def register(server: grpc.Server) -> None:
        storage_pb2_grpc.add_StorageServiceServicer_to_server(StorageServicer(backend), server)

    return ServiceParts(register, [SERVICE_NAME], warm_up=lambda: None)


if __name__ == "__main__":
    service_main("storage", build)
