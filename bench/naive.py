"""The naive baseline: how a monolithic script would do it, one frame and one face at a time.

Decode a frame with OpenCV, detect with RetinaFaceDetector (one frame per model call), align and
embed every face (ArcFaceEmbedder on a batch of 1), ByteTracker.update, next frame; then the same
backfill, clustering, labelling, screen time and output functions as the pipeline. Same models and
thresholds (RetinaFaceSettings(), ByteTrackSettings, candidates and shot-cut resets as the services
use them), so the only differences are the ones the design is about: no batching, no
decode/detect/embed overlap, no per-track embedding sampler.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from faceflow.v1 import storage_pb2

from services.common.alignment import align_faces
from services.common.config import Settings
from services.common.face_quality import face_quality
from services.common.models import load_model
from services.detector.retinaface import RetinaFaceDetector, RetinaFaceSettings
from services.detector.shots import ShotCutDetector
from services.embedder.arcface import ArcFaceEmbedder
from services.orchestrator.analysis.backfill import backfill_tracks
from services.orchestrator.analysis.face_table import FaceTableBuilder
from services.orchestrator.run import outputs
from services.orchestrator.run.identity_stage import build_identities
from services.orchestrator.run.options import RunSettings
from services.tracker.bytetrack import ByteTracker, ByteTrackSettings


@dataclass
class NaiveModels:
    detector: RetinaFaceDetector
    embedder: ArcFaceEmbedder

    @classmethod
    def load(cls, settings: Settings) -> NaiveModels:
        """The same manifest models, sessions and warm-up as the detector and embedder services."""
        det_spec, det_backend = load_model(settings, "retinaface_mnet025")
        detector = RetinaFaceDetector(det_backend, RetinaFaceSettings(), det_spec)
        detector.detect_batch([np.zeros((360, 640, 3), np.uint8)] * 2)
        spec, emb_backend = load_model(settings, "arcface_mbf")
        embedder = ArcFaceEmbedder(emb_backend, spec)
        embedder.warm_up()
        return cls(detector, embedder)


@dataclass
class NaiveResult:
    wall_s: float
    frames: int
    faces: int
    faces_embedded: int
    tracks: int
    identities: int
    stage_s: dict[str, float] = field(default_factory=dict)


def run_naive(
    models: NaiveModels,
    video: Path,
    out_dir: Path,
    people: list[storage_pb2.Person],
    stride: int = 1,
) -> NaiveResult:
    """Process `video` sequentially and write the output contract files into out_dir."""
    run = RunSettings(stride=stride)
    stage: dict[str, float] = defaultdict(float)
    started = time.monotonic()
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    tracker = ByteTracker(ByteTrackSettings(frame_rate=fps, frame_stride=stride))
    cuts = ShotCutDetector()
    builder = FaceTableBuilder()
    embedded_rows: list[int] = []
    vectors: list[np.ndarray] = []
    index = 0
    while True:
        t0 = time.monotonic()
        frame: np.ndarray | None = None
        if index % stride == 0:
            ok, frame = capture.read()
        else:
            ok = capture.grab()  # skipped frames are not colour-converted, as in the detector
        stage["decode"] += time.monotonic() - t0
        if not ok:
            break
        if frame is None:
            index += 1
            continue
        t0 = time.monotonic()
        cut = cuts.is_cut(frame)
        stage["shot_cut"] += time.monotonic() - t0
        t0 = time.monotonic()
        detections = models.detector.detect_batch([frame], include_candidates=True)[0]
        stage["detect"] += time.monotonic() - t0
        t0 = time.monotonic()
        crops = align_faces(frame, detections)
        qualities = [
            face_quality(crops[i], detections.xyxy[i], detections.landmarks[i], float(detections.scores[i])).score
            for i in range(len(detections))
        ]
        stage["align_quality"] += time.monotonic() - t0
        t0 = time.monotonic()
        face_vectors = [models.embedder.embed(crops[i : i + 1])[0] for i in range(len(detections))]
        stage["embed"] += time.monotonic() - t0
        t0 = time.monotonic()
        if cut:
            tracker.reset()
        scores = np.where(
            detections.confident, detections.scores, np.minimum(detections.scores, tracker.settings.high_score)
        ).astype(np.float32)
        assigned = {a.detection_index: a.track_id for a in tracker.update(detections.xyxy.reshape(-1, 4), scores)}
        stage["track"] += time.monotonic() - t0
        builder.frames.append(index)
        if cut:
            builder.cut_frames.append(index)
        for i in range(len(detections)):
            row = builder.add(
                index,
                detections.xyxy[i].tolist(),
                float(detections.scores[i]),
                float(qualities[i]),
                detections.landmarks[i].reshape(-1).tolist(),
                assigned.get(i, 0),
                not bool(detections.confident[i]),
            )
            embedded_rows.append(row)
            vectors.append(face_vectors[i])
        index += 1
    capture.release()
    t0 = time.monotonic()
    dim = models.embedder.dim
    faces = builder.build(
        np.asarray(embedded_rows, np.int64), np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    )
    faces = dataclasses.replace(faces, track_id=backfill_tracks(faces, fps, run.stride, run.backfill))
    duration_s = frame_count / fps
    result = build_identities(
        faces,
        people,
        models.embedder.model_id,
        fps,
        stride,
        duration_s,
        run.clustering,
        run.matching,
        run.screen_time,
    )
    stage["cluster"] += time.monotonic() - t0
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_id = models.embedder.model_id
    files = {
        "tracks.mot.txt": outputs.mot_rows(faces),
        "detections.jsonl": outputs.detections_jsonl(faces, fps),
        "faces.jsonl": outputs.faces_jsonl(faces, fps, model_id),
        "faces.npy": outputs.faces_npy(faces),
        "tracks.jsonl": outputs.tracks_jsonl(faces, result, fps),
        "identities.json": outputs.identities_json(result, model_id),
        "screentime.json": outputs.screentime_json("naive", fps, duration_s, run.screen_time.gap_bridge_s, result),
        "manifest.json": outputs.manifest_json({"settings": {"stride": stride}, "baseline": "naive"}),
    }
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    stage["write"] += time.monotonic() - t0
    wall = time.monotonic() - started
    return NaiveResult(
        wall_s=wall,
        frames=len(faces.processed_frames),
        faces=len(faces.faces()),
        faces_embedded=len(embedded_rows),
        tracks=len(faces.track_ids()),
        identities=len(result.identities),
        stage_s={k: round(v, 3) for k, v in stage.items()},
    )


def result_json(result: NaiveResult) -> str:
    return json.dumps(dataclasses.asdict(result))
