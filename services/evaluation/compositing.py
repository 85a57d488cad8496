"""Compositing primitives for the synthetic sample episode, built so ground truth is exact.

Every face pixel that reaches the episode gets there through a scale-and-translate transform whose
action on the source face box is known in closed form; the box annotated once on the clean source
is carried through that transform instead of being re-detected on the composite. No rotation is
ever applied, so an axis-aligned box stays an exact axis-aligned box.

Coordinates are continuous pixels: pixel column i covers [i, i + 1), as detector boxes are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

# Head-and-shoulders ellipse around a face box, in face widths/heights (measured on the photos:
# hair reaches ~0.6 face heights above the box, shoulders start ~0.9 below it).
CUTOUT_HALF_WIDTH_FACE_WIDTHS = 1.25
CUTOUT_HAIR_FACE_HEIGHTS = 0.6
CUTOUT_SHOULDER_FACE_HEIGHTS = 0.9
# Gaussian feather of the alpha edge (sigma), in face widths: wide enough to hide the cut line.
FEATHER_SIGMA_FACE_WIDTHS = 0.06
# An occluder pixel hides what is below it when its alpha is at least this.
OCCLUDING_ALPHA = 0.5
# Boxes clipped to the frame narrower than this (px) are dropped: nothing recognisable is left.
MIN_BOX_SIDE_PX = 2.0


@dataclass(frozen=True)
class FaceAnnotation:
    """One face on a source image: box (x1, y1, x2, y2) and 5 landmarks (ArcFace order), in px."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def shifted(self, dx: float, dy: float) -> FaceAnnotation:
        """The same face in a coordinate system whose origin moved by (dx, dy)."""
        x1, y1, x2, y2 = self.box
        return FaceAnnotation(
            box=(x1 - dx, y1 - dy, x2 - dx, y2 - dy),
            landmarks=tuple((x - dx, y - dy) for x, y in self.landmarks),
        )


@dataclass(frozen=True)
class Similarity:
    """x' = scale * x + tx, y' = scale * y + ty in continuous pixel coordinates."""

    scale: float
    tx: float
    ty: float

    def apply_box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        s = self.scale
        return (s * box[0] + self.tx, s * box[1] + self.ty, s * box[2] + self.tx, s * box[3] + self.ty)

    def apply_face(self, face: FaceAnnotation) -> FaceAnnotation:
        s = self.scale
        return FaceAnnotation(
            box=self.apply_box(face.box),
            landmarks=tuple((s * x + self.tx, s * y + self.ty) for x, y in face.landmarks),
        )

    def pixel_matrix(self, origin_x: int = 0, origin_y: int = 0) -> np.ndarray:
        """2x3 matrix for cv2.warpAffine, which maps pixel *indices* (centres at i + 0.5).

        origin shifts the destination so a region of interest starting at (origin_x, origin_y)
        can be rendered on its own.
        """
        s = self.scale
        half = 0.5 * (s - 1.0)
        return np.array([[s, 0.0, self.tx + half - origin_x], [0.0, s, self.ty + half - origin_y]], dtype=np.float64)


def place_face(face: FaceAnnotation, center: tuple[float, float], face_height: float) -> Similarity:
    """Transform that puts the face box centre at `center` with the box `face_height` px tall."""
    scale = face_height / face.height
    cx = 0.5 * (face.box[0] + face.box[2])
    cy = 0.5 * (face.box[1] + face.box[3])
    return Similarity(scale=scale, tx=center[0] - scale * cx, ty=center[1] - scale * cy)


def cover_transform(src_w: int, src_h: int, dst_w: int, dst_h: int, zoom: float = 1.0) -> Similarity:
    """Scale a source about its centre so it covers the destination (times `zoom` >= 1)."""
    if zoom < 1.0:
        raise ValueError(f"zoom must be >= 1 so the frame stays covered, got {zoom}")
    scale = max(dst_w / src_w, dst_h / src_h) * zoom
    return Similarity(scale=scale, tx=dst_w / 2 - scale * src_w / 2, ty=dst_h / 2 - scale * src_h / 2)


