"""Constant-velocity Kalman filter over boxes, the motion model of SORT and ByteTrack.

State (8,): (cx, cy, a, h, vcx, vcy, va, vh) with a = w / h. Tracking aspect and height rather than
width and height lets the aspect, which barely changes for a face, get a tiny noise while the
height carries the scale. All position and velocity noise is proportional to the box height, so a
400 px close-up and a 30 px background face are trusted alike relative to their size.

One time step is one frame stride (one update() call at uniform sampling); velocities are per
step, not per video frame, which keeps the filter independent of how often the caller samples
frames. A caller that densifies (frames closer than the stride) predicts fractions of a step.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.linalg import cho_factor, cho_solve

FloatArray = npt.NDArray[np.float64]

STATE_SIZE = 8
MEASUREMENT_SIZE = 4

# Standard deviation of cx, cy and h per step, as a fraction of the box height. 1/20 is the
# SORT/ByteTrack value: a detector's box wobbles by a few percent of its size from frame to frame.
DEFAULT_STD_WEIGHT_POSITION = 1.0 / 20.0
# Standard deviation of the velocities per step, as a fraction of the box height. 1/160 (the
# SORT/ByteTrack value) lets speed change slowly, which is what a constant-velocity model assumes.
DEFAULT_STD_WEIGHT_VELOCITY = 1.0 / 160.0

# Aspect ratio (unitless) noise: faces keep their shape, so the process noise is tiny; the
# detector's aspect is noisier than its position, hence a larger measurement noise.
ASPECT_PROCESS_STD = 1e-2
ASPECT_VELOCITY_PROCESS_STD = 1e-5
ASPECT_MEASUREMENT_STD = 1e-1
# A new track knows its position from one detection (2x the per-step position std) and nothing
# about its velocity (10x the per-step velocity std), so the first updates can set the velocity.
INITIAL_POSITION_STD_FACTOR = 2.0
INITIAL_VELOCITY_STD_FACTOR = 10.0


def xyxy_to_cxcyah(boxes_xyxy: npt.ArrayLike) -> FloatArray:
    """Convert (..., 4) boxes (x1, y1, x2, y2) to (cx, cy, w/h, h), the filter's measurement space.

    A zero height gives an infinite aspect; callers must drop such degenerate boxes first.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    center_x = boxes[..., 0] + width / 2.0
    center_y = boxes[..., 1] + height / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = width / height
    return np.stack([center_x, center_y, aspect, height], axis=-1)


def cxcyah_to_xyxy(boxes_cxcyah: npt.ArrayLike) -> FloatArray:
    """Convert (..., 4) boxes (cx, cy, w/h, h) back to (x1, y1, x2, y2)."""
    boxes = np.asarray(boxes_cxcyah, dtype=np.float64)
    height = boxes[..., 3]
    width = boxes[..., 2] * height
    x1 = boxes[..., 0] - width / 2.0
    y1 = boxes[..., 1] - height / 2.0
    return np.stack([x1, y1, x1 + width, y1 + height], axis=-1)


