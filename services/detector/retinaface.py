"""RetinaFace (MobileNet-0.25, biubug6 export) model core: priors, decoding, NMS, batched detection.

Only numpy/OpenCV here; the model itself runs behind an InferenceBackend so the same code serves
onnxruntime in-process and Triton later. The gRPC service wraps RetinaFaceDetector. What the network
was trained with (input normalisation, anchor layout, SSD variances) is read from its model manifest
entry (RetinaFaceLayout), never written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from services.common.backends import InferenceBackend
from services.common.boxes import iou_matrix
from services.common.detections import NUM_LANDMARKS, Detections
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.model_manifest import ModelSpec
from services.common.thresholds import MIN_FACE_PX

# The detector's entry in the model manifest.
MODEL_NAME = "retinaface_mnet025"
# Candidates kept (best scores first) before NMS: bounds NMS cost (O(K^2)) on pathological frames
# such as textured crowds; a real frame has far fewer than this above any sane threshold.
PRE_NMS_TOP_K = 2000


@dataclass(frozen=True)
class RetinaFaceLayout:
    """What the network was trained with (biubug6 cfg_mnet for this export): how to feed it and how
    to decode its outputs. Read from the model manifest (from_spec); any other value breaks decoding."""

    # Anchors: one level per feature-map stride (px), with that level's anchor sizes (px).
    steps: tuple[int, ...]
    min_sizes: tuple[tuple[int, ...], ...]
    center_variance: float  # SSD variance of the centre offsets
    size_variance: float  # SSD variance of the log size ratios
    # Per-channel input normalisation, (pixel - mean) / std, in the channel order the network takes.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rgb: bool  # the network takes RGB (frames are BGR)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RetinaFaceLayout:
        """The layout of a manifest entry; FailedPrecondition naming the manifest key that is missing
        or malformed."""
        key = "priors.steps"
        try:
            steps = tuple(int(step) for step in spec.fact("priors", "steps"))
            key = "priors.min_sizes"
            min_sizes = tuple(tuple(int(size) for size in level) for level in spec.fact("priors", "min_sizes"))
            key = "priors.variances"
            center_variance, size_variance = (float(v) for v in spec.fact("priors", "variances"))
            key = "preprocessing.mean"
            mean = tuple(float(v) for v in spec.fact("preprocessing", "mean"))
            key = "preprocessing.std"
            std = tuple(float(v) for v in spec.preprocessing.get("std", (1.0,) * len(mean)))
            key = "preprocessing.color_order"
            color_order = str(spec.fact("preprocessing", "color_order")).upper()
        except (TypeError, ValueError) as exc:
            raise FailedPrecondition(
                f"model manifest entry {spec.name} has a malformed {key} ({exc}); run `make models` to regenerate it."
            ) from exc
        problems = {
            "priors.min_sizes": len(min_sizes) != len(steps) or not all(steps) or not all(min_sizes),
            "preprocessing.mean": len(mean) != 3,
            "preprocessing.std": len(std) != 3 or 0.0 in std,
            "preprocessing.color_order": color_order not in ("BGR", "RGB"),
        }
        for key, bad in problems.items():
            if bad:
                raise FailedPrecondition(
                    f"model manifest entry {spec.name} has an unusable {key}; run `make models` to regenerate it."
                )
        return cls(steps, min_sizes, center_variance, size_variance, mean, std, color_order == "RGB")


@lru_cache(maxsize=32)
def _prior_boxes_cached(
    height: int, width: int, steps: tuple[int, ...], level_sizes: tuple[tuple[int, ...], ...]
) -> np.ndarray:
    rows = []
    for step, min_sizes in zip(steps, level_sizes, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        # Row-major over the map (i = row, j = column), then over the level's min sizes.
        jj, ii = np.meshgrid(np.arange(fw, dtype=np.float64), np.arange(fh, dtype=np.float64))
        cx = ((jj + 0.5) * step / width).reshape(-1, 1)
        cy = ((ii + 0.5) * step / height).reshape(-1, 1)
        n_sizes = len(min_sizes)
        sizes = np.asarray(min_sizes, dtype=np.float64)
        level = np.empty((cx.shape[0], n_sizes, 4), dtype=np.float64)
        level[:, :, 0] = cx
        level[:, :, 1] = cy
        level[:, :, 2] = sizes / width
        level[:, :, 3] = sizes / height
        rows.append(level.reshape(-1, 4))
    priors = np.concatenate(rows, axis=0).astype(np.float32)
    # Shared between callers through the cache: nobody may modify it.
    priors.setflags(write=False)
    return priors


def prior_boxes(height: int, width: int, layout: RetinaFaceLayout) -> np.ndarray:
    """(P, 4) priors (cx, cy, w, h) normalised by the network input size, in the network's output order.

    Cached per size (a TV episode has one frame size) and layout, and returned read-only.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"prior_boxes needs a positive size, got height={height} width={width}")
    return _prior_boxes_cached(int(height), int(width), layout.steps, layout.min_sizes)