def render_full(image: np.ndarray, transform: Similarity, width: int, height: int) -> np.ndarray:
    """Warp a whole source image (a background or a clip frame) into a width x height frame."""
    return cv2.warpAffine(
        image, transform.pixel_matrix(), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


@dataclass(frozen=True, eq=False)
class Cutout:
    """A head-and-shoulders region of a photo with a feathered elliptical alpha."""

    image: np.ndarray  # (h, w, 3) uint8 BGR
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    face: FaceAnnotation  # in cutout coordinates


def make_cutout(photo: np.ndarray, face: FaceAnnotation) -> Cutout:
    """Cut the head and shoulders of the annotated face out of a photo.

    The alpha also fades to zero at the crop's edges, so an ellipse clipped by the photo border
    (hair at the top of a portrait) never leaves a hard straight edge in the episode.
    """
    fw, fh = face.width, face.height
    cx = 0.5 * (face.box[0] + face.box[2])
    top = face.box[1] - CUTOUT_HAIR_FACE_HEIGHTS * fh
    bottom = face.box[3] + CUTOUT_SHOULDER_FACE_HEIGHTS * fh
    half_w = CUTOUT_HALF_WIDTH_FACE_WIDTHS * fw
    half_h = 0.5 * (bottom - top)
    cy = 0.5 * (top + bottom)
    sigma = max(1.0, FEATHER_SIGMA_FACE_WIDTHS * fw)
    margin = 3.0 * sigma
    h_img, w_img = photo.shape[:2]
    x0, y0 = max(0, math.floor(cx - half_w - margin)), max(0, math.floor(top - margin))
    x1, y1 = min(w_img, math.ceil(cx + half_w + margin)), min(h_img, math.ceil(bottom + margin))
    crop = np.ascontiguousarray(photo[y0:y1, x0:x1])
    mask = np.zeros(crop.shape[:2], np.float32)
    cv2.ellipse(mask, (round(cx - x0), round(cy - y0)), (round(half_w), round(half_h)), 0.0, 0.0, 360.0, 1.0, -1)
    alpha = cv2.GaussianBlur(mask, (0, 0), sigma)
    rows = np.arange(crop.shape[0], dtype=np.float32)[:, None]
    cols = np.arange(crop.shape[1], dtype=np.float32)[None, :]
    to_edge = np.minimum(
        np.minimum(rows + 0.5, crop.shape[0] - rows - 0.5), np.minimum(cols + 0.5, crop.shape[1] - cols - 0.5)
    )
    alpha *= np.clip(to_edge / margin, 0.0, 1.0)
    return Cutout(image=crop, alpha=alpha.astype(np.float32), face=face.shifted(x0, y0))


def make_region_cutout(photo: np.ndarray, box: tuple[float, float, float, float]) -> Cutout:
    """Cut an object (a hand, a prop) out of a photo: the ellipse inscribed in `box`, feathered.

    The returned cutout's `face` is the box itself with no landmarks, so `place_face` positions and
    scales the object by its box exactly as it does a face.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    sigma = max(1.0, FEATHER_SIGMA_FACE_WIDTHS * w)
    h_img, w_img = photo.shape[:2]
    x0, y0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    xe, ye = min(w_img, math.ceil(x2)), min(h_img, math.ceil(y2))
    crop = np.ascontiguousarray(photo[y0:ye, x0:xe])
    mask = np.zeros(crop.shape[:2], np.float32)
    # Inset by 1.5 sigma so the feathered edge stays inside the crop.
    axes = (max(1, round(w / 2 - 1.5 * sigma)), max(1, round(h / 2 - 1.5 * sigma)))
    cv2.ellipse(mask, (round(x1 + w / 2 - x0), round(y1 + h / 2 - y0)), axes, 0.0, 0.0, 360.0, 1.0, -1)
    alpha = cv2.GaussianBlur(mask, (0, 0), sigma)
    return Cutout(image=crop, alpha=alpha.astype(np.float32), face=FaceAnnotation(box, ()).shifted(x0, y0))


def make_photo_cutout(photo: np.ndarray, face: FaceAnnotation, feather_px: float) -> Cutout:
    """A whole photo as one layer (a group of people), placed by `face`, one of the faces on it.

    The alpha fades to zero over `feather_px` at the photo's edges, so the layer has no hard border;
    the caller keeps every annotated face further than that from the edges (they stay fully opaque).
    """
    h, w = photo.shape[:2]
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    to_edge = np.minimum(np.minimum(rows + 0.5, h - rows - 0.5), np.minimum(cols + 0.5, w - cols - 0.5))
    alpha = np.clip(to_edge / max(1.0, feather_px), 0.0, 1.0).astype(np.float32)
    return Cutout(image=np.ascontiguousarray(photo), alpha=alpha, face=face)


@dataclass(frozen=True, eq=False)
class LayerMask:
    """Where a pasted layer landed: its alpha over a region of interest of the frame."""

    x0: int
    y0: int
    alpha: np.ndarray  # (h, w) float32


def paste(frame: np.ndarray, cutout: Cutout, transform: Similarity, gain: float = 1.0) -> LayerMask | None:
    """Alpha-blend a cutout into a float32 frame in place; only the covered region is touched."""
    h_frame, w_frame = frame.shape[:2]
    h, w = cutout.alpha.shape
    x1, y1, x2, y2 = transform.apply_box((0.0, 0.0, float(w), float(h)))
    rx0, ry0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    rx1, ry1 = min(w_frame, math.ceil(x2)), min(h_frame, math.ceil(y2))
    if rx1 <= rx0 or ry1 <= ry0:
        return None
    size = (rx1 - rx0, ry1 - ry0)
    matrix = transform.pixel_matrix(rx0, ry0)
    image = cv2.warpAffine(cutout.image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(cutout.alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    a = alpha[:, :, None]
    region = frame[ry0:ry1, rx0:rx1]
    region *= 1.0 - a
    region += a * (image.astype(np.float32) * gain)
    return LayerMask(x0=rx0, y0=ry0, alpha=alpha)


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...] | None:
    """The part of a box inside the frame, or None when too little of it is left."""
    x1, y1 = min(max(box[0], 0.0), width), min(max(box[1], 0.0), height)
    x2, y2 = min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)
    if x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
        return None
    return (x1, y1, x2, y2)


def visible_fraction(
    box: tuple[float, float, float, float], occluders: list[LayerMask], width: int, height: int
) -> float:
    """Fraction of the (unclipped) face box that is inside the frame and not under an occluder.

    Coverage is sampled at the centres of the frame pixels inside the box; a pixel is hidden when
    any layer pasted above the face has alpha >= OCCLUDING_ALPHA there.
    """
    area = (box[2] - box[0]) * (box[3] - box[1])
    clipped = clip_box(box, width, height)
    if area <= 0 or clipped is None:
        return 0.0
    inside = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / area
    c0, r0 = math.floor(clipped[0] + 0.5), math.floor(clipped[1] + 0.5)
    c1, r1 = math.floor(clipped[2] + 0.5), math.floor(clipped[3] + 0.5)
    if c1 <= c0 or r1 <= r0:
        return float(inside)
    hidden = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for layer in occluders:
        lh, lw = layer.alpha.shape
        ox0, oy0 = max(c0, layer.x0), max(r0, layer.y0)
        ox1, oy1 = min(c1, layer.x0 + lw), min(r1, layer.y0 + lh)
        if ox1 <= ox0 or oy1 <= oy0:
            continue
        sub = layer.alpha[oy0 - layer.y0 : oy1 - layer.y0, ox0 - layer.x0 : ox1 - layer.x0] >= OCCLUDING_ALPHA
        hidden[oy0 - r0 : oy1 - r0, ox0 - c0 : ox1 - c0] |= sub
    return float(inside * (1.0 - hidden.mean()))


class SequentialVideo:
    """Random access to a video's frames by decoding forward, reopening only to go back.

    Seeking with CAP_PROP_POS_FRAMES is unreliable on these files (it fails on some .mov), and
    holding whole clips in memory would cost gigabytes; shots read their sources forward.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._capture: cv2.VideoCapture | None = None
        self._index = -1
        self._frame: np.ndarray | None = None
        probe = cv2.VideoCapture(str(path))
        if not probe.isOpened():
            raise FileNotFoundError(f"cannot open video {path}")
        self.fps = float(probe.get(cv2.CAP_PROP_FPS))
        probe.release()

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` (0-based) as BGR uint8; raises IndexError past the last decodable frame."""
        if self._capture is None or index < self._index:
            self.close()
            self._capture = cv2.VideoCapture(str(self._path))
            self._index, self._frame = -1, None
        while self._index < index:
            ok, image = self._capture.read()
            if not ok:
                raise IndexError(f"{self._path.name} has no frame {index} (decoded {self._index + 1})")
            self._index, self._frame = self._index + 1, image
        assert self._frame is not None
        return self._frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> SequentialVideo:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
