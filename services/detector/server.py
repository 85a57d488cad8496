"""gRPC DetectorService: decodes videos itself and streams per-frame faces with aligned crops."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import grpc
import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, detector_pb2_grpc

from services.common.alignment import align_faces
from services.common.backends import InferenceBackend
from services.common.detections import Detections
from services.common.errors import InvalidArgument
from services.common.face_quality import face_quality
from services.common.memory import release_freed_memory
from services.common.sampling import check_stride
from services.common.warm import WarmValue
from services.detector.adaptive import AdaptiveSampler, AdaptiveSettings, Chunk
from services.detector.camera_motion import CameraMotionEstimator
from services.detector.deblur import DeblurSettings, MotionDeblur
from services.detector.display_crops import display_crop_jpeg
from services.detector.retinaface import RetinaFaceDetector
from services.detector.shots import ShotCutDetector
from services.detector.sources import VideoSources
from services.detector.video import VideoProbe, display_uri, iter_frames, probe_video
from services.detector.zoom import SmallFaceZoom

SERVICE_NAME = detector_pb2.DESCRIPTOR.services_by_name["DetectorService"].full_name
# Decoded frames waiting for the model: decoding runs ahead in its own thread (OpenCV releases the
# GIL) so decode and inference overlap; 2 batches ahead is enough to hide decode time.
PREFETCH_BATCHES = 2
# Adaptive sampling keeps every decoded frame of a chunk (2.7 MB each at 720p) until its windows are
# settled: 2 base frames per chunk (20 frames at stride 10, ~55 MB) and one chunk decoded ahead.
ADAPTIVE_CHUNK_BASE_FRAMES = 2
ADAPTIVE_PREFETCH_CHUNKS = 1
# Chunks (or batches) between two returns of freed frame buffers to the OS (services/common/memory.py):
# ~160 frames. Every chunk was as flat and looked slower; without, the detector's peak RSS varied
# 444-581 MB on the same 120 s episode.
RELEASE_MEMORY_EVERY = 8
# Encoded images above this are refused (a 50 MP JPEG is ~25 MB).
MAX_IMAGE_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class LoadedDetector:
    backend: InferenceBackend
    detector: RetinaFaceDetector
    info: common_pb2.ModelInfo


def probe_to_proto(probe: VideoProbe) -> common_pb2.VideoInfo:
    return common_pb2.VideoInfo(
        uri=display_uri(probe.uri),
        fps=probe.fps,
        frame_count=probe.frame_count,
        width=probe.width,
        height=probe.height,
        duration_s=probe.duration_s,
        codec=probe.codec,
        size_bytes=probe.size_bytes,
    )


def faces_to_proto(
    frame_bgr: np.ndarray,
    detections: Detections,
    include_crops: bool,
    include_display_crops: bool = False,
    restored: bool = False,
) -> list[common_pb2.Face]:
    crops = align_faces(frame_bgr, detections) if len(detections) else np.zeros((0, 112, 112, 3), np.uint8)
    faces = []
    for i in range(len(detections)):
        box = detections.xyxy[i]
        quality = face_quality(crops[i], box, detections.landmarks[i], float(detections.scores[i]))
        faces.append(
            common_pb2.Face(
                box=common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
                score=float(detections.scores[i]),
                landmarks=detections.landmarks[i].reshape(-1).tolist(),
                aligned_crop_bgr=crops[i].tobytes() if include_crops else b"",
                quality=quality.score,
                candidate=not bool(detections.confident[i]),
                display_crop_jpeg=display_crop_jpeg(frame_bgr, box) if include_display_crops else b"",
                restored=restored,
            )
        )
    return faces


class DetectorServicer(detector_pb2_grpc.DetectorServiceServicer):
    def __init__(self, model: WarmValue[LoadedDetector], sources: VideoSources) -> None:
        self._model = model
        self._sources = sources
        # One inference at a time per process: a call already uses every core; concurrent calls
        # would only interleave and multiply memory. Scale out with replicas instead.
        self._lock = threading.Lock()

    def _detector(self, score_threshold: float) -> RetinaFaceDetector:
        loaded = self._model.get()
        if score_threshold == 0:
            return loaded.detector
        if not 0 < score_threshold < 1:
            raise InvalidArgument(f"score_threshold must be in (0, 1), got {score_threshold}")
        return loaded.detector.with_settings(replace(loaded.detector.settings, score_threshold=score_threshold))

    def Detect(self, request: detector_pb2.DetectRequest, context: grpc.ServicerContext) -> detector_pb2.DetectResponse:
        if not request.image:
            raise InvalidArgument("image is empty")
        if len(request.image) > MAX_IMAGE_BYTES:
            raise InvalidArgument(f"image is {len(request.image)} bytes; the limit is {MAX_IMAGE_BYTES}")
        image = cv2.imdecode(np.frombuffer(request.image, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise InvalidArgument("the data is not a decodable image (JPEG, PNG, BMP, WebP...)")
        detector = self._detector(request.score_threshold)
        with self._lock:
            detections = detector.detect(image)
        return detector_pb2.DetectResponse(
            faces=faces_to_proto(image, detections, request.include_crops),
            width=image.shape[1],
            height=image.shape[0],
        )

    def ProbeVideo(
        self, request: detector_pb2.ProbeVideoRequest, context: grpc.ServicerContext
    ) -> detector_pb2.ProbeVideoResponse:
        if not request.video_uri:
            raise InvalidArgument("video_uri is empty")
        self._sources.check(request.video_uri)
        return detector_pb2.ProbeVideoResponse(info=probe_to_proto(probe_video(request.video_uri)))

    def DetectVideo(
        self, request: detector_pb2.DetectVideoRequest, context: grpc.ServicerContext
    ) -> Iterator[detector_pb2.DetectVideoResponse]:
        self._sources.check(request.video_uri)
        detector = self._detector(request.score_threshold)
        probe = probe_video(request.video_uri)
        start, end, stride = _frame_range(request, probe.frame_count)

        adaptive = AdaptiveSettings()
        if request.adaptive_sampling:
            # One frame per model call: on CPU batching gains nothing (bench.detector_input), and
            # the uneven batches of bisection would each grow onnxruntime's memory arena.
            detector = detector.with_settings(replace(detector.settings, max_batch=1))
        reduced = detector.with_settings(replace(detector.settings, max_side=adaptive.reduced_max_side))
        magnified = detector.with_settings(replace(detector.settings, max_side=0, max_batch=1))
        zoom = SmallFaceZoom(
            lambda tiles: magnified.detect_batch(list(tiles), request.include_candidates),
            native_max_side=detector.settings.max_side,
        )
        deblurring = DeblurSettings()
        relaxed = {
            small: d.with_settings(
                replace(d.settings, large_face_score_threshold=deblurring.large_face_score(d.settings))
            )
            for small, d in ((False, detector), (True, reduced))
        }
        deblur = MotionDeblur(
            lambda frames, small: relaxed[small].detect_batch(list(frames), request.include_candidates)
        )

        def detect(frames: Sequence[np.ndarray], reduce: bool = False) -> list[Detections]:
            if not frames:
                return []
            with self._lock:
                in_pan = [deblur.in_pan(frame, reduce) for frame in frames]  # a pan's frames: restored first
                natively = [frame for frame, faces in zip(frames, in_pan, strict=True) if faces is None]
                looked = iter((reduced if reduce else detector).detect_batch(natively, request.include_candidates))
                found = [
                    faces if faces is not None else deblur.refine(frame, next(looked), reduce)
                    for frame, faces in zip(frames, in_pan, strict=True)
                ]
                if reduce:  # reduced frames are those of shots whose faces are all large
                    return found
                return [zoom.refine(frame, faces) for frame, faces in zip(frames, found, strict=True)]

        motion = request.include_camera_motion
        stream: Generator[_Processed, None, None]
        if request.adaptive_sampling:
            stream = _adaptive_frames(probe, start, end, stride, detect, motion, adaptive)
        else:
            stream = _strided_frames(probe.uri, start, end, stride, detector.settings.max_batch, detect, motion)
        with contextlib.closing(stream):
            for index, frame, detections, cut, affine in stream:
                if not context.is_active():
                    return
                faces = faces_to_proto(
                    frame, detections, request.include_crops, request.include_display_crops, deblur.was_restored(frame)
                )
                yield detector_pb2.DetectVideoResponse(
                    frame=common_pb2.FrameDetections(
                        frame_index=index,
                        timestamp_s=index / probe.fps,
                        faces=faces,
                        shot_boundary=cut,
                        camera_motion=[] if affine is None else affine.reshape(-1).tolist(),
                    )
                )

    def GetModelInfo(
        self, request: detector_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> detector_pb2.GetModelInfoResponse:
        return detector_pb2.GetModelInfoResponse(model=self._model.get().info)


def _frame_range(request: detector_pb2.DetectVideoRequest, frame_count: int) -> tuple[int, int, int]:
    stride = check_stride(request.stride, "every frame") or 1
    end = request.end_frame or frame_count
    if request.start_frame < 0 or request.start_frame >= frame_count:
        raise InvalidArgument(f"start_frame {request.start_frame} is outside the video (0..{frame_count - 1})")
    if end <= request.start_frame or end > frame_count:
        raise InvalidArgument(
            f"end_frame {request.end_frame} must be after start_frame and at most the frame count {frame_count}"
        )
    return request.start_frame, end, stride


@contextlib.contextmanager
def _decoding(target: Callable[..., None], args: tuple[Any, ...], out: queue.Queue[Any]) -> Iterator[Iterator[Any]]:
    """Run a decoder thread that puts items, then an exception or None, into `out`; yields the items,
    returning freed frame buffers to the OS every RELEASE_MEMORY_EVERY of them. On exit the thread is
    stopped (and unblocked if it waits on a full queue)."""
    stop = threading.Event()
    decoder = threading.Thread(target=target, args=(*args, stop), name="decode", daemon=True)
    decoder.start()

    def items() -> Iterator[Any]:
        for count in itertools.count():
            if count % RELEASE_MEMORY_EVERY == 0:
                release_freed_memory()
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield items()
    finally:
        stop.set()
        while decoder.is_alive():
            try:
                out.get_nowait()
            except queue.Empty:
                decoder.join(0.05)


# (frame index, BGR frame, starts a shot, camera motion since the previous processed frame or None)
_Decoded = tuple[int, np.ndarray, bool, "np.ndarray | None"]


def _decode_batches(
    uri: str,
    start: int,
    end: int,
    stride: int,
    batch_size: int,
    camera_motion: bool,
    out: queue.Queue[list[_Decoded] | BaseException | None],
    stop: threading.Event,
) -> None:
    cuts = ShotCutDetector()
    motion = CameraMotionEstimator() if camera_motion else None
    batch: list[_Decoded] = []
    try:
        for index, frame in iter_frames(uri, start, end, stride):
            if stop.is_set():
                return
            cut = cuts.is_cut(frame)
            affine = None
            if motion is not None:
                if cut:
                    motion.reset()  # no motion across a cut: the tracker starts over anyway
                affine = motion.estimate(frame)
            batch.append((index, frame, cut, affine))
            if len(batch) == batch_size:
                out.put(batch)
                batch = []
        if batch:
            out.put(batch)
        out.put(None)
    except BaseException as error:  # handed to the RPC thread, which raises it to the client
        out.put(error)


# (frame index, BGR frame, faces, starts a shot, camera motion since the previous processed frame)
_Processed = tuple[int, np.ndarray, Detections, bool, "np.ndarray | None"]
_Detect = Callable[[Sequence[np.ndarray], bool], list[Detections]]


def _strided_frames(
    uri: str, start: int, end: int, stride: int, batch: int, detect: _Detect, camera_motion: bool
) -> Generator[_Processed, None, None]:
    """Every stride-th frame, detected in batches while the next ones decode."""
    batches: queue.Queue[list[_Decoded] | BaseException | None] = queue.Queue(PREFETCH_BATCHES)
    with _decoding(_decode_batches, (uri, start, end, stride, batch, camera_motion, batches), batches) as items:
        for item in items:
            results = detect([frame for _, frame, _, _ in item], False)
            for (index, frame, cut, motion), detections in zip(item, results, strict=True):
                yield index, frame, detections, cut, motion


def _adaptive_frames(
    probe: VideoProbe,
    start: int,
    end: int,
    stride: int,
    detect: _Detect,
    camera_motion: bool,
    settings: AdaptiveSettings,
) -> Generator[_Processed, None, None]:
    """Every stride-th frame and the frames between that adaptive sampling asks for, in order."""
    chunks: queue.Queue[Chunk | BaseException | None] = queue.Queue(ADAPTIVE_PREFETCH_CHUNKS)
    decode = (probe.uri, start, end, stride, ADAPTIVE_CHUNK_BASE_FRAMES, end == probe.frame_count, chunks)
    cuts = ShotCutDetector()
    sampler = AdaptiveSampler(detect, cuts.compare, cuts.settings.max_correlation, settings)
    motion = CameraMotionEstimator() if camera_motion else None
    with _decoding(_decode_chunks, decode, chunks) as items:
        for chunk in items:
            for p in sampler.process(chunk):
                affine = None
                if motion is not None:
                    if p.cut:
                        motion.reset()  # no motion across a cut: the tracker starts over anyway
                    affine = motion.estimate(p.frame)
                yield p.index, p.frame, p.detections, p.cut, affine


def _decode_chunks(
    uri: str,
    start: int,
    end: int,
    stride: int,
    base_per_chunk: int,
    video_end: bool,
    out: queue.Queue[Chunk | BaseException | None],
    stop: threading.Event,
) -> None:
    """Every frame, in chunks of `base_per_chunk` stride-th frames with the frames between (adaptive
    sampling). At the end of the video its last frame is a base frame too, so the tail is covered;
    elsewhere the frames after the last base frame belong to the next segment's first window."""
    cuts = ShotCutDetector()
    frames: dict[int, np.ndarray] = {}
    base: list[int] = []
    cut_before: dict[int, bool] = {}
    last = -1
    try:
        for index, frame in iter_frames(uri, start, end, 1):
            if stop.is_set():
                return
            frames[index], last = frame, index
            if (index - start) % stride == 0:
                base.append(index)
                cut_before[index] = cuts.is_cut(frame)
                if len(base) == base_per_chunk:
                    out.put(Chunk(frames, base, cut_before))
                    frames, base, cut_before = {}, [], {}
        if video_end and last in frames and last not in cut_before:
            base.append(last)
            cut_before[last] = cuts.is_cut(frames[last])
        if base:
            out.put(Chunk({i: f for i, f in frames.items() if i <= base[-1]}, base, cut_before))
        out.put(None)
    except BaseException as error:  # handed to the RPC thread, which raises it to the client
        out.put(error)
