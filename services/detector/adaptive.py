"""Adaptive sampling: detect every stride-th frame, and the frames between only where skipping them
could lose or confuse a face.

Two processed frames a < b of one shot *agree* when every face of each has one partner in the
other overlapping it with IoU >= follow_iou, and no two faces of either frame touch. A tracker then
links a to b on overlap alone (its strictest gate, a weak detection's, is IoU 0.5), and the frames
between are carried by interpolation downstream. When they disagree (a face appears, leaves, moves
more than about a third of its size, or is next to another face, as in a crossing) the middle frame
is detected and each half is checked again, down to consecutive frames: where a face enters costs
log2(stride) extra detections, a crossing costs every frame of it, a static scene costs nothing.
A cut between a and b (colour histograms) is located to the frame the same way, and the frames on
both sides of it are detected, so no face is carried over a cut and shots start on their first frame:
the old shot's last frame at the old shot's input size, the new shot's first at full size.

Midpoints of every window of a chunk are detected in one batch per level of the bisection.

Input size per shot: while the faces on screen are all large, base frames are detected on a
downscaled frame (reduced_max_side, ~1/4 of the pixels of 720p), with a full-size frame every few
base frames to see small faces arrive; a shot's first frame, a frame with no face, and any frame
after one showing a face too small for the reduced input are detected at full size, and so are
the frames densified between them; a shot's first frame decides for the base frames after it.
Close-ups and medium shots, most of TV, run cheap; wide shots with small faces keep every pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from services.common.boxes import iou_matrix
from services.common.detections import Detections


@dataclass(frozen=True)
class AdaptiveSettings:
    # Overlap a face must keep with itself between two processed frames for the frames between to
    # be skipped. 0.5 is the tracker's strictest gate (a weak detection continuing a track), so any
    # pair that agrees is one the tracker links without help; it also bounds the error of
    # interpolating the skipped boxes (a face that moved less than ~1/3 of its width).
    follow_iou: float = 0.5
    # Two faces of one frame overlapping more than this are "touching" (crossing, one behind the
    # other): the frames around are always processed, since identities swap or hide there. 0 means
    # any overlap at all: face boxes of different people almost never intersect otherwise.
    touch_iou: float = 0.0
    # Candidates (faces below the detector's confidence rule) decide sampling only below this short
    # side (px). A small real face scores low and flickers (22-30 px: 0.4-0.95 frame to frame), and
    # it is the one that needs frames; from ~48 px a real face scores >= 0.996 (the detector's own
    # ramp_end_px calibration), so a larger candidate is clutter (cartoon faces, patterns), whose
    # flicker would otherwise cost every frame of a shot with no face in it.
    candidate_max_side: float = 48.0
    # Long side (px) of the reduced detector input for shots with only large faces (0: never
    # reduce). 640 is a quarter of the pixels of 1280x720 (~0.3x the detector time, docs/performance.md).
    reduced_max_side: int = 640
    # A face whose short side would be below this at the reduced input (px) sends its shot to full
    # size: twice RetinaFace's smallest anchor (16 px), where its recall is still full; 32 px at 640
    # is a 64 px face in 720p, 96 px in 1080p.
    reduced_min_face_px: float = 32.0
    # Base frames between two full-size ones in a reduced shot: a small face entering waits at
    # most this many base frames (1.6 s at 2.5/s) to be seen, then its shot goes to full size.
    full_every: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.follow_iou <= 1:
            raise ValueError(f"follow_iou must be in (0, 1], got {self.follow_iou}")
        if not 0 <= self.touch_iou < 1:
            raise ValueError(f"touch_iou must be in [0, 1), got {self.touch_iou}")
        if not self.candidate_max_side >= 0:
            raise ValueError(f"candidate_max_side must be >= 0 px, got {self.candidate_max_side}")
        if self.reduced_max_side < 0 or self.reduced_min_face_px < 0 or self.full_every < 1:
            raise ValueError(
                "reduced_max_side and reduced_min_face_px must be >= 0 and full_every >= 1, got "
                f"{self.reduced_max_side}, {self.reduced_min_face_px}, {self.full_every}"
            )


def _touching(boxes: np.ndarray, touch_iou: float) -> bool:
    if len(boxes) < 2:
        return False
    overlap = iou_matrix(boxes, boxes)
    np.fill_diagonal(overlap, 0.0)
    return bool((overlap > touch_iou).any())


def deciding_boxes(detections: Detections, settings: AdaptiveSettings) -> np.ndarray:
    """Boxes that decide sampling: confident faces, and candidates small enough to be real faces."""
    sides = np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])
    return detections.xyxy[detections.confident | (sides < settings.candidate_max_side)]


def faces_agree(a: np.ndarray, b: np.ndarray, settings: AdaptiveSettings) -> bool:
    """Whether the (N, 4) boxes of two processed frames can be linked without the frames between."""
    if len(a) != len(b):
        return False
    if len(a) == 0:
        return True
    if _touching(a, settings.touch_iou) or _touching(b, settings.touch_iou):
        return False
    overlap = iou_matrix(a, b)
    rows, cols = linear_sum_assignment(-overlap)
    return bool((overlap[rows, cols] >= settings.follow_iou).all())


@dataclass
class Chunk:
    """Decoded frames of a run of base frames: every frame after the previous chunk's last base
    frame up to this chunk's last base frame. `cut_before[b]`: a base frame whose histogram differs
    from the previous base frame's (a cut lies somewhere in between)."""

    frames: dict[int, np.ndarray]
    base: list[int]
    cut_before: dict[int, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Processed:
    index: int
    frame: np.ndarray
    detections: Detections
    cut: bool  # first frame of a new shot


# detect(frames, reduced) -> detections, in order (reduced: on the reduced input size);
# correlation(frame, frame) -> histogram correlation.
Detect = Callable[[Sequence[np.ndarray], bool], list[Detections]]
Correlation = Callable[[np.ndarray, np.ndarray], float]


class AdaptiveSampler:
    """Turns chunks of decoded frames into the processed frames of one stream, in order.

    Stateful over one stream: the last base frame of a chunk is the left end of the next chunk's
    first window.
    """

    def __init__(
        self, detect: Detect, correlation: Correlation, max_correlation: float, settings: AdaptiveSettings
    ) -> None:
        self._detect = detect
        self._correlation = correlation
        self._max_correlation = max_correlation
        self._settings = settings
        self._last: Processed | None = None
        self._large_faces_only = False  # the last base frame's faces were all large (and there were some)
        self._since_full = 0  # base frames detected reduced since the last full-size one

    def process(self, chunk: Chunk) -> list[Processed]:
        frames = dict(chunk.frames)
        detections: dict[int, Detections] = {}
        cuts: set[int] = set()
        previous = self._last
        if previous is not None:
            frames[previous.index] = previous.frame
            detections[previous.index] = previous.detections
        windows: list[tuple[int, int]] = []
        left = previous.index if previous is not None else None
        for right in chunk.base:
            cut = None
            if left is not None and chunk.cut_before.get(right):
                cut = self._locate_cut(frames, left, right)
            if left is None or cut is None:
                # A suspected cut that is not located (a dissolve, a pan) still starts a new shot.
                new_shot = left is None or bool(chunk.cut_before.get(right))
                detections[right] = self._detect_base(frames[right], new_shot)
                if left is not None:
                    windows.append((left, right))
            else:
                cuts.add(cut)
                if left < cut - 1:  # the old shot's last frame, at the old shot's input size
                    detections[cut - 1] = self._detect([frames[cut - 1]], self._stays_reduced(frames[cut - 1]))[0]
                # The cut's own frame starts the new shot at full size; the base frame after it
                # then goes on from what that frame found (reduced if its faces are all large).
                detections[cut] = self._detect_base(frames[cut], True)
                if cut < right:
                    detections[right] = self._detect_base(frames[right], False)
                windows += [(left, cut - 1), (cut, right)]
            left = right
        self._bisect([(a, b) for a, b in windows if b - a > 1], frames, detections)

        order = sorted(i for i in detections if previous is None or i > previous.index)
        out = [Processed(i, frames[i], detections[i], i in cuts) for i in order]
        if out:
            self._last = out[-1]
        return out

    def _stays_reduced(self, frame: np.ndarray) -> bool:
        """Whether a frame of the current shot may be detected on the reduced input."""
        return self._large_faces_only and self._reducible(frame)

    def _detect_base(self, frame: np.ndarray, new_shot: bool) -> Detections:
        s = self._settings
        reduced = not new_shot and self._since_full < s.full_every and self._stays_reduced(frame)
        found = self._detect([frame], reduced)[0]
        self._since_full = self._since_full + 1 if reduced else 0
        self._large_faces_only = self._large_only(found, frame)
        return found

    def _reducible(self, frame: np.ndarray) -> bool:
        return 0 < self._settings.reduced_max_side < max(frame.shape[:2])

    def _large_only(self, found: Detections, frame: np.ndarray) -> bool:
        """Some faces, all large enough for the reduced input. No face at all is not "large faces
        only": the next face may be a small one walking in."""
        s = self._settings
        boxes = deciding_boxes(found, s)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        scale = max(frame.shape[:2]) / s.reduced_max_side if s.reduced_max_side else 0.0
        return len(sides) > 0 and bool((sides >= s.reduced_min_face_px * scale).all())

    def _locate_cut(self, frames: dict[int, np.ndarray], left: int, right: int) -> int | None:
        """First frame of the new shot in (left, right], or None when no two consecutive frames
        differ like a cut (a pan or a dissolve changed the picture gradually)."""
        lo, hi = left, right
        while hi - lo > 1:
            middle = (lo + hi) // 2
            if self._correlation(frames[lo], frames[middle]) < self._max_correlation:
                hi = middle
            else:
                lo = middle
        return hi if self._correlation(frames[lo], frames[hi]) < self._max_correlation else None

    def _bisect(
        self, windows: list[tuple[int, int]], frames: dict[int, np.ndarray], detections: dict[int, Detections]
    ) -> None:
        while windows:
            split = [
                (a, b)
                for a, b in windows
                if not faces_agree(
                    deciding_boxes(detections[a], self._settings),
                    deciding_boxes(detections[b], self._settings),
                    self._settings,
                )
            ]
            middles = [(a + b) // 2 for a, b in split]
            # A window whose two ends show only large faces is refined on the reduced input.
            large = {
                m: self._reducible(frames[m])
                and self._large_only(detections[a], frames[a])
                and self._large_only(detections[b], frames[b])
                for (a, b), m in zip(split, middles, strict=True)
            }
            for reduced in (True, False):
                these = [m for m in middles if large[m] == reduced]
                for index, found in zip(these, self._detect([frames[i] for i in these], reduced), strict=True):
                    detections[index] = found
            windows = [w for (a, b), m in zip(split, middles, strict=True) for w in ((a, m), (m, b)) if w[1] - w[0] > 1]
