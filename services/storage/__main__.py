"""python -m services.storage --port N --data-root DIR   (FACEFLOW_STORAGE_BACKEND=local|s3)"""

from __future__ import annotations

import os

import grpc
from faceflow.v1 import storage_pb2_grpc

from services.common.config import Settings
from services.common.service_main import ServiceParts, service_main
from services.storage.backend import StorageBackend
from services.storage.file_server import FileServer, UrlSigner
from services.storage.local import LocalStorage
from services.storage.server import SERVICE_NAME, StorageServicer


def make_backend(settings: Settings) -> StorageBackend:
    if settings.storage_backend == "s3":
        from services.storage.s3 import S3Settings, S3Storage  # lazy: boto3 only when S3 is used

        s3 = S3Storage(S3Settings.from_env(local_cache_dir=settings.data_root))
        s3.ensure_bucket()
        return s3
    key = os.environ.get("FACEFLOW_URL_SIGNING_KEY")  # shared by replicas; per process otherwise
    signer = UrlSigner(key.encode()) if key else UrlSigner()
    local = LocalStorage(settings.data_root, signer)
    # Crop URLs of the local backend are served, signed and read-only, by this process.
    server = FileServer(signer, local.resolve_url_path, host=settings.host).start()
    local.base_url = server.base_url
    return local


def build(settings: Settings) -> ServiceParts:
    backend = make_backend(settings)

    def register(server: grpc.Server) -> None:
        storage_pb2_grpc.add_StorageServiceServicer_to_server(StorageServicer(backend), server)

    return ServiceParts(register, [SERVICE_NAME], warm_up=lambda: None)


if __name__ == "__main__":
    service_main("storage", build)
