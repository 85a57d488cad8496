"""Each stage alone, on the sample episode: what the overlapped pipeline hides and what batching buys.

The pipeline's manifest only times the overlapped stream (decode+detect+track+embed together) and
the embed calls; here every stage runs by itself, single-threaded in Python around the same code
the services run, so their sum can be compared with the pipeline's wall time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, embedder_pb2

from services.common.alignment import align_faces
from services.common.config import Settings
from services.common.models import load_model
from services.detector.retinaface import RetinaFaceDetector, RetinaFaceSettings
from services.detector.server import faces_to_proto
from services.detector.shots import ShotCutDetector
from services.embedder.arcface import ArcFaceEmbedder
from services.tracker.bytetrack import ByteTracker, ByteTrackSettings

# Frames the model stages are timed on: enough for a stable per-frame cost, few enough that the
# stage bench takes well under a minute on two busy cores. Taken evenly over the whole episode.
MODEL_FRAMES = 48
MAX_SIDES = (1280, 960, 640)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _one_by_one(detector: RetinaFaceDetector, frames: list[np.ndarray]) -> list[Any]:
    return [detector.detect_batch([f], include_candidates=True) for f in frames]


def _embed_in_batches(embedder: ArcFaceEmbedder, crops: np.ndarray, batch: int) -> list[np.ndarray]:
    return [embedder.embed(crops[i : i + batch]) for i in range(0, len(crops), batch)]


def _decode_all(video: Path) -> tuple[float, list[np.ndarray], float]:
    """Decode every frame (as the detector's decode thread does); keep an even subset for the models."""
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    keep = set(np.linspace(0, count - 1, MODEL_FRAMES).astype(int).tolist())
    frames: list[np.ndarray] = []
    t0 = time.perf_counter()
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in keep:
            frames.append(frame)
        index += 1
    decode_s = time.perf_counter() - t0
    capture.release()
    return decode_s / max(index, 1), frames, fps


def measure_stages(video: Path) -> dict[str, Any]:
    settings = Settings.from_env()
    decode_per_frame, frames, fps = _decode_all(video)
    cuts = ShotCutDetector()
    shot_s, _ = _timed(lambda: [cuts.is_cut(f) for f in frames])
    det_spec, det_backend = load_model(settings, "retinaface_mnet025")
    result: dict[str, Any] = {
        "frames_timed": len(frames),
        "decode_ms_per_frame": 1000 * decode_per_frame,
        "shot_cut_ms_per_frame": 1000 * shot_s / len(frames),
    }
    detections = []
    for max_side in MAX_SIDES:
        detector = RetinaFaceDetector(det_backend, RetinaFaceSettings(max_side=max_side), det_spec)
        detector.detect_batch(frames[:2])  # first call at this input size plans the graph
        seconds, dets = _timed(functools.partial(detector.detect_batch, frames, True))
        result[f"detect_b8_ms_per_frame_max_side_{max_side}"] = 1000 * seconds / len(frames)
        result[f"faces_found_max_side_{max_side}"] = int(sum(len(d) for d in dets))
        if max_side == 1280:
            detections = dets
            b1, _ = _timed(functools.partial(_one_by_one, detector, frames))
            result["detect_b1_ms_per_frame"] = 1000 * b1 / len(frames)
    # Everything the detector service does per frame after the model: align, quality, protobuf.
    protos_s, protos = _timed(lambda: [faces_to_proto(f, d, True) for f, d in zip(frames, detections, strict=True)])
    faces_total = sum(len(d) for d in detections)
    result["align_quality_proto_ms_per_face"] = 1000 * protos_s / max(faces_total, 1)
    messages = [
        detector_pb2.DetectVideoResponse(frame=common_pb2.FrameDetections(frame_index=i, faces=p))
        for i, p in enumerate(protos)
    ]
    ser_s, blobs = _timed(lambda: [m.SerializeToString() for m in messages])
    par_s, _ = _timed(lambda: [detector_pb2.DetectVideoResponse.FromString(b) for b in blobs])
    result["detect_msg_serialise_parse_ms_per_frame"] = 1000 * (ser_s + par_s) / len(frames)
    result["detect_msg_kb_per_frame"] = sum(len(b) for b in blobs) / len(blobs) / 1024
    tracker = ByteTracker(ByteTrackSettings(frame_rate=fps))
    track_s, _ = _timed(lambda: [tracker.update(d.xyxy.reshape(-1, 4), d.scores) for d in detections])
    result["track_ms_per_frame"] = 1000 * track_s / len(frames)
    # Embedding: the same crops at batch 1 (naive), 16 (the pipeline's EMBED_BATCH) and 64.
    crops = np.concatenate([align_faces(f, d) for f, d in zip(frames, detections, strict=True) if len(d)])
    crops = np.concatenate([crops] * max(1, 64 // max(len(crops), 1)))[:64]
    spec, emb_backend = load_model(settings, "arcface_mbf")
    embedder = ArcFaceEmbedder(emb_backend, spec)
    embedder.warm_up()
    for batch in (1, 16, 64):
        seconds, _ = _timed(functools.partial(_embed_in_batches, embedder, crops, batch))
        result[f"embed_b{batch}_ms_per_face"] = 1000 * seconds / len(crops)
    request = embedder_pb2.EmbedRequest(crops_bgr=[c.tobytes() for c in crops[:16]])
    response = embedder_pb2.EmbedResponse(
        dim=512, embeddings=[embedder_pb2.Embedding(values=v.tolist()) for v in embedder.embed(crops[:16])]
    )
    ser_s, _ = _timed(
        lambda: (
            [embedder_pb2.EmbedRequest.FromString(request.SerializeToString()) for _ in range(10)]
            + [embedder_pb2.EmbedResponse.FromString(response.SerializeToString()) for _ in range(10)]
        )
    )
    result["embed_msg_serialise_parse_ms_per_face"] = 1000 * ser_s / (10 * 16)
    result["threads"] = settings.model_threads or "all cores"
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
