"""python -m services.storage --port N --data-root DIR   (FACEFLOW_STORAGE_BACKEND=local|s3)"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from faceflow.v1 import storage_pb2_grpc

from services.common.config import Settings
from services.common.service_main import ServiceParts, service_main
from services.storage.audit import audit_line
from services.storage.backend import StorageBackend, UploadLimits
from services.storage.file_server import FileServer, UrlSigner
from services.storage.local import LocalStorage
from services.storage.server import SERVICE_NAME, StorageServicer

log = logging.getLogger(__name__)


def make_backend(settings: Settings) -> StorageBackend:
    # FACEFLOW_MAX_UPLOAD_BYTES / FACEFLOW_UPLOAD_HEADROOM_BYTES: CheckUploadCapacity and StageUpload.
    limits = UploadLimits.from_settings(settings)
    if settings.storage_backend == "s3":
        from services.storage.s3 import S3Settings, S3Storage  # lazy: boto3 only when S3 is used

        s3 = S3Storage(S3Settings.from_settings(settings), limits=limits)
        s3.ensure_bucket()
        return s3
    key = settings.url_signing_key  # FACEFLOW_URL_SIGNING_KEY: shared by replicas; per process otherwise
    signer = UrlSigner(key.encode()) if key else UrlSigner()
    local = LocalStorage(settings.data_root, signer, limits=limits)
    # Crop URLs of the local backend are served, signed and read-only, by this process.
    server = FileServer(signer, local.open_url_path, host=settings.host).start()
    local.base_url = server.base_url
    return local


# A staged upload is adopted by CreateEpisode seconds after its last byte; one untouched for 6 h
# belongs to a client that went away (a cancelled upload can race past the server's checks), and
# a long upload keeps touching its file. Swept at start and every hour.
STAGED_UPLOAD_TTL_S = 6 * 3600.0
SWEEP_INTERVAL_S = 3600.0


def sweep_staging_forever(backend: StorageBackend, interval_s: float = SWEEP_INTERVAL_S) -> threading.Thread:
    def loop() -> None:
        while True:
            try:
                swept = backend.sweep_staging(STAGED_UPLOAD_TTL_S)
                if swept:  # an audit line only when something went: the sweep runs every hour
                    audit_line("sweep_staging", older_than_s=STAGED_UPLOAD_TTL_S, uploads_removed=swept)
            except Exception as error:  # a failed sweep is retried next time; serving goes on
                log.warning("staging sweep failed", extra={"error": str(error)})
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="staging-sweep", daemon=True)
    thread.start()
    return thread


def build(settings: Settings) -> ServiceParts:
    backend = make_backend(settings)

    def register(server: grpc.Server) -> None:
        storage_pb2_grpc.add_StorageServiceServicer_to_server(StorageServicer(backend), server)

    def warm_up() -> None:
        sweep_staging_forever(backend)

    return ServiceParts(register, [SERVICE_NAME], warm_up=warm_up)


if __name__ == "__main__":
    service_main("storage", build)
