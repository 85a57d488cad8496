"""The streaming stage of a run: detector -> tracker (lock-step) and -> embedder (batched, overlapped).

Frames stream from the detector (which decodes the video itself); each frame's boxes go to the
tracker session at once, and its aligned crops are queued for the embedder, which works on the
previous batch while detection continues. Only crops and small messages cross the wire.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, detector_pb2_grpc, embedder_pb2, tracker_pb2

from services.common.errors import Cancelled, FaceflowError, FailedPrecondition, Unavailable
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.artifacts import CropSaver
from services.orchestrator.checkpoints import SegmentCheckpoints
from services.orchestrator.clients import ServiceClients
from services.orchestrator.face_table import FaceTable, FaceTableBuilder
from services.orchestrator.sampler import SamplerSettings, TrackSampler
from services.orchestrator.segments import Segment, link_tracks, plan_segments
from services.tracker.registry import tracker_kind

log = logging.getLogger(__name__)

# Crops per embedder call: big enough to amortise the call, small enough that embedding keeps
# pace with detection instead of piling up at the end of the stream (16 x 37.6 KB per request).
EMBED_BATCH = 16
# Seconds between progress reports: fine enough for a smooth bar, coarse enough to be free.
PROGRESS_INTERVAL_S = 0.5
# Added to the quality of a face already embedded for tracking when the identity sampler picks
# its window's face: that face wins the window, so its vector is reused and nothing is embedded twice.
ALREADY_EMBEDDED_BONUS = 10.0


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
    # Fingerprint of everything a segment depends on (checkpoints.fingerprint); empty: no checkpoints.
    checkpoint_key: str = ""


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
    segments: int = 1
    embedded_for_tracking: int = 0  # faces the tracker asked embeddings for (reused for identities)
    tracking_embed_s: float = 0.0  # seconds the stream waited for them
    crops: CropSaver | None = None  # finished; reindex() after tracks are split or merged
    segments_resumed: int = 0  # segments taken from checkpoints of an earlier attempt of the same run


class _EmbedQueue:
    """Sends crops to the embedder in batches on one background thread; remembers each crop's face row."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        # One batch in flight per embedder replica; results stay in submission order.
        self._pool = ThreadPoolExecutor(max_workers=len(clients.embedders), thread_name_prefix="embed")
        self._turn = 0
        self._pending: list[bytes] = []
        self.rows: list[int] = []
        self._futures: list[Future[tuple[str, np.ndarray, float]]] = []
        # Vectors computed synchronously for the tracker, kept for the identity stage.
        self._lock = threading.Lock()
        self._known_rows: list[int] = []
        self._known_vectors: list[np.ndarray] = []
        self._model_ids: set[str] = set()
        self.embedded_now = 0
        self.embed_now_s = 0.0

    def add(self, samples: list[tuple[int, bytes]]) -> None:
        for row, crop in samples:
            self.rows.append(row)
            self._pending.append(crop)
            if len(self._pending) >= EMBED_BATCH:
                self.flush()

    def embed_now(self, crops: list[bytes]) -> np.ndarray:
        """Embed crops synchronously (the tracker is waiting for them); (N, d) unit vectors."""
        model_id, vectors, seconds = self._embed(crops)
        with self._lock:
            self._model_ids.add(model_id)
            self.embedded_now += len(crops)
            self.embed_now_s += seconds
        return vectors

    def add_known(self, row: int, vector: np.ndarray) -> None:
        """A face row whose vector was already computed (for the tracker): reused, not re-embedded."""
        with self._lock:
            self._known_rows.append(row)
            self._known_vectors.append(vector)

    def flush(self) -> None:
        if self._pending:
            self._futures.append(self._pool.submit(self._embed, self._pending))
            self._pending = []

    def _embed(self, crops: list[bytes]) -> tuple[str, np.ndarray, float]:
        started = time.monotonic()
        embedders = self._clients.embedders
        self._turn += 1
        for attempt in range(len(embedders)):
            try:
                with translate_rpc_errors("embedder"):
                    stub = embedders[(self._turn + attempt) % len(embedders)]
                    response = stub.Embed(embedder_pb2.EmbedRequest(crops_bgr=crops))
                break
            except Unavailable:  # a replica went away: the same batch on the next one
                if attempt == len(embedders) - 1:
                    raise
        vectors = np.array([e.values for e in response.embeddings], np.float32).reshape(len(crops), response.dim)
        return response.model_id, vectors, time.monotonic() - started

    def results(self) -> tuple[str, np.ndarray, float]:
        """Wait for every batch; return (model id, (N, d) vectors in submission order, seconds spent).

        Rows given with add_known() follow the queued ones (self.rows is extended with them).
        """
        self.flush()
        model_ids: set[str] = set(self._model_ids)
        parts: list[np.ndarray] = []
        spent = self.embed_now_s
        try:
            for future in self._futures:
                model_id, vectors, seconds = future.result()
                model_ids.add(model_id)
                parts.append(vectors)
                spent += seconds
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._known_rows:
            self.rows.extend(self._known_rows)
            parts.append(np.stack(self._known_vectors).astype(np.float32))
        if len(model_ids) > 1:
            # Vectors of different models must never be mixed: a rolling upgrade happened mid-run.
            raise FailedPrecondition(f"the embedder changed model during the run ({sorted(model_ids)}); rerun")
        if not parts:
            return "", np.zeros((0, 0), np.float32), spent
        return model_ids.pop(), np.concatenate(parts), spent

    def abandon(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _TrackerSession:
    """One Track stream driven in lock-step: send a frame, read its response; when the tracker asks
    for embeddings, embed those faces' aligned crops at once and send the frame again with them."""

    _END = object()

    def __init__(
        self,
        clients: ServiceClients,
        config: tracker_pb2.TrackerConfig,
        embed_now: Callable[[list[bytes]], np.ndarray] | None = None,
    ) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        self._embed_now = embed_now
        config.embeddings_on_request = embed_now is not None
        self._requests.put(tracker_pb2.TrackRequest(config=config))
        self._call = clients.tracker.Track(self._request_iterator())

    def _request_iterator(self) -> Iterator[tracker_pb2.TrackRequest]:
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item  # type: ignore[misc]

    def track(self, frame: common_pb2.FrameDetections) -> tuple[tracker_pb2.TrackResponse, dict[int, np.ndarray]]:
        """The tracker's answer for one frame and the vectors computed for it ({face index: vector})."""
        boxes_only = common_pb2.FrameDetections(
            frame_index=frame.frame_index,
            timestamp_s=frame.timestamp_s,
            shot_boundary=frame.shot_boundary,
            faces=[common_pb2.Face(box=f.box, score=f.score, candidate=f.candidate) for f in frame.faces],
            camera_motion=frame.camera_motion,
        )
        response = self._exchange(boxes_only)
        vectors: dict[int, np.ndarray] = {}
        if response.embeddings_wanted and self._embed_now is not None:
            wanted = list(response.embeddings_wanted)
            embedded = self._embed_now([frame.faces[i].aligned_crop_bgr for i in wanted])
            for i, vector in zip(wanted, embedded, strict=True):
                vectors[i] = vector
                boxes_only.faces[i].embedding.extend(vector.tolist())
            response = self._exchange(boxes_only)
        return response, vectors

    def _exchange(self, frame: common_pb2.FrameDetections) -> tracker_pb2.TrackResponse:
        self._requests.put(tracker_pb2.TrackRequest(frame=frame))
        with translate_rpc_errors("tracker"):
            return next(self._call)

    def close(self) -> None:
        self._requests.put(self._END)
        self._call.cancel()


@dataclass
class SegmentFace:
    frame: int
    box: list[float]
    score: float
    quality: float
    landmarks: list[float]
    track: int  # the segment's own track id, 0 = untracked
    candidate: bool


@dataclass
class SegmentResult:
    segment: Segment
    frames: list[int] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    faces: list[SegmentFace] = field(default_factory=list)  # overlap-frame faces included (frame < segment.start)
    # (face index, (aligned crop, display crop, embedded for tracking already))
    samples: list[tuple[int, tuple[bytes, bytes, bool]]] = field(default_factory=list)
    known: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (face index, vector from tracking)


class _Progress:
    """Frames done and tracks seen across concurrently running segments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames = 0
        self.tracks: set[tuple[int, int]] = set()

    def add(self, segment: int, tracks: list[int], frames: int = 1) -> None:
        with self._lock:
            self.frames += frames
            self.tracks.update((segment, t) for t in tracks)


def _run_segment(
    detector: detector_pb2_grpc.DetectorServiceStub,
    clients: ServiceClients,
    options: StreamOptions,
    segment: Segment,
    stop: threading.Event,
    progress: _Progress,
    embed_now: Callable[[list[bytes]], np.ndarray],
) -> SegmentResult:
    """Detect and track one segment in its own tracker session; sample faces to embed as it goes."""
    result = SegmentResult(segment)
    sampler: TrackSampler[tuple[bytes, bytes, bool]] = TrackSampler(options.fps, options.sampler)
    appearance = tracker_kind(options.tracker).uses_appearance
    session = _TrackerSession(
        clients,
        tracker_pb2.TrackerConfig(tracker=options.tracker, fps=options.fps, frame_stride=options.stride),
        embed_now if appearance else None,
    )
    call = detector.DetectVideo(
        detector_pb2.DetectVideoRequest(
            video_uri=options.video_uri,
            start_frame=segment.overlap_start,
            end_frame=segment.end,
            stride=options.stride,
            include_crops=True,
            include_candidates=True,
            include_display_crops=options.save_crops,
            score_threshold=options.det_score_threshold,
            include_camera_motion=appearance,  # only appearance-aware trackers compensate camera motion
        )
    )
    try:
        with translate_rpc_errors("detector"):
            for message in call:
                if stop.is_set():
                    raise Cancelled("the job was cancelled")
                frame = message.frame
                owned = frame.frame_index >= segment.start  # the overlap frame only links tracks
                response, vectors = session.track(frame)
                tracked = {t.face_index: t.track_id for t in response.tracked}
                if owned:
                    result.frames.append(frame.frame_index)
                    if frame.shot_boundary:
                        result.cuts.append(frame.frame_index)
                    progress.add(segment.index, list(tracked.values()))
                for index, face in enumerate(frame.faces):
                    track = tracked.get(index, 0)
                    box = [face.box.x1, face.box.y1, face.box.x2, face.box.y2]
                    position = len(result.faces)
                    result.faces.append(
                        SegmentFace(
                            frame.frame_index,
                            box,
                            face.score,
                            face.quality,
                            list(face.landmarks),
                            track,
                            face.candidate,
                        )
                    )
                    if track and owned:  # untracked faces (unconfirmed, low score) join no identity
                        known = index in vectors
                        if known:
                            result.known.append((position, vectors[index]))
                        quality = face.quality + (ALREADY_EMBEDDED_BONUS if known else 0.0)
                        crops = (face.aligned_crop_bgr, face.display_crop_jpeg, known)
                        result.samples += sampler.add(track, frame.frame_index, position, quality, crops)
        result.samples += sampler.flush()
    except BaseException:
        call.cancel()
        raise
    finally:
        session.close()
    return result


class _Merger:
    """Appends segments in order: global track ids, links across borders, embedding and crops."""

    def __init__(self, builder: FaceTableBuilder, embeds: _EmbedQueue, crops: CropSaver | None) -> None:
        self.builder = builder
        self.embeds = embeds
        self.crops = crops
        self.next_track = 1
        self.last_frame_faces: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros(0, np.int64))

    def merge(self, result: SegmentResult) -> None:
        segment = result.segment
        links: dict[int, int] = {}
        if segment.overlap_start < segment.start:
            here = [f for f in result.faces if f.frame == segment.overlap_start]
            links = link_tracks(
                *self.last_frame_faces,
                np.asarray([f.box for f in here], np.float32).reshape(-1, 4),
                np.asarray([f.track for f in here], np.int64),
            )
        global_ids: dict[int, int] = dict(links)
        rows: dict[int, int] = {}
        for position, face in enumerate(result.faces):
            if face.frame < segment.start:
                continue
            track = 0
            if face.track:
                if face.track not in global_ids:
                    global_ids[face.track] = self.next_track
                    self.next_track += 1
                track = global_ids[face.track]
            rows[position] = self.builder.add(
                face.frame, face.box, face.score, face.quality, face.landmarks, track, face.candidate
            )
        self.builder.frames.extend(result.frames)
        self.builder.cut_frames.extend(result.cuts)
        for position, vector in result.known:
            self.embeds.add_known(rows[position], vector)
        for position, (aligned, display, known) in result.samples:
            row = rows[position]
            if not known:
                self.embeds.add([(row, aligned)])
            if self.crops is not None:
                self.crops.add(self.builder.track_of(row), self.builder.frame_of(row), display)
        last = result.frames[-1] if result.frames else -1
        tail = [r for r in rows.values() if self.builder.frame_of(r) == last]
        self.last_frame_faces = (
            np.asarray([self.builder.box_of(r) for r in tail], np.float32).reshape(-1, 4),
            np.asarray([self.builder.track_of(r) for r in tail], np.int64),
        )


def detect_track_embed(
    clients: ServiceClients,
    options: StreamOptions,
    report: Callable[[StreamProgress], None],
    cancelled: threading.Event,
) -> StreamResult:
    """Detect, track and embed an episode, sharded across the detector endpoints (one segment each
    at a time; a segment whose replica fails is redone on another)."""
    started = time.monotonic()
    detectors = clients.detectors
    workers = clients.segment_parallelism or len(detectors)
    segments = plan_segments(options.frame_count, options.stride, options.fps, workers, clients.segment_s)
    # With one balanced channel over many pods, a retry on the same channel reaches another pod.
    attempts = max(len(detectors), 2 if workers > 1 else 1)
    frames_total = len(range(0, options.frame_count, options.stride))
    builder = FaceTableBuilder()
    embeds = _EmbedQueue(clients)
    crops = CropSaver(clients, options.ep_id, options.run_id, options.fps) if options.save_crops else None
    merger = _Merger(builder, embeds, crops)
    progress = _Progress()
    stop = threading.Event()
    checkpoints = (
        SegmentCheckpoints(clients, options.ep_id, options.run_id, options.checkpoint_key)
        if options.checkpoint_key and options.run_id
        else None
    )

    def run(segment: Segment) -> SegmentResult:
        if checkpoints is not None:
            done = checkpoints.load(segment, SegmentResult, SegmentFace)
            if done is not None:  # finished by an earlier attempt of this run
                progress.add(segment.index, [f.track for f in done.faces if f.track], len(done.frames))
                return done
        error: FaceflowError | None = None
        for attempt in range(attempts):
            detector = detectors[(segment.index + attempt) % len(detectors)]
            try:
                result = _run_segment(detector, clients, options, segment, stop, progress, embeds.embed_now)
                if checkpoints is not None:
                    checkpoints.save(result)
                return result
            except Unavailable as failure:  # a replica went away: redo the segment on the next one
                log.warning(
                    "detector replica failed; retrying the segment elsewhere",
                    extra={"segment": segment.index, "error": str(failure)},
                )
                error = failure
        raise error or Unavailable("no detector endpoint")

    def report_now() -> None:
        report(StreamProgress(progress.frames, frames_total, time.monotonic() - started, len(progress.tracks)))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment")
    # Merged in order and dropped once merged: a finished future keeps its result, and a
    # segment's result holds its sampled crops (~47 KB each), which must not live to the end.
    futures = collections.deque(pool.submit(run, segment) for segment in segments)
    try:
        while futures:
            if cancelled.is_set():
                stop.set()
            try:
                merger.merge(futures[0].result(timeout=PROGRESS_INTERVAL_S))
                futures.popleft()
            except FutureTimeout:
                report_now()
        detect_track_s = time.monotonic() - started
        model_id, vectors, embed_s = embeds.results()
        crops_saved = crops.finish() if crops is not None else 0
    except BaseException:
        stop.set()
        embeds.abandon()
        if crops is not None:
            crops.abandon()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report_now()
    return StreamResult(
        builder.build(np.asarray(embeds.rows, np.int64), vectors),
        model_id,
        detect_track_s,
        embed_s,
        crops_saved,
        len(segments),
        embeds.embedded_now,
        embeds.embed_now_s,
        crops,
        checkpoints.loaded if checkpoints is not None else 0,
    )
