"""EmbedderService over real gRPC with the real ArcFace-style model."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
from faceflow.v1 import detector_pb2, embedder_pb2

from services.common.config import Settings
from services.common.model_manifest import ModelManifest
from tests.contract.helpers import expect_status


def _crop(stubs: dict, path: Path) -> bytes:
    faces = stubs["detector"].Detect(detector_pb2.DetectRequest(image=path.read_bytes(), include_crops=True)).faces
    assert len(faces) == 1, path
    return faces[0].aligned_crop_bgr


def test_same_person_is_closer_than_different_people(stubs: dict, media: Path, settings: Settings) -> None:
    crops = [_crop(stubs, media / name) for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")]
    response = stubs["embedder"].Embed(embedder_pb2.EmbedRequest(crops_bgr=crops))
    vectors = np.array([e.values for e in response.embeddings])
    assert vectors.shape == (4, 512) and response.dim == 512
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    spec = ModelManifest.load(settings.manifest_path).get("arcface_mbf")
    assert response.model_id == spec.model_id
    similarity = vectors @ vectors.T
    same = [similarity[0, 1], similarity[0, 2], similarity[1, 2]]
    different = similarity[:3, 3]
    assert min(same) > 0.4, same
    assert max(different) < min(same), (same, different)


def test_batch_equals_single_calls(stubs: dict, media: Path) -> None:
    crops = [_crop(stubs, media / name) for name in ("obama.jpg", "biden.jpg")]
    batch = stubs["embedder"].Embed(embedder_pb2.EmbedRequest(crops_bgr=crops)).embeddings
    for crop, vector in zip(crops, batch, strict=True):
        single = stubs["embedder"].Embed(embedder_pb2.EmbedRequest(crops_bgr=[crop])).embeddings[0]
        np.testing.assert_allclose(single.values, vector.values, atol=1e-4)


def test_wrong_crop_size_is_invalid(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["embedder"].Embed(embedder_pb2.EmbedRequest(crops_bgr=[b"\0" * 100])),
        "crop 0",
        "37632",
    )


def test_info_names_the_model(stubs: dict) -> None:
    info = stubs["embedder"].GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest()).model
    assert info.name == "arcface_mbf" and info.output_dim == 512 and info.device == "cpu" and info.backend == "onnx"
