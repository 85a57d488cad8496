"""The small-face zoom's decisions (services/detector/zoom.py), with a stand-in detector that answers
per crop size; the real model on a real crowd is tests/e2e/test_detector_real.py."""

from __future__ import annotations

from collections.abc import Sequence

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


class Magnified:
    """Answers a crop with the faces it was told are in the frame, in the crop's magnified pixels."""

    def __init__(self, frame_faces: Detections, scale: float = 2.0) -> None:
        self.frame_faces = frame_faces
        self.scale = scale
        self.crops: list[tuple[int, int]] = []
        self.origin = (0.0, 0.0)

    def __call__(self, crops: Sequence[np.ndarray]) -> list[Detections]:
        (crop,) = crops
        self.crops.append(crop.shape[:2])
        x0, y0 = self.origin
        boxes = (self.frame_faces.xyxy - np.array([x0, y0, x0, y0], np.float32)) * self.scale
        return [_faces(*[tuple(b) for b in boxes])]


def test_large_faces_and_candidates_never_start_a_zoom() -> None:
    detect = Magnified(_faces())
    zoom = SmallFaceZoom(detect)
    assert len(zoom.refine(FRAME, _faces((100, 100, 220, 260)))) == 1
    assert len(zoom.refine(FRAME, _faces((100, 100, 125, 130), confident=False))) == 1
    assert detect.crops == [] and zoom.zoomed_pixels == 0


def test_a_small_face_looks_at_the_whole_frame_and_maps_faces_back() -> None:
    truth = _faces((100, 100, 124, 130), (300, 200, 322, 228))
    detect = Magnified(truth)
    zoom = SmallFaceZoom(detect)
    refined = zoom.refine(FRAME, _faces((100, 100, 124, 130)))
    assert detect.crops == [(1440, 2560)]
    assert len(refined) == 2  # the native face once (NMS), the missed one added
    assert np.allclose(np.sort(refined.xyxy, axis=0), np.sort(truth.xyxy, axis=0), atol=1e-3)
    assert np.allclose(refined.landmarks[:, 0], (refined.xyxy[:, :2] + refined.xyxy[:, 2:]) / 2, atol=1e-3)


def test_zooming_follows_the_region_while_it_pays_then_stops() -> None:
    settings = ZoomSettings(patience=2)
    truth = _faces((600, 300, 624, 330), (700, 320, 722, 348))
    detect = Magnified(truth)
    zoom = SmallFaceZoom(detect, settings)
    native = _faces((600, 300, 624, 330))
    zoom.refine(FRAME, native)  # the whole frame: finds the second face
    zoom.refine(FRAME, native)  # the region around both, still finding it
    # Both faces grown by the margin (96 px), magnified 2x; the region does not grow frame after frame.
    assert detect.crops[1] == (((348 + 96) - (300 - 96)) * 2, ((722 + 96) - (600 - 96)) * 2)
    zoom.refine(FRAME, native)
    assert detect.crops[2] == detect.crops[1]
    detect.frame_faces = native  # the second face left: zooming adds nothing
    zoom.refine(FRAME, native)
    zoom.refine(FRAME, native)
    count = len(detect.crops)
    zoom.refine(FRAME, native)
    assert len(detect.crops) == count  # stopped after `patience` idle zooms


def test_a_look_that_adds_nothing_waits_before_the_next() -> None:
    settings = ZoomSettings(explore_every=3)
    native = _faces((600, 300, 624, 330))
    detect = Magnified(native)
    zoom = SmallFaceZoom(detect, settings)
    for _ in range(4):
        zoom.refine(FRAME, native)
    assert detect.crops == [(1440, 2560)]
    zoom.refine(FRAME, native)
    assert len(detect.crops) == 2


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
    detect = Magnified(_faces((600, 300, 624, 330), box))
    refined = SmallFaceZoom(detect).refine(FRAME, native)
    assert (len(refined) == 2) is kept
