"""Similarity transform and ArcFace alignment on synthetic points and images; face quality rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.common.alignment import (
    ARCFACE_TEMPLATE_112,
    align_face,
    align_faces,
    alignment_residual,
    similarity_transform,
)
from services.common.detections import Detections
from services.common.face_quality import face_quality, pose_ratios


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"), [(1.0, 0.0, 0.0, 0.0), (2.5, 30.0, 100.0, -40.0), (0.3, -170.0, 5.0, 7.0)]
)
def test_similarity_transform_recovers_known_transform(scale: float, angle: float, tx: float, ty: float) -> None:
    truth = _similarity(scale, angle, tx, ty)
    src = ARCFACE_TEMPLATE_112 + np.array([[3.0, -2.0], [0, 0], [1, 4], [-2, 0], [0, 1]])
    estimated = similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(estimated, truth, atol=1e-9)


def test_similarity_transform_is_least_squares_under_noise() -> None:
    rng = np.random.default_rng(0)
    truth = _similarity(1.7, 12.0, 30.0, 20.0)
    src = rng.uniform(0, 100, (50, 2))
    dst = _apply(truth, src) + rng.normal(0, 0.5, (50, 2))
    estimated = similarity_transform(src, dst)
    np.testing.assert_allclose(estimated[:, :2], truth[:, :2], atol=0.01)
    np.testing.assert_allclose(estimated[:, 2], truth[:, 2], atol=0.5)
    # Least squares: no other transform (e.g. the true one) fits these noisy points better.
    fit = ((_apply(estimated, src) - dst) ** 2).sum()
    assert fit <= ((_apply(truth, src) - dst) ** 2).sum()


def test_similarity_transform_never_reflects() -> None:
    src = ARCFACE_TEMPLATE_112.copy()
    mirrored = src * np.array([-1.0, 1.0])
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_similarity_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same point"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE_112)


def test_aligning_template_points_maps_to_template() -> None:
    # A face placed in a large image by a known similarity: alignment must undo it.
    forward = _similarity(2.0, 25.0, 300.0, 150.0)
    landmarks = _apply(forward, ARCFACE_TEMPLATE_112)
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(_apply(matrix, landmarks), ARCFACE_TEMPLATE_112, atol=1e-9)
    assert alignment_residual(landmarks) < 1e-6


def test_align_face_moves_marked_pixels_onto_template() -> None:
    image = np.zeros((600, 800, 3), np.uint8)
    forward = _similarity(3.0, -20.0, 350.0, 200.0)
    landmarks = _apply(forward, ARCFACE_TEMPLATE_112)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), -1)
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[round(y), round(x)].min() == 255
    assert crop[5, 5].max() == 0  # away from every mark


def test_align_faces_stacks_one_crop_per_detection() -> None:
    image = np.full((200, 200, 3), 90, np.uint8)
    lm = np.stack([ARCFACE_TEMPLATE_112, ARCFACE_TEMPLATE_112 + 50])
    dets = Detections(xyxy=np.zeros((2, 4)), scores=np.ones(2), landmarks=lm)
    assert align_faces(image, dets).shape == (2, 112, 112, 3)
    assert align_faces(image, Detections.empty()).shape == (0, 112, 112, 3)


def test_pose_ratios_ignore_roll_and_scale_and_see_yaw() -> None:
    frontal = pose_ratios(ARCFACE_TEMPLATE_112)
    assert frontal[0] < 0.01 and frontal[1] < 1e-6
    rolled = pose_ratios(_apply(_similarity(3.0, 40.0, 10.0, 10.0), ARCFACE_TEMPLATE_112))
    np.testing.assert_allclose(rolled, frontal, atol=1e-9)
    turned = ARCFACE_TEMPLATE_112.copy()
    turned[2, 0] = turned[1, 0]  # nose under the right eye: a profile
    assert pose_ratios(turned)[0] > 0.9


def _textured_face() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(60, 200, (112, 112, 3), dtype=np.uint8)


def test_face_quality_prefers_big_sharp_frontal_faces_and_explains_refusals() -> None:
    crop = _textured_face()
    box = np.array([0, 0, 150, 180])
    good = face_quality(crop, box, ARCFACE_TEMPLATE_112, 0.99)
    assert 0.9 < good.score <= 1.0 and float(good) == good.score and good.problems() == []

    small = face_quality(crop, np.array([0, 0, 30, 30]), ARCFACE_TEMPLATE_112, 0.99)
    assert small.score < good.score and any("too small" in p for p in small.problems())

    blurred = face_quality(cv2.GaussianBlur(crop, (0, 0), 4), box, ARCFACE_TEMPLATE_112, 0.99)
    assert blurred.score < good.score and any("blurred" in p for p in blurred.problems())

    dark = face_quality((crop // 8).astype(np.uint8), box, ARCFACE_TEMPLATE_112, 0.99)
    assert any("too dark" in p for p in dark.problems())

    profile_landmarks = ARCFACE_TEMPLATE_112.copy()
    profile_landmarks[2, 0] = profile_landmarks[1, 0] + 5
    profile = face_quality(crop, box, profile_landmarks, 0.99)
    assert profile.score < 0.2 and any("extreme pose" in p for p in profile.problems())