class KalmanBoxFilter:
    """Predicts and corrects box states; holds no per-track state (tracks own mean and covariance)."""

    def __init__(
        self,
        std_weight_position: float = DEFAULT_STD_WEIGHT_POSITION,
        std_weight_velocity: float = DEFAULT_STD_WEIGHT_VELOCITY,
    ) -> None:
        if not (std_weight_position > 0 and std_weight_velocity > 0):
            raise ValueError(
                "std_weight_position and std_weight_velocity must be > 0, got "
                f"{std_weight_position} and {std_weight_velocity}"
            )
        self._std_weight_position = std_weight_position
        self._std_weight_velocity = std_weight_velocity
        # The detector observes (cx, cy, a, h) directly.
        self._observation = np.eye(MEASUREMENT_SIZE, STATE_SIZE)

    def initiate(self, measurement: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Start a state from one (cx, cy, a, h) measurement: known position, zero velocity."""
        position = np.asarray(measurement, dtype=np.float64).reshape(MEASUREMENT_SIZE)
        mean = np.concatenate([position, np.zeros(MEASUREMENT_SIZE)])
        height = position[3]
        position_std = INITIAL_POSITION_STD_FACTOR * self._std_weight_position * height
        velocity_std = INITIAL_VELOCITY_STD_FACTOR * self._std_weight_velocity * height
        std = np.array(
            [
                position_std,
                position_std,
                ASPECT_PROCESS_STD,
                position_std,
                velocity_std,
                velocity_std,
                ASPECT_VELOCITY_PROCESS_STD,
                velocity_std,
            ]
        )
        return mean, np.diag(np.square(std))

    def predict(self, mean: FloatArray, covariance: FloatArray, steps: float = 1.0) -> tuple[FloatArray, FloatArray]:
        """Advance one state by `steps` steps."""
        means, covariances = self.multi_predict(mean[np.newaxis], covariance[np.newaxis], steps)
        return means[0], covariances[0]

    def multi_predict(
        self, means: FloatArray, covariances: FloatArray, steps: float = 1.0
    ) -> tuple[FloatArray, FloatArray]:
        """Advance N states (N, 8) with covariances (N, 8, 8) by `steps` steps (> 0, fractions allowed)
        in one vectorised pass: x += steps * v, and the process noise (a random walk) grows with time."""
        if not (math.isfinite(steps) and steps > 0):
            raise ValueError(f"steps must be a finite number > 0, got {steps}")
        means = np.asarray(means, dtype=np.float64)
        covariances = np.asarray(covariances, dtype=np.float64)
        if means.shape[0] == 0:
            return means.reshape(0, STATE_SIZE), covariances.reshape(0, STATE_SIZE, STATE_SIZE)
        heights = means[:, 3]
        position_std = self._std_weight_position * heights
        velocity_std = self._std_weight_velocity * heights
        aspect_std = np.full_like(heights, ASPECT_PROCESS_STD)
        aspect_velocity_std = np.full_like(heights, ASPECT_VELOCITY_PROCESS_STD)
        std = np.stack(
            [
                position_std,
                position_std,
                aspect_std,
                position_std,
                velocity_std,
                velocity_std,
                aspect_velocity_std,
                velocity_std,
            ],
            axis=1,
        )
        process_noise = np.zeros((means.shape[0], STATE_SIZE, STATE_SIZE))
        diagonal = np.arange(STATE_SIZE)
        process_noise[:, diagonal, diagonal] = np.square(std) * steps
        # x_{t+steps} = x_t + steps * v_t; velocities unchanged.
        transition = np.eye(STATE_SIZE)
        transition[:MEASUREMENT_SIZE, MEASUREMENT_SIZE:] = steps * np.eye(MEASUREMENT_SIZE)
        predicted_means = means @ transition.T
        predicted_covariances = transition @ covariances @ transition.T + process_noise
        return predicted_means, predicted_covariances

    def update(
        self, mean: FloatArray, covariance: FloatArray, measurement: npt.ArrayLike, noise_scale: float = 1.0
    ) -> tuple[FloatArray, FloatArray]:
        """Correct a predicted state with a (cx, cy, a, h) measurement.

        noise_scale multiplies the measurement variance: below 1 a measurement is trusted more
        (StrongSORT's NSA Kalman scales it by the detection's confidence).
        """
        if not noise_scale > 0:
            raise ValueError(f"noise_scale must be > 0, got {noise_scale}")
        observed = np.asarray(measurement, dtype=np.float64).reshape(MEASUREMENT_SIZE)
        height = mean[3]
        position_std = self._std_weight_position * height
        measurement_noise = noise_scale * np.diag(
            np.square([position_std, position_std, ASPECT_MEASUREMENT_STD, position_std])
        )
        projected_mean = self._observation @ mean
        projected_covariance = self._observation @ covariance @ self._observation.T + measurement_noise
        cross_covariance = covariance @ self._observation.T  # (8, 4)
        # Gain K = P H^T S^-1, solved with Cholesky because S is symmetric positive definite.
        factor = cho_factor(projected_covariance, lower=True, check_finite=False)
        kalman_gain = cho_solve(factor, cross_covariance.T, check_finite=False).T
        innovation = observed - projected_mean
        new_mean = mean + kalman_gain @ innovation
        new_covariance = covariance - kalman_gain @ projected_covariance @ kalman_gain.T
        # Re-symmetrise: round-off would otherwise accumulate over long tracks.
        new_covariance = (new_covariance + new_covariance.T) / 2.0
        return new_mean, new_covariance


def warp_states(means: FloatArray, covariances: FloatArray, affine: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Move N states (N, 8) and covariances (N, 8, 8) by a camera motion, a 2x3 affine of pixels.

    Centres go through the full affine; velocities through its linear part; heights and their
    velocities scale by the affine's zoom (sqrt of its determinant); aspect ratios are kept, since a
    camera that pans, zooms or rolls slightly does not change a face's shape.
    """
    matrix = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    if means.shape[0] == 0:
        return means.reshape(0, STATE_SIZE), covariances.reshape(0, STATE_SIZE, STATE_SIZE)
    linear = matrix[:, :2]
    zoom = float(np.sqrt(abs(np.linalg.det(linear))))
    transform = np.eye(STATE_SIZE)
    transform[0:2, 0:2] = linear
    transform[3, 3] = zoom
    transform[4:6, 4:6] = linear
    transform[7, 7] = zoom
    warped = means @ transform.T
    warped[:, 0:2] += matrix[:, 2]
    return warped, transform @ covariances @ transform.T
