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

Every look is cut into tiles of exactly the native pass's network input (1280x720 for 720p): the
magnification is chosen per look (1.8-2x) so that a whole 720p frame is four tiles with a margin of
overlap, and a region one or a few. onnxruntime keeps the activations of every input shape it has
seen; a 2560x1440 look grew the detector by ~290 MB, tiles of the native shape by nothing.

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
from services.detector.retinaface import network_size, nms

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
    # The least magnification a look may use so that its tiles cover it: 1.875x lets four native-shape
    # tiles cover a whole frame (2x would need nine), and 1.8x still puts a 20 px face at 36 px.
    min_scale: float = 1.8
    # Frame px that neighbouring tiles share: a face up to this wide (less 2 px) is whole in one of
    # them, and the faces a zoom is for are under small_px. Wider would need more tiles on 360p frames.
    tile_overlap_px: int = 36
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
        if (
            not 1.0 < self.min_scale <= self.scale
            or self.small_px <= 0
            or self.explore_every < 1
            or self.margin_px < 0
            or self.patience < 1
            or self.tile_overlap_px < 0
        ):
            raise ValueError(
                f"need 1 < min_scale <= scale, small_px > 0, margin_px >= 0, tile_overlap_px >= 0, "
                f"explore_every >= 1 and patience >= 1; got {self}"
            )


def _short_sides(detections: Detections) -> np.ndarray:
    return np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])


Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


@dataclass
class SmallFaceZoom:
    """Per-stream state: where zooming has found small faces the native pass missed."""

    detect: DetectFn
    settings: ZoomSettings = field(default_factory=ZoomSettings)
    # The native pass's max_side: every tile is the shape that pass feeds the network.
    native_max_side: int = 1280
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
        height, width = frame.shape[:2]
        tile_h, tile_w = network_size(height, width, self.native_max_side)
        windows = self.windows(region, width, height)
        tiles = [
            cv2.resize(frame[y1:y2, x1:x2], (tile_w, tile_h), interpolation=cv2.INTER_LINEAR)
            for x1, y1, x2, y2 in windows
        ]
        self.zoomed_pixels += len(tiles) * tile_w * tile_h
        found = [
            self._in_frame(faces, window, tile_w, tile_h, width, height)
            for faces, window in zip(self.detect(tiles), windows, strict=True)
        ]
        return Detections.merge(found) if found else Detections.empty()

    def windows(self, region: Region, width: int, height: int) -> list[Region]:
        """The frame windows (x1, y1, x2, y2) that, each magnified to the native network input, cover
        `region` with tile_overlap_px shared between neighbours, magnified as close to `scale` as
        whole tiles allow (at least min_scale)."""
        s = self.settings
        tile_h, tile_w = network_size(height, width, self.native_max_side)
        x1, y1, x2, y2 = region

        def tiles_and_scale(length: int, tile: int) -> tuple[int, float]:
            overlap = min(s.tile_overlap_px, tile / s.min_scale / 2)
            count = max(1, math.ceil((length - overlap) / (tile / s.min_scale - overlap)))
            return count, min(s.scale, count * tile / (length + (count - 1) * overlap))

        nx, scale_x = tiles_and_scale(x2 - x1, tile_w)
        ny, scale_y = tiles_and_scale(y2 - y1, tile_h)
        scale = min(scale_x, scale_y)
        win_w, win_h = min(width, round(tile_w / scale)), min(height, round(tile_h / scale))

        def starts(lo: int, hi: int, count: int, window: int, limit: int) -> list[int]:
            if count == 1:  # one window, centred on the region
                return [int(np.clip(round((lo + hi - window) / 2), 0, limit - window))]
            lo, hi = max(0, min(lo, limit - window)), min(limit, max(hi, window))
            return [round(lo + i * (hi - window - lo) / (count - 1)) for i in range(count)]

        return [
            (x, y, x + win_w, y + win_h)
            for y in starts(y1, y2, ny, win_h, height)
            for x in starts(x1, x2, nx, win_w, width)
        ]

    def _in_frame(
        self, found: Detections, window: Region, tile_w: int, tile_h: int, width: int, height: int
    ) -> Detections:
        """One tile's faces in frame pixels: the small ones whole inside their window."""
        if not len(found):
            return found
        x1, y1, x2, y2 = window
        fx, fy = tile_w / (x2 - x1), tile_h / (y2 - y1)
        boxes = found.xyxy / np.array([fx, fy, fx, fy], np.float32) + np.array([x1, y1, x1, y1], np.float32)
        # Cut by the window's edge (not the frame's): a neighbouring tile has it whole, or native does.
        edge = 2.0
        inside = (
            ((boxes[:, 0] > x1 + edge) | (x1 == 0))
            & ((boxes[:, 1] > y1 + edge) | (y1 == 0))
            & ((boxes[:, 2] < x2 - edge) | (x2 == width))
            & ((boxes[:, 3] < y2 - edge) | (y2 == height))
        )
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        # Only small faces come from the zoom: large ones are the native pass's, at their own scale.
        keep = inside & (sides >= MIN_FACE_PX) & (sides < 2 * self.settings.small_px)
        return Detections(
            xyxy=boxes[keep],
            scores=found.scores[keep],
            landmarks=found.landmarks[keep] / np.array([fx, fy], np.float32) + np.array([x1, y1], np.float32),
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
