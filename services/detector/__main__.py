"""python -m services.detector --port N"""

from __future__ import annotations

import grpc
import numpy as np
from faceflow.v1 import detector_pb2_grpc

from services.common.config import Settings
from services.common.models import load_model, model_info
from services.common.service_main import ServiceParts, service_main
from services.common.warm import WarmValue
from services.detector.retinaface import MODEL_NAME, RetinaFaceDetector, RetinaFaceSettings
from services.detector.server import SERVICE_NAME, DetectorServicer, LoadedDetector
from services.detector.sources import VideoSources


def build(settings: Settings) -> ServiceParts:
    model: WarmValue[LoadedDetector] = WarmValue("the detector model")

    def register(server: grpc.Server) -> None:
        servicer = DetectorServicer(model, VideoSources.from_settings(settings))
        detector_pb2_grpc.add_DetectorServiceServicer_to_server(servicer, server)

    def warm_up() -> None:
        spec, backend = load_model(settings, MODEL_NAME)
        detector = RetinaFaceDetector(backend, RetinaFaceSettings(), spec)
        # Loads kernels and checks outputs at the two input sizes of 720p runs (native, and the
        # reduced one of adaptive sampling): the first call at a new size is ~10x slower.
        detector.detect_batch([np.zeros((720, 1280, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)])
        model.set(LoadedDetector(backend, detector, model_info(spec, backend)))

    return ServiceParts(register, [SERVICE_NAME], warm_up)


if __name__ == "__main__":
    service_main("detector", build)
