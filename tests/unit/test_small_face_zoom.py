"""The small-face zoom's decisions (services/detector/zoom.py), with a stand-in detector that finds the
white rectangles drawn on a black frame in whatever tile it is given; the real model on a real crowd is
tests/e2e/test_detector_real.py."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from services.common.detections import Detections
from services.detector.zoom import SmallFaceZoom, ZoomSettings

FRAME = np.zeros((720, 1280, 3), np.uint8)


def _faces(*boxes: tuple[float, float, float, float], confident: bool = True) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    landmarks = np.repeat(centre[:, None, :], 5, axis=1)
    return Detections(xyxy, np.full(len(xyxy), 0.99, np.float32), landmarks, np.full(len(xyxy), confident))


def _frame(faces: Detections) -> np.ndarray:
    frame = FRAME.copy()
    for x1, y1, x2, y2 in faces.xyxy.astype(int):
        frame[y1:y2, x1:x2] = 255
    return frame


class Magnified:
    """Finds the white rectangles of each tile it is given, in the tile's pixels."""

    def __init__(self) -> None:
        self.crops: list[tuple[int, int]] = []

    def __call__(self, crops: Sequence[np.ndarray]) -> list[Detections]:
        found = []
        for crop in crops:
            self.crops.append(crop.shape[:2])
            count, _, stats, _ = cv2.connectedComponentsWithStats((crop[:, :, 0] > 127).astype(np.uint8))
            boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count]]
            found.append(_faces(*boxes))
        return found


def test_large_faces_and_candidates_never_start_a_zoom() -> None:
    detect = Magnified()
    zoom = SmallFaceZoom(detect)
    assert len(zoom.refine(FRAME, _faces((100, 100, 220, 260)))) == 1
    assert len(zoom.refine(FRAME, _faces((100, 100, 125, 130), confident=False))) == 1
    assert detect.crops == [] and zoom.zoomed_pixels == 0


def test_a_small_face_looks_at_the_whole_frame_in_native_shaped_tiles_and_maps_faces_back() -> None:
    # Faces in each quarter, and one on the seams of all four tiles.
    truth = _faces((100, 100, 124, 130), (1000, 150, 1022, 178), (200, 600, 224, 630), (1100, 650, 1124, 680))
    truth = Detections.merge([truth, _faces((630, 350, 654, 380))])
    detect = Magnified()
    zoom = SmallFaceZoom(detect)
    refined = zoom.refine(_frame(truth), _faces((100, 100, 124, 130)))
    assert detect.crops == [(720, 1280)] * 4  # the native input's shape, never a new one
    assert zoom.zoomed_pixels == 4 * 720 * 1280
    assert len(refined) == 5  # every face once (NMS over the native one and the tiles' overlaps)
    order = np.lexsort((refined.xyxy[:, 1], refined.xyxy[:, 0]))
    expected = truth.xyxy[np.lexsort((truth.xyxy[:, 1], truth.xyxy[:, 0]))]
    assert np.allclose(refined.xyxy[order], expected, atol=1.0)
    assert np.allclose(refined.landmarks[:, 0], (refined.xyxy[:, :2] + refined.xyxy[:, 2:]) / 2, atol=1.0)


@pytest.mark.parametrize(
    ("region", "size", "count"),
    [
        ((0, 0, 1280, 720), (1280, 720), 4),  # a whole 720p frame: four tiles at 1.9x
        ((500, 250, 700, 400), (1280, 720), 1),  # a small region: one tile at 2x, centred on it
        ((0, 0, 640, 360), (640, 360), 4),  # a whole 360p frame: the same, at its own input shape
        ((100, 100, 1000, 500), (1280, 720), 2),  # wider than a tile reaches at 1.8x: two across
        ((0, 0, 1920, 1080), (1920, 1080), 9),  # 1080p: 1280x720 tiles (the native input), 3x3 at 2x
    ],
)
def test_windows_cover_the_region_with_overlap_at_1_8_to_2x(
    region: tuple[int, int, int, int], size: tuple[int, int], count: int
) -> None:
    width, height = size
    zoom = SmallFaceZoom(Magnified())
    windows = zoom.windows(region, width, height)
    assert len(windows) == count
    tile_w = min(width, 1280)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert 1.8 - 0.01 <= tile_w / (x2 - x1) <= 2.0 + 0.01
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in windows:
        covered[y1:y2, x1:x2] = True
    rx1, ry1, rx2, ry2 = region
    assert covered[ry1:ry2, rx1:rx2].all()
    xs = sorted({(w[0], w[2]) for w in windows})
    for (_, end), (start, _) in itertools.pairwise(xs):
        assert end - start >= 36  # neighbours share enough for a small face to be whole in one


def test_zooming_follows_the_region_while_it_pays_then_stops() -> None:
    settings = ZoomSettings(patience=2)
    truth = _faces((600, 300, 624, 330), (700, 320, 722, 348))
    detect = Magnified()
    zoom = SmallFaceZoom(detect, settings)
    native = _faces((600, 300, 624, 330))
    frame = _frame(truth)
    zoom.refine(frame, native)  # the whole frame: finds the second face
    assert len(detect.crops) == 4
    assert len(zoom.refine(frame, native)) == 2  # the region around both: one tile, still finding it
    assert len(detect.crops) == 5
    zoom.refine(frame, native)
    assert len(detect.crops) == 6
    frame = _frame(native)  # the second face left: zooming adds nothing
    zoom.refine(frame, native)
    zoom.refine(frame, native)
    count = len(detect.crops)
    zoom.refine(frame, native)
    assert len(detect.crops) == count  # stopped after `patience` idle zooms
    assert set(detect.crops) == {(720, 1280)}


def test_a_look_that_adds_nothing_waits_before_the_next() -> None:
    settings = ZoomSettings(explore_every=3)
    native = _faces((600, 300, 624, 330))
    detect = Magnified()
    zoom = SmallFaceZoom(detect, settings)
    for _ in range(4):
        zoom.refine(_frame(native), native)
    assert len(detect.crops) == 4  # one look, four tiles
    zoom.refine(_frame(native), native)
    assert len(detect.crops) == 8


@pytest.mark.parametrize(
    ("box", "kept"),
    [
        ((400, 400, 418, 424), False),  # under MIN_FACE_PX in frame pixels
        ((400, 400, 480, 500), False),  # a large face: the native pass's
        ((0, 400, 24, 430), True),  # at the frame's edge: whole as far as the frame goes
    ],
)
def test_which_zoomed_faces_are_kept(box: tuple[float, float, float, float], kept: bool) -> None:
    native = _faces((600, 300, 624, 330))
    frame = _frame(Detections.merge([native, _faces(box)]))
    refined = SmallFaceZoom(Magnified()).refine(frame, native)
    assert (len(refined) == 2) is kept
