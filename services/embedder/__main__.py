"""python -m services.embedder --port N"""

from __future__ import annotations

import grpc
from faceflow.v1 import embedder_pb2_grpc

from services.common.config import Settings
from services.common.models import load_model, model_info
from services.common.service_main import ServiceParts, service_main
from services.common.warm import WarmValue
from services.embedder.arcface import ArcFaceEmbedder
from services.embedder.server import SERVICE_NAME, EmbedderServicer, LoadedEmbedder

MODEL_NAME = "arcface_mbf"


def build(settings: Settings) -> ServiceParts:
    model: WarmValue[LoadedEmbedder] = WarmValue("the embedder model")

    def register(server: grpc.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(EmbedderServicer(model), server)

    def warm_up() -> None:
        spec, backend = load_model(settings, MODEL_NAME)
        embedder = ArcFaceEmbedder(backend, spec)
        embedder.warm_up()
        model.set(LoadedEmbedder(embedder, model_info(spec, backend)))

    return ServiceParts(register, [SERVICE_NAME], warm_up)


if __name__ == "__main__":
    service_main("embedder", build)
