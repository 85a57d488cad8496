"""Camera-motion estimation on a textured frame moved by a known pan and zoom, with a moving face-sized patch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.detector.camera_motion import CameraMotionEstimator

WIDTH, HEIGHT = 1280, 720


def _scene(seed: int = 0) -> np.ndarray:
    """A large textured background (so a crop of it can pan and zoom without borders)."""
    noise = np.random.default_rng(seed).integers(0, 255, size=(HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 6)


def _view(scene: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The frame a camera sees when the scene->frame mapping is `affine` (2x3)."""
    return cv2.warpAffine(scene, affine, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)


def _camera(shift_x: float, shift_y: float, zoom: float) -> np.ndarray:
    centre = np.array([WIDTH, HEIGHT], float)  # look at the middle of the scene
    return np.array(
        [[zoom, 0.0, WIDTH / 2 - zoom * centre[0] + shift_x], [0.0, zoom, HEIGHT / 2 - zoom * centre[1] + shift_y]]
    )


def _compose(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """previous frame -> current frame, given scene->previous and scene->current."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(second) @ np.linalg.inv(full(first)))[:2]


@pytest.mark.parametrize(("shift", "zoom"), [((30.0, 0.0), 1.0), ((-12.0, 8.0), 1.0), ((0.0, 0.0), 1.05)])
def test_pan_and_zoom_are_recovered_in_full_frame_pixels(shift: tuple[float, float], zoom: float) -> None:
    scene = _scene()
    before, after = _camera(0.0, 0.0, 1.0), _camera(shift[0], shift[1], zoom)
    estimator = CameraMotionEstimator()
    assert estimator.estimate(_view(scene, before)) is None  # nothing to compare the first frame with
    estimated = estimator.estimate(_view(scene, after))
    assert estimated is not None
    truth = _compose(after, before)
    point = np.array([900.0, 200.0, 1.0])  # where a face would be
    np.testing.assert_allclose(estimated @ point, truth @ point, atol=3.0)


def test_a_moving_face_does_not_drag_the_estimate() -> None:
    scene = _scene()
    first, second = _view(scene, _camera(0, 0, 1)), _view(scene, _camera(20.0, 0, 1))
    patch = _scene(1)[:200, :160]
    first[200:400, 300:460] = patch  # a "face" that moves 60 px left while the camera pans 20 px right
    second[200:400, 240:400] = patch
    estimator = CameraMotionEstimator()
    estimator.estimate(first)
    estimated = estimator.estimate(second)
    assert estimated is not None and estimated[0, 2] == pytest.approx(20.0, abs=2.0)


def test_a_flat_frame_or_reset_gives_no_estimate() -> None:
    estimator = CameraMotionEstimator()
    flat = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    estimator.estimate(flat)
    assert estimator.estimate(flat) is None  # no texture: unknown, never identity
    textured = _view(_scene(), _camera(0, 0, 1))
    estimator.estimate(textured)
    estimator.reset()
    assert estimator.estimate(textured) is None
