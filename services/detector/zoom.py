"""Small faces at 720p/1080p: a second, magnified look at the parts of a shot where small faces are.

RetinaFace (mnet0.25) at native resolution finds a 17-22 px face of a 720p crowd shot in fewer than
half of the frames (the hard episode: 0-4 of 8 per frame); the same frame magnified 1.5-2x gives all
eight, confident. Magnifying every frame would cost ~4x, so the zoom is decided from what the native
pass finds, per shot:

- a full-size frame whose native pass has a confident face under `small_px` looks at the whole frame
  magnified `scale` times (candidates alone do not: clutter scores as high as a small face's weak
  frames);
- if that finds faces the native pass missed, the region around the small faces (a margin wide) is
  magnified on the next full-size frames, for as long as it keeps finding faces native misses;
- if not, native resolution serves this shot: the next look is `explore_every` small-face frames later.
  Large-face shots never pay.

Zoomed faces are mapped back to frame pixels and merged with the native ones (NMS: one box per face).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from services.common.detections import Detections
from services.common.thresholds import MIN_FACE_PX
from services.detector.retinaface import nms

# (frames, include_candidates) -> detections of each frame, in frame pixels.
DetectFn = Callable[[Sequence[np.ndarray]], list[Detections]]


@dataclass(frozen=True)
class ZoomSettings:
    # Short side (frame px) under which a face or candidate calls for a zoom. RetinaFace's recall is
    # full from ~2x its smallest anchor (16 px); under 32 px it flickers (0.4-0.95 frame to frame).
    small_px: float = 32.0
    # Magnification: 2x puts a 17-22 px face at 34-44 px, where every crowd face of the hard episode
    # scores >= 0.96 (1.5x missed 1 of 8 in one frame). Cost ~ the magnified pixels: 4x a frame.
    scale: float = 2.0
    # Around the small faces found, the zoomed region reaches this far (frame px), so a face moving
    # or a neighbour in the crowd is in it next time; about 3 small faces.
    margin_px: int = 96
    # Full-size frames with small faces between two looks at the whole frame when the last look found
    # nothing the native pass had not (~10 s of base frames at the default sampling): native
    # resolution serves such shots, and a look costs 4 frames.
    explore_every: int = 25
    # Zoomed frames in a row that add nothing before zooming stops (the small faces grew, or left).
    patience: int = 3
    # NMS IoU when merging zoomed and native faces (RetinaFace's own value).
    merge_iou: float = 0.4

    def __post_init__(self) -> None:
        if self.scale <= 1.0 or self.small_px <= 0 or self.explore_every < 1 or self.margin_px < 0 or self.patience < 1:
            raise ValueError(
                f"need scale > 1, small_px > 0, margin_px >= 0 and explore_every >= 1; got {self.scale}, "
                f"{self.small_px}, {self.margin_px}, {self.explore_every}"
            )


def _short_sides(detections: Detections) -> np.ndarray:
    return np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])


Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


@dataclass
class SmallFaceZoom:
    """Per-stream state: where zooming has found small faces the native pass missed."""

    detect: DetectFn
    settings: ZoomSettings = field(default_factory=ZoomSettings)
    _region: Region | None = None  # where zooming pays, while it does
    _idle: int = 0  # zoomed frames in a row that found nothing the native pass had not
    _since_explore: int = -1  # frames with small faces since the last look at the whole frame (-1: never)
    zoomed_pixels: int = 0  # for benchmarks: magnified pixels detected so far

    def refine(self, frame: np.ndarray, native: Detections) -> Detections:
        """The native detections of a full-size frame, plus the small faces a zoom finds."""
        height, width = frame.shape[:2]
        small = native[(_short_sides(native) < self.settings.small_px) & native.confident]
        if self._region is not None:
            region = self._around(small, width, height, self._region)
        elif len(small) and (self._since_explore < 0 or self._since_explore >= self.settings.explore_every):
            region, self._since_explore = (0, 0, width, height), 0
        else:
            if len(small):
                self._since_explore += 1
            return native  # candidates alone (clutter scores 0.5-0.9 too) never start a zoom
        merged = self._merge(native, self._zoom(frame, region))
        found = merged[(_short_sides(merged) < self.settings.small_px) & merged.confident]
        if len(found) > len(small):  # faces the native pass missed: keep zooming where they are
            self._region, self._idle = self._around(found, width, height), 0
        else:
            self._idle += 1
            if self._region is None or self._idle >= self.settings.patience:
                self._region = None
        return merged

    def _around(self, faces: Detections, width: int, height: int, also: Region | None = None) -> Region:
        """The faces' bounding box grown by the margin, joined with `also` (as it is), inside the frame."""
        m = self.settings.margin_px
        boxes = [also] if also is not None else []
        if len(faces):
            xyxy = faces.xyxy
            grown = (xyxy[:, 0].min() - m, xyxy[:, 1].min() - m, xyxy[:, 2].max() + m, xyxy[:, 3].max() + m)
            boxes.append(grown)
        joined = np.asarray(boxes, np.float64)
        return (
            max(0, int(joined[:, 0].min())),
            max(0, int(joined[:, 1].min())),
            min(width, int(math.ceil(joined[:, 2].max()))),
            min(height, int(math.ceil(joined[:, 3].max()))),
        )

    def _zoom(self, frame: np.ndarray, region: Region) -> Detections:
        x1, y1, x2, y2 = region
        scale = self.settings.scale
        crop = cv2.resize(frame[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        self.zoomed_pixels += crop.shape[0] * crop.shape[1]
        (found,) = self.detect([crop])
        if not len(found):
            return found
        boxes = found.xyxy / scale + np.array([x1, y1, x1, y1], np.float32)
        # Cut by the region's edge (not the frame's): that face is larger than the margin, native has it.
        edge = 2.0
        inside = (
            ((boxes[:, 0] > x1 + edge) | (x1 == 0))
            & ((boxes[:, 1] > y1 + edge) | (y1 == 0))
            & ((boxes[:, 2] < x2 - edge) | (x2 == frame.shape[1]))
            & ((boxes[:, 3] < y2 - edge) | (y2 == frame.shape[0]))
        )
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        # Only small faces come from the zoom: large ones are the native pass's, at their own scale.
        keep = inside & (sides >= MIN_FACE_PX) & (sides < 2 * self.settings.small_px)
        return Detections(
            xyxy=boxes[keep],
            scores=found.scores[keep],
            landmarks=found.landmarks[keep] / scale + np.array([x1, y1], np.float32),
            confident=found.confident[keep],
        )

    def _merge(self, native: Detections, zoomed: Detections) -> Detections:
        if not len(zoomed):
            return native
        both = Detections.merge([native, zoomed])
        # A confident face wins over a candidate, then the higher score.
        rank = both.scores + both.confident.astype(np.float32)
        keep = nms(both.xyxy, rank, self.settings.merge_iou)
        return both[np.sort(keep)]
