"""gRPC DetectorService: decodes videos itself and streams per-frame faces with aligned crops."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import grpc
import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, detector_pb2_grpc

from services.common.alignment import align_faces
from services.common.backends import InferenceBackend
from services.common.detections import Detections
from services.common.errors import InvalidArgument
from services.common.face_quality import face_quality
from services.common.sampling import check_stride
from services.common.warm import WarmValue
from services.detector.camera_motion import CameraMotionEstimator
from services.detector.display_crops import display_crop_jpeg
from services.detector.retinaface import RetinaFaceDetector
from services.detector.shots import ShotCutDetector
from services.detector.sources import VideoSources
from services.detector.video import VideoProbe, display_uri, iter_frames, probe_video

SERVICE_NAME = detector_pb2.DESCRIPTOR.services_by_name["DetectorService"].full_name
# Decoded frames waiting for the model: decoding runs ahead in its own thread (OpenCV releases the
# GIL) so decode and inference overlap; 2 batches ahead is enough to hide decode time.
PREFETCH_BATCHES = 2
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
    frame_bgr: np.ndarray, detections: Detections, include_crops: bool, include_display_crops: bool = False
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
        batch_size = detector.settings.max_batch
        batches: queue.Queue[list[_Decoded] | BaseException | None] = queue.Queue(PREFETCH_BATCHES)
        stop = threading.Event()
        decoder = threading.Thread(
            target=_decode_batches,
            args=(probe.uri, start, end, stride, batch_size, batches, stop, request.include_camera_motion),
            name="decode",
            daemon=True,
        )
        decoder.start()
        try:
            while context.is_active():
                item = batches.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                with self._lock:
                    results = detector.detect_batch([frame for _, frame, _, _ in item], request.include_candidates)
                for (index, frame, cut, motion), detections in zip(item, results, strict=True):
                    yield detector_pb2.DetectVideoResponse(
                        frame=common_pb2.FrameDetections(
                            frame_index=index,
                            timestamp_s=index / probe.fps,
                            faces=faces_to_proto(
                                frame, detections, request.include_crops, request.include_display_crops
                            ),
                            shot_boundary=cut,
                            camera_motion=[] if motion is None else motion.reshape(-1).tolist(),
                        )
                    )
        finally:
            stop.set()
            while decoder.is_alive():  # unblock a producer waiting on a full queue
                try:
                    batches.get_nowait()
                except queue.Empty:
                    decoder.join(0.05)

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


# (frame index, BGR frame, starts a shot, camera motion since the previous processed frame or None)
_Decoded = tuple[int, np.ndarray, bool, "np.ndarray | None"]


def _decode_batches(
    uri: str,
    start: int,
    end: int,
    stride: int,
    batch_size: int,
    out: queue.Queue[list[_Decoded] | BaseException | None],
    stop: threading.Event,
    camera_motion: bool = False,
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
