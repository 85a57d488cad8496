"""Loading manifest models into backends, and describing them on the wire."""

from __future__ import annotations

from faceflow.v1 import common_pb2

from services.common.backends import InferenceBackend, OnnxBackend
from services.common.config import Settings
from services.common.model_manifest import ModelManifest, ModelSpec


def load_model(settings: Settings, name: str) -> tuple[ModelSpec, InferenceBackend]:
    """Find `name` in the model manifest and open it on the configured backend and device.

    onnx: the local file's sha256 is checked. triton: the file lives on the Triton server, which
    must serve the same sha256 (recorded in its config by deploy/triton/make_repo.py), so the
    model id stamped on every embedding stays true; the manifest is still read here for the
    pre- and post-processing facts.
    """
    spec = ModelManifest.load(settings.manifest_path).get(name)
    if settings.backend == "triton":
        from services.common.triton import TritonBackend  # lazy: onnx deployments need no tritonclient

        triton = TritonBackend(
            settings.triton_url,
            spec.name,
            name=spec.name,
            device=settings.device,
            expected_sha256=spec.sha256,
            output_names=[o.name for o in spec.outputs],
        )
        return spec, triton
    spec.verify(settings.model_dir)
    backend = OnnxBackend(
        settings.model_dir / spec.file,
        name=spec.name,
        device=settings.device,
        threads=settings.model_threads,
        spinning=settings.model_thread_spinning,
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
