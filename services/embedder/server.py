"""gRPC EmbedderService over ArcFaceEmbedder."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc
from faceflow.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

from services.common.warm import WarmValue
from services.embedder.arcface import ArcFaceEmbedder, crops_from_bytes

SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["EmbedderService"].full_name


@dataclass(frozen=True)
class LoadedEmbedder:
    embedder: ArcFaceEmbedder
    info: common_pb2.ModelInfo


class EmbedderServicer(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(self, model: WarmValue[LoadedEmbedder]) -> None:
        self._model = model
        # One model call at a time: onnxruntime already uses every core for one batch, and
        # interleaving calls would only add memory and latency.
        self._lock = threading.Lock()

    def Embed(self, request: embedder_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedder_pb2.EmbedResponse:
        loaded = self._model.get()
        crops = crops_from_bytes(list(request.crops_bgr))
        with self._lock:
            vectors = loaded.embedder.embed(crops)
        return embedder_pb2.EmbedResponse(
            model_id=loaded.embedder.model_id,
            dim=loaded.embedder.dim,
            embeddings=[embedder_pb2.Embedding(values=v.tolist()) for v in vectors],
        )

    def GetEmbedderInfo(
        self, request: embedder_pb2.GetEmbedderInfoRequest, context: grpc.ServicerContext
    ) -> embedder_pb2.GetEmbedderInfoResponse:
        return embedder_pb2.GetEmbedderInfoResponse(model=self._model.get().info)
