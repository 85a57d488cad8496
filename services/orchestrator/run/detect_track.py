"""The streaming stage of a run: detector -> tracker (lock-step) and -> embedder (batched, overlapped).

Frames stream from the detector (which decodes the video itself); each frame's boxes go to the
tracker session at once, and its aligned crops are queued for the embedder, which works on the
previous batch while detection continues. Only crops and small messages cross the wire.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
from faceflow.v1 import detector_pb2, tracker_pb2

from services.common.errors import Cancelled, FaceflowError, Unavailable
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.analysis.face_table import FaceTable, FaceTableBuilder
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.run.artifacts import CropSaver
from services.orchestrator.run.checkpoints import SegmentCheckpoints
from services.orchestrator.run.embed_queue import EmbedQueue
from services.orchestrator.run.sampler import SamplerSettings, TrackSampler
from services.orchestrator.run.segments import Segment, link_tracks, plan_segments
from services.orchestrator.run.tracker_session import TrackerSession

log = logging.getLogger(__name__)

# Seconds between progress reports: fine enough for a smooth bar, coarse enough to be free.
PROGRESS_INTERVAL_S = 0.5
# Added to the quality of a face already embedded for tracking when the identity sampler picks
# its window's face: that face wins the window, so its vector is reused and nothing is embedded twice.
ALREADY_EMBEDDED_BONUS = 10.0
# Added to the quality of a confident face (quality is in [0, 1]): a window's sample is a candidate
# (a weak detection, often a half-hidden or blurred face whose landmarks are guesses) only when the
# track has no confident face in that window, so a hand over a face does not become its identity.
CONFIDENT_BONUS = 1.0


@dataclass(frozen=True)
class StreamOptions:
    video_uri: str
    frame_count: int
    fps: float
    stride: int
    tracker: str
    det_score_threshold: float
    sampler: SamplerSettings
    adaptive: bool = False  # stride is the base of adaptive sampling (DetectVideoRequest.adaptive_sampling)
    ep_id: str = ""
    run_id: str = ""
    save_crops: bool = False
    # Fingerprint of everything a segment depends on (checkpoints.fingerprint); empty: no checkpoints.
    checkpoint_key: str = ""
    # The tracker asks for embeddings and compensates camera motion (TrackerDescription.uses_appearance).
    tracker_uses_appearance: bool = False

    @property
    def frames_total(self) -> int:
        """Progress units: every stride-th frame of the video (adaptive sampling adds frames between)."""
        return len(range(0, self.frame_count, self.stride))

    def on_grid(self, frame: int) -> bool:
        return frame % self.stride == 0


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


@dataclass
class SegmentFace:
    frame: int
    box: list[float]
    score: float
    quality: float
    landmarks: list[float]
    track: int  # the segment's own track id, 0 = untracked
    candidate: bool
    restored: bool = False  # found on a frame restored from a motion smear (Face.restored)


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
    appearance = options.tracker_uses_appearance
    session = TrackerSession(
        clients,
        tracker_pb2.TrackerConfig(tracker=options.tracker, fps=options.fps, frame_stride=options.stride),
        embed_now if appearance else None,
    )
    call = clients.detector.DetectVideo(
        detector_pb2.DetectVideoRequest(
            video_uri=options.video_uri,
            start_frame=segment.overlap_start,
            end_frame=segment.end,
            stride=options.stride,
            include_crops=True,
            include_candidates=True,
            include_display_crops=options.save_crops,
            score_threshold=options.det_score_threshold,
            include_camera_motion=True,  # every tracker compensates pans and zooms
            adaptive_sampling=options.adaptive,
        )
    )
    try:
        with translate_rpc_errors("detector"):
            for message in call:
                if stop.is_set():
                    raise Cancelled("the job was cancelled")
                frame = message.frame
                owned = segment.owns(frame.frame_index)  # the overlap frame only links tracks
                response, vectors = session.track(frame)
                tracked = {t.face_index: t.track_id for t in response.tracked}
                if owned:
                    result.frames.append(frame.frame_index)
                    if frame.shot_boundary:
                        result.cuts.append(frame.frame_index)
                    progress.add(segment.index, list(tracked.values()), int(options.on_grid(frame.frame_index)))
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
                            face.restored,
                        )
                    )
                    if track and owned:  # untracked faces (unconfirmed, low score) join no identity
                        known = index in vectors
                        if known:
                            result.known.append((position, vectors[index]))
                        quality = face.quality + (ALREADY_EMBEDDED_BONUS if known else 0.0)
                        quality += 0.0 if face.candidate else CONFIDENT_BONUS
                        crops = (face.aligned_crop_bgr, face.display_crop_jpeg, known)
                        result.samples += sampler.add(track, frame.frame_index, position, quality, crops, face.restored)
        result.samples += sampler.flush()
    except BaseException:
        call.cancel()
        raise
    finally:
        session.close()
    return result


class _Merger:
    """Appends segments in order: global track ids, links across borders, embedding and crops."""

    def __init__(self, builder: FaceTableBuilder, embeds: EmbedQueue, crops: CropSaver | None) -> None:
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
            if not segment.owns(face.frame):
                continue
            track = 0
            if face.track:
                if face.track not in global_ids:
                    global_ids[face.track] = self.next_track
                    self.next_track += 1
                track = global_ids[face.track]
            rows[position] = self.builder.add(
                face.frame, face.box, face.score, face.quality, face.landmarks, track, face.candidate, face.restored
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
    """Detect, track and embed an episode, sharded across the detector replicas (one segment each
    at a time; a segment whose replica fails is redone on another)."""
    started = time.monotonic()
    workers = clients.segment_workers
    segments = plan_segments(options.frame_count, options.stride, options.fps, workers, clients.segment_s)
    # A stream that broke after answering is not retried by the channel: the segment is redone, and
    # the balanced channel sends the redo to a replica that is still there.
    attempts = max(clients.detector_replicas, 2 if workers > 1 else 1)
    frames_total = options.frames_total
    builder = FaceTableBuilder()
    embeds = EmbedQueue(clients)
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
                grid = sum(options.on_grid(f) for f in done.frames)
                progress.add(segment.index, [f.track for f in done.faces if f.track], grid)
                return done
        error: FaceflowError | None = None
        for _ in range(attempts):
            try:
                result = _run_segment(clients, options, segment, stop, progress, embeds.embed_now)
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
