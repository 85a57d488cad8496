"""Loading manifest models into backends, and describing them on the wire."""

from __future__ import annotations

from faceflow.v1 import common_pb2

from services.common.backends import InferenceBackend, OnnxBackend
from services.common.config import Settings
from services.common.model_manifest import ModelManifest, ModelSpec


def load_model(settings: Settings, name: str) -> tuple[ModelSpec, InferenceBackend]:
    """Find `name` in the model manifest, check the file's sha256, and open it on the configured device."""
    spec = ModelManifest.load(settings.manifest_path).get(name)
    spec.verify(settings.model_dir)
    backend = OnnxBackend(
        settings.model_dir / spec.file, name=spec.name, device=settings.device, threads=settings.model_threads
    )
    return spec, backend


def model_info(spec: ModelSpec, backend: InferenceBackend) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        name=spec.name,
        model_id=spec.model_id,
        sha256=spec.sha256,
        backend=type(backend).__name__.removesuffix("Backend").lower(),
        device=backend.device,
        output_dim=spec.output_dim or 0,
    )
