"""Smear measurement and its kernel (services/detector/deblur.py) on a textured frame smeared along
several directions; the real detector on a real pan is tests/e2e/test_detector_real.py."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from services.detector.deblur import DeblurSettings, Smear, deconvolve, measure_smear, smear_kernel


def _texture() -> np.ndarray:
    """A 720p frame of natural-looking texture (smoothed noise at several scales)."""
    rng = np.random.default_rng(5)
    frame = np.zeros((720, 1280), np.float32)
    for sigma in (1.0, 3.0, 9.0):
        frame += cv2.GaussianBlur(rng.normal(0, 60, (720, 1280)).astype(np.float32), (0, 0), sigma) * sigma
    frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(frame.astype(np.uint8), cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize(("dx", "dy"), [(31.0, 0.0), (0.0, 25.0), (21.0, 21.0)])
def test_a_linear_smear_is_measured_along_its_direction(dx: float, dy: float) -> None:
    sharp = _texture()
    assert measure_smear(sharp) is None
    smeared = cv2.filter2D(sharp, -1, smear_kernel(Smear(dx, dy, 0.0)), borderType=cv2.BORDER_REFLECT)
    found = measure_smear(smeared)
    assert found is not None and found.peak_z >= DeblurSettings().min_peak_z
    assert found.length == pytest.approx(math.hypot(dx, dy), abs=3.0)
    cosine = abs(found.dx * dx + found.dy * dy) / (found.length * math.hypot(dx, dy))
    assert cosine > 0.97  # the direction, up to sign
    restored = deconvolve(smeared, found)
    error_before = np.abs(smeared.astype(float) - sharp).mean()
    assert np.abs(restored.astype(float) - sharp).mean() < 0.85 * error_before  # closer to the sharp frame


def test_short_smears_are_left_alone() -> None:
    smeared = cv2.filter2D(_texture(), -1, smear_kernel(Smear(9.0, 0.0, 0.0)), borderType=cv2.BORDER_REFLECT)
    assert measure_smear(smeared) is None  # under min_smear_px: the detector copes


def test_kernels_are_normalised_centred_lines() -> None:
    for smear in (Smear(31, 0, 0), Smear(0, 12, 0), Smear(15, -15, 0)):
        kernel = smear_kernel(smear)
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
        assert kernel.sum() == pytest.approx(1.0)
        ys, xs = np.nonzero(kernel)
        centre = kernel.shape[0] // 2
        assert np.average(xs, weights=kernel[ys, xs]) == pytest.approx(centre, abs=0.6)
        assert np.average(ys, weights=kernel[ys, xs]) == pytest.approx(centre, abs=0.6)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        DeblurSettings(min_smear_px=100.0, max_smear_px=80.0)
    with pytest.raises(ValueError):
        DeblurSettings(restored_large_face_score=1.0)
