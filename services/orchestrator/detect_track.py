"""The streaming stage of a run: detector -> tracker (lock-step) and -> embedder (batched, overlapped).

Frames stream from the detector (which decodes the video itself); each frame's boxes go to the
tracker session at once, and its aligned crops are queued for the embedder, which works on the
previous batch while detection continues. Only crops and small messages cross the wire.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, embedder_pb2, tracker_pb2

from services.common.errors import Cancelled, FailedPrecondition
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.artifacts import CropSaver
from services.orchestrator.clients import ServiceClients
from services.orchestrator.face_table import FaceTable, FaceTableBuilder
from services.orchestrator.sampler import SamplerSettings, TrackSampler

# Crops per embedder call: big enough to amortise the call, small enough that embedding keeps
# pace with detection instead of piling up at the end of the stream (16 x 37.6 KB per request).
EMBED_BATCH = 16
# Seconds between progress reports: fine enough for a smooth bar, coarse enough to be free.
PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class StreamOptions:
    video_uri: str
    frame_count: int
    fps: float
    stride: int
    tracker: str
    det_score_threshold: float
    sampler: SamplerSettings
    ep_id: str = ""
    run_id: str = ""
    save_crops: bool = False


@dataclass
class StreamProgress:
    frames_done: int
    frames_total: int
    elapsed_s: float
    tracks_so_far: int


@dataclass
class StreamResult:
    faces: FaceTable
    embedding_model_id: str
    detect_track_s: float
    embed_s: float
    crops_saved: int = 0


class _EmbedQueue:
    """Sends crops to the embedder in batches on one background thread; remembers each crop's face row."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._pending: list[bytes] = []
        self.rows: list[int] = []
        self._futures: list[Future[tuple[str, np.ndarray, float]]] = []

    def add(self, samples: list[tuple[int, bytes]]) -> None:
        for row, crop in samples:
            self.rows.append(row)
            self._pending.append(crop)
            if len(self._pending) >= EMBED_BATCH:
                self.flush()

    def flush(self) -> None:
        if self._pending:
            self._futures.append(self._pool.submit(self._embed, self._pending))
            self._pending = []

    def _embed(self, crops: list[bytes]) -> tuple[str, np.ndarray, float]:
        started = time.monotonic()
        with translate_rpc_errors("embedder"):
            response = self._clients.embedder.Embed(embedder_pb2.EmbedRequest(crops_bgr=crops))
        vectors = np.array([e.values for e in response.embeddings], np.float32).reshape(len(crops), response.dim)
        return response.model_id, vectors, time.monotonic() - started

    def results(self) -> tuple[str, np.ndarray, float]:
        """Wait for every batch; return (model id, (N, d) vectors in submission order, seconds spent)."""
        self.flush()
        model_ids: set[str] = set()
        parts: list[np.ndarray] = []
        spent = 0.0
        try:
            for future in self._futures:
                model_id, vectors, seconds = future.result()
                model_ids.add(model_id)
                parts.append(vectors)
                spent += seconds
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if len(model_ids) > 1:
            # Vectors of different models must never be mixed: a rolling upgrade happened mid-run.
            raise FailedPrecondition(f"the embedder changed model during the run ({sorted(model_ids)}); rerun")
        if not parts:
            return "", np.zeros((0, 0), np.float32), spent
        return model_ids.pop(), np.concatenate(parts), spent

    def abandon(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _TrackerSession:
    """One Track stream driven in lock-step: send a frame, read its response."""

    _END = object()

    def __init__(self, clients: ServiceClients, config: tracker_pb2.TrackerConfig) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        self._requests.put(tracker_pb2.TrackRequest(config=config))
        self._call = clients.tracker.Track(self._request_iterator())

    def _request_iterator(self) -> Iterator[tracker_pb2.TrackRequest]:
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item  # type: ignore[misc]

    def track(self, frame: common_pb2.FrameDetections) -> tracker_pb2.TrackResponse:
        boxes_only = common_pb2.FrameDetections(
            frame_index=frame.frame_index,
            timestamp_s=frame.timestamp_s,
            shot_boundary=frame.shot_boundary,
            faces=[common_pb2.Face(box=f.box, score=f.score, candidate=f.candidate) for f in frame.faces],
        )
        self._requests.put(tracker_pb2.TrackRequest(frame=boxes_only))
        with translate_rpc_errors("tracker"):
            return next(self._call)

    def close(self) -> None:
        self._requests.put(self._END)
        self._call.cancel()


def detect_track_embed(
    clients: ServiceClients,
    options: StreamOptions,
    report: Callable[[StreamProgress], None],
    cancelled: threading.Event,
) -> StreamResult:
    started = time.monotonic()
    builder = FaceTableBuilder()
    embeds = _EmbedQueue(clients)
    sampler: TrackSampler[tuple[bytes, bytes]] = TrackSampler(options.fps, options.sampler)
    crops = CropSaver(clients, options.ep_id, options.run_id, options.fps) if options.save_crops else None

    def take(samples: list[tuple[int, tuple[bytes, bytes]]]) -> None:
        """Embed the sampled faces; save their display crops for reviewers."""
        embeds.add([(row, aligned) for row, (aligned, _) in samples])
        if crops is not None:
            for row, (_, display) in samples:
                crops.add(builder.track_of(row), builder.frame_of(row), display)

    session = _TrackerSession(
        clients,
        tracker_pb2.TrackerConfig(tracker=options.tracker, fps=options.fps, frame_stride=options.stride),
    )
    frames_total = len(range(0, options.frame_count, options.stride))
    detect_call = clients.detector.DetectVideo(
        detector_pb2.DetectVideoRequest(
            video_uri=options.video_uri,
            stride=options.stride,
            include_crops=True,
            include_candidates=True,
            include_display_crops=options.save_crops,
            score_threshold=options.det_score_threshold,
        )
    )
    track_ids: set[int] = set()
    last_report = 0.0
    try:
        with translate_rpc_errors("detector"):
            for message in detect_call:
                if cancelled.is_set():
                    raise Cancelled("the job was cancelled")
                frame = message.frame
                builder.frames.append(frame.frame_index)
                if frame.shot_boundary:
                    builder.cut_frames.append(frame.frame_index)
                tracked = {t.face_index: t.track_id for t in session.track(frame).tracked}
                for index, face in enumerate(frame.faces):
                    track_id = tracked.get(index, 0)
                    row = builder.add(
                        frame.frame_index,
                        [face.box.x1, face.box.y1, face.box.x2, face.box.y2],
                        face.score,
                        face.quality,
                        list(face.landmarks),
                        track_id,
                        face.candidate,
                    )
                    if track_id:  # untracked faces (unconfirmed, low score) join no identity
                        track_ids.add(track_id)
                        sample = (face.aligned_crop_bgr, face.display_crop_jpeg)
                        take(sampler.add(track_id, frame.frame_index, row, face.quality, sample))
                now = time.monotonic()
                if now - last_report >= PROGRESS_INTERVAL_S:
                    last_report = now
                    report(StreamProgress(len(builder.frames), frames_total, now - started, len(track_ids)))
        detect_track_s = time.monotonic() - started
        take(sampler.flush())
        model_id, vectors, embed_s = embeds.results()
        crops_saved = crops.finish() if crops is not None else 0
    except BaseException:
        detect_call.cancel()
        embeds.abandon()
        if crops is not None:
            crops.abandon()
        raise
    finally:
        session.close()
    report(StreamProgress(len(builder.frames), frames_total, time.monotonic() - started, len(track_ids)))
    return StreamResult(
        builder.build(np.asarray(embeds.rows, np.int64), vectors), model_id, detect_track_s, embed_s, crops_saved
    )