def decode_boxes(loc: np.ndarray, priors: np.ndarray, layout: RetinaFaceLayout) -> np.ndarray:
    """SSD decoding of (P, 4) regressions against (P, 4) priors into normalised (P, 4) x1y1x2y2."""
    centers = priors[:, :2] + loc[:, :2] * layout.center_variance * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * layout.size_variance)
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)


def decode_landmarks(landmarks: np.ndarray, priors: np.ndarray, layout: RetinaFaceLayout) -> np.ndarray:
    """Decode (P, 10) landmark regressions into normalised (P, 5, 2) points."""
    offsets = landmarks.reshape(-1, NUM_LANDMARKS, 2)
    points = priors[:, None, :2] + offsets * layout.center_variance * priors[:, None, 2:]
    return points.astype(np.float32)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first.

    A box is dropped when its IoU with an already kept box is strictly above iou_threshold.
    Ties in score keep the earlier box (stable sort), so results are deterministic.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        iw = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


@dataclass(frozen=True)
class RetinaFaceSettings:
    """Detector knobs; the defaults were chosen by measurement on the real media in .cache/faceflow.

    Acceptance is size-aware: the score a candidate needs rises from score_threshold for faces
    up to ramp_start_px to large_face_score_threshold for faces of ramp_end_px and more (short
    side, in network-input pixels). Measured: real faces with >= 48 px of evidence score
    >= 0.996 (photos, Pexels clips, bikes), while the cartoon faces of bigbuckbunny peak at
    0.978-0.991 at 48-140 px; small real faces (21-24 px) score only 0.87-0.99. One global
    threshold cannot separate both, a size-aware one can.
    """

    # Face probability (softmax column 1) a small face needs. Tiny real faces (21-24 px,
    # bikes.mp4) score 0.87-0.99, background blobs 0.65-0.87 at 39-51 px.
    score_threshold: float = 0.9
    # Face probability a face of >= ramp_end_px network pixels needs: real ones score >= 0.996
    # (one 176x144 carphone frame of 120 dips below and is lost), the cartoon trap peaks at
    # 0.9906; 0.994 is the midpoint in logit space. Lower it if animation is not a concern.
    large_face_score_threshold: float = 0.994
    # Short side (network-input px) below which score_threshold applies unchanged.
    ramp_start_px: float = 24.0
    # Short side (network-input px) from which large_face_score_threshold applies; linear between.
    ramp_end_px: float = 48.0
    # IoU above which the lower-scored of two boxes is a duplicate of the same face. 0.4 is the
    # RetinaFace reference value; faces in a TV frame rarely overlap that much.
    nms_iou: float = 0.4
    # Long side (px) frames are downscaled to before inference (0 = native). 1280 keeps a
    # 1280x720 frame native, so a 20 px face still meets the smallest (16 px) anchor; 1080p runs
    # at 2/3 scale (20 px -> 13 px: marginal, set 1920 for tiny faces in 1080p). Cost grows with
    # the pixel count: ~4x that of 640.
    max_side: int = 1280
    # Faces whose box short side, in original-frame px, is below this are dropped (MIN_FACE_PX:
    # below it neither the landmarks nor the embedder give a usable identity).
    min_face_px: float = MIN_FACE_PX
    # Frames per backend call: bounds memory (one 1280x720 frame is 11 MB as float32 NCHW).
    max_batch: int = 8
    # Face probability from which, when candidates are asked for (video), faces below the rules
    # above are still returned, marked not confident. The tracker uses them only to continue an
    # existing track (ByteTrack's low-score association), never to start one: measured on the
    # sample episode, a 22x30 px face scores 0.41-0.95 frame to frame, so a track born on a
    # confident frame survives its weak frames instead of flickering. Clutter and the cartoon
    # trap score up to 0.97 here too, but cannot start a track, so they never reach the output.
    candidate_score: float = 0.5

    def __post_init__(self) -> None:
        for name in ("score_threshold", "large_face_score_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.large_face_score_threshold < self.score_threshold:
            raise ValueError(
                f"large_face_score_threshold ({self.large_face_score_threshold}) must be >= "
                f"score_threshold ({self.score_threshold})"
            )
        if not 0.0 <= self.ramp_start_px <= self.ramp_end_px:
            raise ValueError(
                f"need 0 <= ramp_start_px <= ramp_end_px, got {self.ramp_start_px} and {self.ramp_end_px} px"
            )
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_side < 0 or 0 < self.max_side < 32:
            raise ValueError(f"max_side must be 0 (native) or >= 32 px, got {self.max_side}")
        if self.min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0 px, got {self.min_face_px}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0.0 < self.candidate_score <= self.score_threshold:
            raise ValueError(f"candidate_score must be in (0, score_threshold], got {self.candidate_score}")

    def required_score(self, short_side_net_px: np.ndarray) -> np.ndarray:
        """Score each candidate needs, given its box short side in network-input pixels."""
        span = self.ramp_end_px - self.ramp_start_px
        if span <= 0:
            progress = (short_side_net_px >= self.ramp_end_px).astype(np.float32)
        else:
            progress = np.clip((short_side_net_px - self.ramp_start_px) / span, 0.0, 1.0)
        return self.score_threshold + progress * (self.large_face_score_threshold - self.score_threshold)


def network_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) fed to the network: downscaled so the long side is <= max_side, never upscaled."""
    if max_side <= 0 or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class RetinaFaceDetector:
    """Finds faces with 5 landmarks in BGR frames; frames of one size are batched into one model call.

    spec: the model's manifest entry (load_model returns it with the backend): priors, variances and
    input normalisation come from it.
    """

    def __init__(self, backend: InferenceBackend, settings: RetinaFaceSettings, spec: ModelSpec) -> None:
        self._backend = backend
        self._settings = settings
        self._spec = spec
        self._layout = RetinaFaceLayout.from_spec(self._spec)
        # None when every std is 1: dividing by 1 changes nothing but costs a pass over the batch.
        self._std = None if set(self._layout.std) == {1.0} else np.asarray(self._layout.std, dtype=np.float32)

    @property
    def settings(self) -> RetinaFaceSettings:
        return self._settings

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def layout(self) -> RetinaFaceLayout:
        return self._layout

    def with_settings(self, settings: RetinaFaceSettings) -> RetinaFaceDetector:
        """The same model and backend with other settings."""
        return RetinaFaceDetector(self._backend, settings, self._spec)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Faces of one frame."""
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames_bgr: Sequence[np.ndarray], include_candidates: bool = False) -> list[Detections]:
        """Faces of each frame, in input order. Frames may differ in size; equal sizes share a call.

        With include_candidates, faces scoring at least candidate_score but below the confidence
        rule are returned too, with confident=False.
        """
        for index, frame in enumerate(frames_bgr):
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
                shape = getattr(frame, "shape", None)
                raise InvalidArgument(f"frame {index} must be an HxWx3 BGR image, got shape {shape}")
            if frame.dtype != np.uint8:
                raise InvalidArgument(f"frame {index} must be uint8 BGR, got dtype {frame.dtype}")
            if frame.shape[0] == 0 or frame.shape[1] == 0:
                raise InvalidArgument(f"frame {index} is empty: shape {frame.shape}")
        groups: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames_bgr):
            groups.setdefault((frame.shape[0], frame.shape[1]), []).append(index)
        results: list[Detections | None] = [None] * len(frames_bgr)
        for (height, width), indices in groups.items():
            for start in range(0, len(indices), self._settings.max_batch):
                chunk = indices[start : start + self._settings.max_batch]
                detections = self._detect_same_size([frames_bgr[i] for i in chunk], height, width, include_candidates)
                for i, dets in zip(chunk, detections, strict=True):
                    results[i] = dets
        return [r if r is not None else Detections.empty() for r in results]

    def _detect_same_size(
        self, frames: list[np.ndarray], height: int, width: int, include_candidates: bool
    ) -> list[Detections]:
        net_h, net_w = network_size(height, width, self._settings.max_side)
        batch = self._preprocess(frames, net_h, net_w)
        outputs = self._backend.infer(batch)
        if len(outputs) < 3:
            raise FailedPrecondition(
                f"{self._backend.name} returned {len(outputs)} outputs; RetinaFace needs loc, conf, landmarks"
            )
        loc, conf, landmarks = outputs[:3]
        priors = prior_boxes(net_h, net_w, self._layout)
        if loc.shape[:2] != (len(frames), priors.shape[0]):
            raise FailedPrecondition(
                f"{self._backend.name} returned loc of shape {loc.shape} for a {net_w}x{net_h} batch of "
                f"{len(frames)}; expected ({len(frames)}, {priors.shape[0]}, 4): wrong model export?"
            )
        return [
            self._postprocess(loc[b], conf[b], landmarks[b], priors, height, width, net_h, net_w, include_candidates)
            for b in range(len(frames))
        ]

    def _preprocess(self, frames: list[np.ndarray], net_h: int, net_w: int) -> np.ndarray:
        """(N, 3, net_h, net_w) float32 network input: resized, channel order, (pixel - mean) / std.

        Each channel plane is split out and mean-subtracted by OpenCV straight into the batch
        (~1.4 ms per 720p frame); cv2.dnn.blobFromImages, which does the same in one call, took
        12-25 ms per 720p frame, a third of the model's own time."""
        batch = np.empty((len(frames), 3, net_h, net_w), dtype=np.float32)
        channel_order = (2, 1, 0) if self._layout.rgb else (0, 1, 2)
        for index, frame in enumerate(frames):
            if (net_h, net_w) != frame.shape[:2]:
                # INTER_AREA averages source pixels when shrinking: no aliasing on fine textures.
                frame = cv2.resize(frame, (net_w, net_h), interpolation=cv2.INTER_AREA)
            planes = cv2.split(frame)
            for channel, (source, mean) in enumerate(zip(channel_order, self._layout.mean, strict=True)):
                # OpenCV takes a scalar second operand; its type stubs list only arrays.
                cv2.subtract(planes[source], mean, dst=batch[index, channel], dtype=cv2.CV_32F)  # type: ignore[call-overload]
        if self._std is not None:
            batch /= self._std.reshape(1, 3, 1, 1)
        return batch

    def _postprocess(
        self,
        loc: np.ndarray,
        conf: np.ndarray,
        landmarks: np.ndarray,
        priors: np.ndarray,
        height: int,
        width: int,
        net_h: int,
        net_w: int,
        include_candidates: bool = False,
    ) -> Detections:
        s = self._settings
        scores = conf[:, 1]
        floor = s.candidate_score if include_candidates else s.score_threshold
        candidates = np.flatnonzero(scores > floor)
        if candidates.size == 0:
            return Detections.empty()
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:PRE_NMS_TOP_K]]
        cand_scores = scores[candidates]
        boxes_norm = decode_boxes(loc[candidates], priors[candidates], self._layout)
        # Evidence the network saw is measured in its own input pixels, not the frame's.
        net_short = np.minimum(
            (boxes_norm[:, 2] - boxes_norm[:, 0]) * net_w, (boxes_norm[:, 3] - boxes_norm[:, 1]) * net_h
        )
        # Normalised coordinates -> original-frame pixels (independent of the network size).
        box_scale = np.array([width, height, width, height], dtype=np.float32)
        boxes = boxes_norm * box_scale
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        short_side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        # Accept before NMS, so a rejected candidate can never suppress an accepted one.
        big_enough = short_side >= s.min_face_px
        confident = cand_scores >= s.required_score(net_short)
        accepted = np.flatnonzero(confident & big_enough)
        keep = accepted[nms(boxes[accepted], cand_scores[accepted], s.nms_iou)]
        if include_candidates:
            weak = np.flatnonzero(~confident & big_enough)
            if keep.size and weak.size:  # a weak box on an accepted face is a duplicate, not a candidate
                weak = weak[iou_matrix(boxes[weak], boxes[keep]).max(axis=1) <= s.nms_iou]
            keep = np.concatenate([keep, weak[nms(boxes[weak], cand_scores[weak], s.nms_iou)]])
        if keep.size == 0:
            return Detections.empty()
        points = decode_landmarks(landmarks[candidates[keep]], priors[candidates[keep]], self._layout) * box_scale[:2]
        return Detections(xyxy=boxes[keep], scores=cand_scores[keep], landmarks=points, confident=confident[keep])
