"""TritonBackend against a real tritonserver: same results as onnxruntime in-process, clear failures.

Tolerances (docs/triton.md): both sides run the same ONNX file with onnxruntime on CPU, so the
only differences are thread-count-dependent float summation order; measured max |score diff| and
min cosine are printed (pytest -s) and bounded far below anything a threshold could notice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from faceflow.v1 import detector_pb2, detector_pb2_grpc, embedder_pb2, embedder_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.alignment import align_faces
from services.common.backends import OnnxBackend
from services.common.config import Settings
from services.common.detections import Detections
from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.common.model_manifest import ModelManifest, ModelSpec
from services.common.triton import MAX_MESSAGE_BYTES, TritonBackend
from services.detector.retinaface import RetinaFaceDetector, RetinaFaceSettings
from services.embedder.arcface import ArcFaceEmbedder
from tests.triton.conftest import TEST_MAX_BATCH, TritonServer, free_port

pytestmark = pytest.mark.e2e

DETECTOR = "retinaface_mnet025"
EMBEDDER = "arcface_mbf"
MIN_COSINE = 0.9999
MIN_BOX_IOU = 0.99
MAX_SCORE_DIFF = 1e-4
FACE_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "single_face.jpg", "multi_face.jpg", "t1.jpg")


def _spec(settings: Settings, name: str) -> ModelSpec:
    return ModelManifest.load(settings.manifest_path).get(name)


def _onnx(settings: Settings, name: str) -> OnnxBackend:
    return OnnxBackend(settings.model_dir / _spec(settings, name).file, name=name, threads=2)


def _triton(server: TritonServer, settings: Settings, name: str) -> TritonBackend:
    spec = _spec(settings, name)
    return TritonBackend(
        server.grpc_url,
        name,
        name=name,
        timeout_s=30,
        expected_sha256=spec.sha256,
        output_names=[o.name for o in spec.outputs],
    )


@pytest.fixture(scope="module")
def detectors(triton_server: TritonServer, triton_settings: Settings) -> Iterator[dict[str, RetinaFaceDetector]]:
    triton = _triton(triton_server, triton_settings, DETECTOR)
    spec = ModelManifest.load(triton_settings.manifest_path).get(DETECTOR)
    yield {
        "onnx": RetinaFaceDetector(_onnx(triton_settings, DETECTOR), RetinaFaceSettings(), spec),
        "triton": RetinaFaceDetector(triton, RetinaFaceSettings(), spec),
    }
    triton.close()


@pytest.fixture(scope="module")
def embedder_backends(triton_server: TritonServer, triton_settings: Settings) -> Iterator[dict[str, object]]:
    triton = _triton(triton_server, triton_settings, EMBEDDER)
    yield {"onnx": _onnx(triton_settings, EMBEDDER), "triton": triton}
    triton.close()


def _image(media: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(media / name))
    if image is None:
        pytest.fail(f"{media / name} missing or unreadable: run `make media`")
    return image


def _frame(media: Path, name: str, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(media / name))
    try:
        frame = None
        for _ in range(index + 1):  # sequential read: exact frame on every codec
            ok, frame = capture.read()
            if not ok:
                pytest.fail(f"{media / name} has fewer than {index + 1} frames or is unreadable: run `make media`")
    finally:
        capture.release()
    assert frame is not None
    return frame


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _compare(label: str, ref: Detections, got: Detections) -> tuple[float, float]:
    """Same faces: one-to-one by best IoU. Returns (min IoU, max score diff)."""
    assert len(got.scores) == len(ref.scores), f"{label}: onnx found {len(ref.scores)}, triton {len(got.scores)}"
    min_iou, max_diff = 1.0, 0.0
    unused = set(range(len(got.scores)))
    for i in range(len(ref.scores)):
        j = max(unused, key=lambda k: _iou(ref.xyxy[i], got.xyxy[k]))
        unused.remove(j)
        iou, diff = _iou(ref.xyxy[i], got.xyxy[j]), abs(float(ref.scores[i]) - float(got.scores[j]))
        assert iou >= MIN_BOX_IOU, f"{label}: face {i} IoU {iou:.5f} < {MIN_BOX_IOU}"
        assert diff <= MAX_SCORE_DIFF, f"{label}: face {i} score diff {diff:.2e} > {MAX_SCORE_DIFF}"
        assert bool(ref.confident[i]) == bool(got.confident[j]), f"{label}: face {i} confidence flag differs"
        min_iou, max_diff = min(min_iou, iou), max(max_diff, diff)
    return min_iou, max_diff


def test_detections_match_onnx(detectors: dict[str, RetinaFaceDetector], media: Path) -> None:
    frames = {
        "multi_face.jpg": _image(media, "multi_face.jpg"),
        "t1.jpg": _image(media, "t1.jpg"),
        "bigbuckbunny.mp4#60 (1280x720)": _frame(media, "bigbuckbunny.mp4", 60),
        "WolfgangLanger_Pexels.mp4#100": _frame(media, "WolfgangLanger_Pexels.mp4", 100),
    }
    assert frames["bigbuckbunny.mp4#60 (1280x720)"].shape == (720, 1280, 3)
    total = 0
    for label, frame in frames.items():
        # Candidates too: weak boxes near the thresholds are the most sensitive to numeric drift.
        ref = detectors["onnx"].detect_batch([frame], include_candidates=True)[0]
        got = detectors["triton"].detect_batch([frame], include_candidates=True)[0]
        min_iou, max_diff = _compare(label, ref, got)
        total += len(ref.scores)
        print(f"{label}: {len(ref.scores)} faces, min IoU {min_iou:.6f}, max score diff {max_diff:.2e}")
    assert total >= 8, f"only {total} faces in the comparison frames: the media changed?"


def test_detector_batch_over_the_message_limit_is_split(detectors: dict[str, RetinaFaceDetector], media: Path) -> None:
    """Eight 1280x720 frames are 88 MB of float32, over the 64 MiB gRPC limit: sent in two requests."""
    frames = [_frame(media, "bigbuckbunny.mp4", 60), _frame(media, "bigbuckbunny.mp4", 61)] * 4
    assert MAX_MESSAGE_BYTES < 8 * 3 * 720 * 1280 * 4
    refs = detectors["onnx"].detect_batch(frames, include_candidates=True)
    gots = detectors["triton"].detect_batch(frames, include_candidates=True)
    for index, (ref, got) in enumerate(zip(refs, gots, strict=True)):
        _compare(f"frame {index} of 8", ref, got)


def _aligned_crops(detector: RetinaFaceDetector, media: Path) -> np.ndarray:
    crops = []
    for name in FACE_PHOTOS:
        image = _image(media, name)
        crops.append(align_faces(image, detector.detect(image)))
    return np.concatenate(crops)


def test_embeddings_match_onnx(
    detectors: dict[str, RetinaFaceDetector],
    embedder_backends: dict[str, object],
    triton_settings: Settings,
    media: Path,
) -> None:
    spec = _spec(triton_settings, EMBEDDER)
    crops = _aligned_crops(detectors["onnx"], media)
    assert len(crops) > TEST_MAX_BATCH[EMBEDDER], "need more crops than the max batch to exercise splitting"
    ref = ArcFaceEmbedder(embedder_backends["onnx"], spec).embed(crops)  # type: ignore[arg-type]
    got = ArcFaceEmbedder(embedder_backends["triton"], spec).embed(crops)  # type: ignore[arg-type]
    cosines = np.sum(ref * got, axis=1)
    print(f"{len(crops)} aligned crops: min cosine {cosines.min():.8f}, max |diff| {np.abs(ref - got).max():.2e}")
    assert cosines.min() >= MIN_COSINE, f"cosines {np.round(cosines, 6).tolist()}"


def test_batch_larger_than_max_batch_is_split(
    triton_server: TritonServer, embedder_backends: dict[str, object]
) -> None:
    triton = embedder_backends["triton"]
    assert isinstance(triton, TritonBackend) and triton.max_batch_size == TEST_MAX_BATCH[EMBEDDER]
    batch = np.random.default_rng(0).normal(0, 1, (2 * triton.max_batch_size + 3, 3, 112, 112)).astype(np.float32)
    client = tgrpc.InferenceServerClient(triton_server.grpc_url)
    try:
        before = client.get_inference_statistics(EMBEDDER).model_stats[0]
        (got,) = triton.infer(batch)
        # Triton records statistics just after it sends the response: wait for the last chunk's.
        deadline = time.monotonic() + 10
        while True:
            after = client.get_inference_statistics(EMBEDDER).model_stats[0]
            if after.inference_count - before.inference_count >= len(batch) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        client.close()
    (ref,) = embedder_backends["onnx"].infer(batch)  # type: ignore[attr-defined]
    assert got.shape == ref.shape == (len(batch), 512)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    assert after.inference_count - before.inference_count == len(batch)
    assert after.inference_stats.success.count - before.inference_stats.success.count == 3  # 8 + 8 + 3


def test_unreachable_server_is_unavailable_within_deadline() -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        TritonBackend(url, EMBEDDER, timeout_s=2)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * 3, f"took {elapsed:.1f} s"
    # The channel retries inside the call's deadline: what ends it is the retries or the deadline.
    message = str(caught.value)
    assert url in message and ("unreachable" in message or "deadline" in message), message


def test_missing_model_is_named(triton_server: TritonServer) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        TritonBackend(triton_server.grpc_url, "no_such_model", timeout_s=5)
    message = str(caught.value)
    assert f"Triton at {triton_server.grpc_url} has no model 'no_such_model'" in message
    assert EMBEDDER in message and DETECTOR in message


def test_different_model_file_is_refused(triton_server: TritonServer) -> None:
    with pytest.raises(FailedPrecondition, match="sha256"):
        TritonBackend(triton_server.grpc_url, EMBEDDER, expected_sha256="0" * 64)


def test_backend_settings_are_validated() -> None:
    assert Settings.from_env({}, backend="triton", triton_url="triton:8001").backend == "triton"
    with pytest.raises(InvalidArgument, match="FACEFLOW_TRITON_URL"):
        Settings.from_env({"FACEFLOW_BACKEND": "triton"})
    with pytest.raises(InvalidArgument, match="backend must be one of"):
        Settings.from_env({"FACEFLOW_BACKEND": "tensorflow"})
    with pytest.raises(InvalidArgument, match="without a scheme"):
        Settings.from_env({"FACEFLOW_TRITON_URL": "http://triton:8000"})


SERVICES = {
    "detector": ("faceflow.v1.DetectorService", DETECTOR),
    "embedder": ("faceflow.v1.EmbedderService", EMBEDDER),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_serves_with_triton_backend(
    service: str, triton_server: TritonServer, triton_settings: Settings, media: Path, tmp_path: Path
) -> None:
    """The real service process, configured only by FACEFLOW_BACKEND / FACEFLOW_TRITON_URL."""
    full_name, model = SERVICES[service]
    port_file = tmp_path / f"{service}.port"
    from services.common.auth import ClientCredentials
    from services.common.local_issuer import LocalIssuer

    issuer = LocalIssuer.at(tmp_path).ensure()
    env = dict(os.environ, FACEFLOW_BACKEND="triton", FACEFLOW_TRITON_URL=triton_server.grpc_url)
    env.update(issuer.service_env())  # a service never starts without credentials configured
    env["FACEFLOW_CACHE_DIR"] = str(triton_settings.cache_dir)
    command = [sys.executable, "-m", f"services.{service}", "--port", "0", "--port-file", str(port_file)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None, process.communicate()[0].decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"{service} wrote no port file within 60 s"
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        service_caller = ClientCredentials(service_token=issuer.service_token())
        with service_caller.intercept(grpc.insecure_channel(f"127.0.0.1:{port}")) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health_pb2.HealthCheckResponse.UNKNOWN
            while status != health_pb2.HealthCheckResponse.SERVING:
                assert process.poll() is None, process.communicate()[0].decode(errors="replace")[-3000:]
                assert time.monotonic() < deadline, f"{service} not SERVING within 60 s"
                status = health.Check(health_pb2.HealthCheckRequest(service=full_name), timeout=5).status
                time.sleep(0.1)
            if service == "detector":
                stub = detector_pb2_grpc.DetectorServiceStub(channel)
                info = stub.GetModelInfo(detector_pb2.GetModelInfoRequest(), timeout=10).model
                image = (media / "multi_face.jpg").read_bytes()
                faces = stub.Detect(detector_pb2.DetectRequest(image=image), timeout=30).faces
                assert len(faces) == 5
            else:
                estub = embedder_pb2_grpc.EmbedderServiceStub(channel)
                info = estub.GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest(), timeout=10).model
            assert (info.name, info.backend, info.device) == (model, "triton", "cpu")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_failures_become_domain_errors_and_are_not_retried_by_hand(embedder_backends: dict[str, object]) -> None:
    """Retries are the channel's (tests/unit/test_retry.py); `_call` passes the deadline once and
    translates what is left."""
    from tritonclient.utils import InferenceServerException

    triton = embedder_backends["triton"]
    assert isinstance(triton, TritonBackend)
    attempts: list[float] = []

    def flaky(failures: int, status: str) -> object:
        def call(deadline_s: float) -> str:
            attempts.append(deadline_s)
            if len(attempts) <= failures:
                raise InferenceServerException(
                    msg="batch-size too large" if "INVALID" in status else "reset", status=status
                )
            return "ok"

        return call

    assert triton._call("infer", flaky(0, "StatusCode.UNAVAILABLE")) == "ok"  # type: ignore[arg-type]
    assert attempts == [30]  # the per-call deadline
    attempts.clear()
    with pytest.raises(Unavailable, match="unreachable after 5 attempts"):
        triton._call("infer", flaky(1, "StatusCode.UNAVAILABLE"))  # type: ignore[arg-type]
    assert len(attempts) == 1
    attempts.clear()
    with pytest.raises(Unavailable, match="deadline"):
        triton._call("infer", flaky(1, "StatusCode.DEADLINE_EXCEEDED"))  # type: ignore[arg-type]
    assert len(attempts) == 1  # a timed-out inference is not re-sent: the server may still be running it
    attempts.clear()
    with pytest.raises(InvalidArgument, match="batch-size"):
        triton._call("infer", flaky(1, "StatusCode.INVALID_ARGUMENT"))  # type: ignore[arg-type]
