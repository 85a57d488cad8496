"""Kalman box filter: conversions, constant-velocity prediction, covariance behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from services.tracker.kalman import KalmanBoxFilter, cxcyah_to_xyxy, xyxy_to_cxcyah


@pytest.mark.parametrize(
    ("xyxy", "cxcyah"),
    [
        ([0.0, 0.0, 10.0, 20.0], [5.0, 10.0, 0.5, 20.0]),
        ([100.0, 50.0, 140.0, 90.0], [120.0, 70.0, 1.0, 40.0]),
        ([-10.0, -4.0, 20.0, 6.0], [5.0, 1.0, 3.0, 10.0]),
    ],
)
def test_box_conversions_are_exact_inverses(xyxy: list[float], cxcyah: list[float]) -> None:
    np.testing.assert_allclose(xyxy_to_cxcyah(xyxy), cxcyah)
    np.testing.assert_allclose(cxcyah_to_xyxy(cxcyah), xyxy)


def test_conversions_are_vectorised_over_leading_axes() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 20.0], [100.0, 50.0, 140.0, 90.0]])
    assert xyxy_to_cxcyah(boxes).shape == (2, 4)
    np.testing.assert_allclose(cxcyah_to_xyxy(xyxy_to_cxcyah(boxes)), boxes)


def test_initiate_places_the_box_with_zero_velocity() -> None:
    mean, covariance = KalmanBoxFilter().initiate([50.0, 60.0, 0.8, 100.0])
    np.testing.assert_allclose(mean, [50.0, 60.0, 0.8, 100.0, 0, 0, 0, 0])
    assert covariance.shape == (8, 8)
    assert np.all(np.diag(covariance) > 0)


def _moving_box(step: int, velocity_xy: tuple[float, float], height_rate: float) -> np.ndarray:
    """A box moving at constant velocity (px/step) whose height changes at height_rate px/step."""
    height = 80.0 + height_rate * step
    width = 0.75 * height
    center_x = 200.0 + velocity_xy[0] * step
    center_y = 150.0 + velocity_xy[1] * step
    return np.array([center_x - width / 2, center_y - height / 2, center_x + width / 2, center_y + height / 2])


@pytest.mark.parametrize(
    ("velocity_xy", "height_rate"),
    [((5.0, -3.0), 0.0), ((0.0, 0.0), 0.0), ((-12.0, 4.0), 0.0), ((3.0, 2.0), 1.0)],
)
def test_constant_velocity_box_is_predicted_within_one_pixel(
    velocity_xy: tuple[float, float], height_rate: float
) -> None:
    kalman = KalmanBoxFilter()
    mean, covariance = kalman.initiate(xyxy_to_cxcyah(_moving_box(0, velocity_xy, height_rate)))
    for step in range(1, 12):
        mean, covariance = kalman.predict(mean, covariance)
        mean, covariance = kalman.update(mean, covariance, xyxy_to_cxcyah(_moving_box(step, velocity_xy, height_rate)))
    mean, _ = kalman.predict(mean, covariance)
    predicted = cxcyah_to_xyxy(mean[:4])
    np.testing.assert_allclose(predicted, _moving_box(12, velocity_xy, height_rate), atol=1.0)


def test_update_shrinks_and_predict_grows_the_covariance() -> None:
    kalman = KalmanBoxFilter()
    box = xyxy_to_cxcyah([100.0, 100.0, 160.0, 180.0])
    mean, covariance = kalman.initiate(box)
    initial_velocity_variance = np.diag(covariance)[4:].copy()
    for _ in range(10):
        predicted_mean, predicted_covariance = kalman.predict(mean, covariance)
        assert np.trace(predicted_covariance) > np.trace(covariance)
        mean, covariance = kalman.update(predicted_mean, predicted_covariance, box)
        assert np.trace(covariance[:4, :4]) < np.trace(predicted_covariance[:4, :4])
    position_variance = np.diag(covariance)[[0, 1, 3]]
    velocity_variance = np.diag(covariance)[[4, 5, 7]]
    assert np.all(velocity_variance < initial_velocity_variance[[0, 1, 3]])
    assert np.all(position_variance < np.diag(kalman.initiate(box)[1])[[0, 1, 3]])
    np.testing.assert_allclose(covariance, covariance.T)


def test_multi_predict_matches_predict_track_by_track() -> None:
    kalman = KalmanBoxFilter()
    states = [kalman.initiate([x, 50.0, 0.7, h]) for x, h in [(10.0, 30.0), (200.0, 120.0), (400.0, 60.0)]]
    means = np.stack([mean for mean, _ in states])
    means[:, 4] = [1.0, -2.0, 3.0]  # give the tracks some velocity so the transition matters
    covariances = np.stack([covariance for _, covariance in states])
    batch_means, batch_covariances = kalman.multi_predict(means, covariances)
    for row in range(3):
        single_mean, single_covariance = kalman.predict(means[row], covariances[row])
        np.testing.assert_allclose(batch_means[row], single_mean)
        np.testing.assert_allclose(batch_covariances[row], single_covariance)
    np.testing.assert_allclose(batch_means[:, 0], means[:, 0] + means[:, 4])


def test_multi_predict_accepts_no_tracks() -> None:
    means, covariances = KalmanBoxFilter().multi_predict(np.zeros((0, 8)), np.zeros((0, 8, 8)))
    assert means.shape == (0, 8)
    assert covariances.shape == (0, 8, 8)


def test_fractional_steps_move_the_box_by_that_fraction_of_its_velocity() -> None:
    kalman = KalmanBoxFilter()
    mean, covariance = kalman.initiate(xyxy_to_cxcyah([100.0, 100.0, 140.0, 140.0]))
    mean[4] = 20.0  # 20 px per step (one stride)
    whole, whole_cov = kalman.predict(mean, covariance)
    tenth, tenth_cov = kalman.predict(mean, covariance, steps=0.1)
    assert whole[0] == pytest.approx(mean[0] + 20.0) and tenth[0] == pytest.approx(mean[0] + 2.0)
    assert np.trace(tenth_cov) < np.trace(whole_cov)  # less time, less uncertainty added
    ten_tenths = mean, covariance
    for _ in range(10):
        ten_tenths = kalman.predict(*ten_tenths, steps=0.1)
    assert ten_tenths[0][:4] == pytest.approx(whole[:4])
    with pytest.raises(ValueError, match="steps"):
        kalman.predict(mean, covariance, steps=0.0)
