"""How usable a detected face is for identification, with the reasons when it is not.

One number in [0, 1] ranks faces of a track (pick the best few to embed); the components say
why a face was refused (facebank enrolment must tell the operator "too small", not just "no").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.common.alignment import ALIGNED_SIZE, ARCFACE_TEMPLATE_112

# Nose height between the eye line (0) and the mouth line (1) on the ArcFace template: the
# frontal reference for pitch.
_T = ARCFACE_TEMPLATE_112
TEMPLATE_NOSE_HEIGHT_RATIO = float(
    (_T[2, 1] - (_T[0, 1] + _T[1, 1]) / 2) / ((_T[3, 1] + _T[4, 1]) / 2 - (_T[0, 1] + _T[1, 1]) / 2)
)
# Central face region of a 112 px aligned crop (x0, y0, x1, y1) in px: brows to chin, cheek to
# cheek. Sharpness and luminance are measured here so background and the black out-of-frame
# border (high-contrast edges) do not count as face detail.
FACE_REGION_112 = (24, 32, 88, 108)


@dataclass(frozen=True)
class FaceQualitySettings:
    """Saturation points of the score and refusal thresholds of check(); every value with its unit."""

    # Box short side (original px) at which the size factor saturates: the embedder's input is
    # 112 px, so larger faces add no detail.
    size_saturation_px: float = 112.0
    # Variance of the Laplacian (grey levels^2) on the aligned face region at which sharpness
    # saturates. Measured: sharp faces of 80-280 px 190-2200; the same face blurred (Gaussian
    # sigma 6 px) 19; 24 px faces upsampled to 112 px 5-8.
    sharpness_saturation: float = 150.0
    # Nose offset from the face midline, in half inter-eye distances, that counts as a full
    # profile (the nose reaches the eye column, roughly 60 degrees of yaw).
    yaw_ratio_at_profile: float = 1.0
    # Deviation of the nose height ratio (eye line 0, mouth line 1) from the template's that
    # counts as extreme pitch (nose on the eye or the mouth line). RetinaFace landmarks of
    # frontal faces already deviate 0.0-0.15 (measured), hence the quadratic fall-off below.
    pitch_deviation_at_extreme: float = 0.5

    # Refusal thresholds (enrolment): a face failing any is reported with the reason.
    min_det_score: float = 0.9  # detector probability
    min_face_px: float = 48.0  # box short side, original px: below this the crop is mostly upsampling
    min_sharpness: float = 30.0  # Laplacian variance, grey levels^2: below this the face is blurred
    min_luminance: float = 40.0  # mean grey level 0-255 of the face region: below this, too dark
    max_luminance: float = 225.0  # mean grey level 0-255: above this, overexposed/washed out
    min_frontalness: float = 0.5  # 0-1: below this, yaw/pitch too extreme for a reference face


DEFAULT_QUALITY_SETTINGS = FaceQualitySettings()


@dataclass(frozen=True)
class FaceQuality:
    """Quality score and its components, so a refusal can be explained."""

    score: float  # [0, 1]: geometric mean of the four factors below
    det_score: float  # detector probability [0, 1]
    size_px: float  # box short side, original px
    size_factor: float  # [0, 1]
    sharpness: float  # Laplacian variance on the aligned face region, grey levels^2
    sharpness_factor: float  # [0, 1]
    luminance: float  # mean grey level of the aligned face region, 0-255
    yaw_ratio: float  # nose offset from the midline in half inter-eye distances (0 = frontal)
    pitch_deviation: float  # |nose height ratio - template ratio| (0 = as the template)
    frontalness: float  # [0, 1]

    def __float__(self) -> float:
        return self.score

    def problems(self, settings: FaceQualitySettings = DEFAULT_QUALITY_SETTINGS) -> list[str]:
        """Human-readable reasons this face is unfit as a reference face; empty when it is fit."""
        s = settings
        reasons = []
        if self.det_score < s.min_det_score:
            reasons.append(f"uncertain detection (score {self.det_score:.2f} < {s.min_det_score:.2f})")
        if self.size_px < s.min_face_px:
            reasons.append(f"too small ({self.size_px:.0f} px < {s.min_face_px:.0f} px)")
        if self.sharpness < s.min_sharpness:
            reasons.append(f"too blurred (sharpness {self.sharpness:.0f} < {s.min_sharpness:.0f})")
        if self.luminance < s.min_luminance:
            reasons.append(f"too dark (mean luminance {self.luminance:.0f} < {s.min_luminance:.0f})")
        if self.luminance > s.max_luminance:
            reasons.append(f"overexposed (mean luminance {self.luminance:.0f} > {s.max_luminance:.0f})")
        if self.frontalness < s.min_frontalness:
            reasons.append(
                f"extreme pose (frontalness {self.frontalness:.2f} < {s.min_frontalness:.2f}; "
                f"yaw ratio {self.yaw_ratio:.2f}, pitch deviation {self.pitch_deviation:.2f})"
            )
        return reasons


def pose_ratios(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw_ratio, pitch_deviation) from 5 landmarks, independent of in-plane rotation and scale.

    Roll is removed by rotating the eye line horizontal; yaw is the nose's horizontal offset from
    the eye/mouth midline in half inter-eye distances; pitch is how far the nose height between
    eye line and mouth line is from the template's. Degenerate layouts return (inf, inf).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1e-6:
        return float("inf"), float("inf")
    cos, sin = eye_vec / eye_dist
    derotate = np.array([[cos, sin], [-sin, cos]])
    eye_mid = (left_eye + right_eye) / 2
    local = (points - eye_mid) @ derotate.T  # eye line along +x, image "down" along +y
    mouth_mid = (local[3] + local[4]) / 2
    if mouth_mid[1] <= 1e-6:
        return float("inf"), float("inf")
    midline_x = mouth_mid[0] / 2  # eye midpoint is at x = 0
    yaw_ratio = abs(local[2, 0] - midline_x) / (eye_dist / 2)
    pitch_deviation = abs(local[2, 1] / mouth_mid[1] - TEMPLATE_NOSE_HEIGHT_RATIO)
    return float(yaw_ratio), float(pitch_deviation)


def face_quality(
    aligned_crop: np.ndarray,
    box_xyxy: np.ndarray,
    landmarks: np.ndarray,
    det_score: float,
    settings: FaceQualitySettings = DEFAULT_QUALITY_SETTINGS,
) -> FaceQuality:
    """Quality of one face (use float(result) or result.score for the [0, 1] number).

    The geometric mean makes any one hopeless factor (a 5 px face, a profile) pull the score
    near 0, while equal mediocre factors keep a mediocre score.
    """
    crop = np.asarray(aligned_crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"aligned_crop must be a square HxWx3 BGR image, got shape {crop.shape}")
    s = settings
    scale = crop.shape[0] / ALIGNED_SIZE
    x0, y0, x1, y1 = (round(v * scale) for v in FACE_REGION_112)
    grey = cv2.cvtColor(crop.astype(np.uint8), cv2.COLOR_BGR2GRAY)[y0:y1, x0:x1]
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    luminance = float(grey.mean())

    box = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
    size_px = float(max(0.0, min(box[2] - box[0], box[3] - box[1])))
    yaw_ratio, pitch_deviation = pose_ratios(landmarks)
    # Quadratic fall-off: small pose changes (and landmark noise) barely matter, extremes do.
    frontalness = float(
        np.clip(1.0 - (yaw_ratio / s.yaw_ratio_at_profile) ** 2, 0.0, 1.0)
        * np.clip(1.0 - (pitch_deviation / s.pitch_deviation_at_extreme) ** 2, 0.0, 1.0)
    )
    det = float(np.clip(det_score, 0.0, 1.0))
    size_factor = float(np.clip(size_px / s.size_saturation_px, 0.0, 1.0))
    sharpness_factor = float(np.clip(sharpness / s.sharpness_saturation, 0.0, 1.0))
    score = float((det * size_factor * sharpness_factor * frontalness) ** 0.25)
    return FaceQuality(
        score=score,
        det_score=det,
        size_px=size_px,
        size_factor=size_factor,
        sharpness=sharpness,
        sharpness_factor=sharpness_factor,
        luminance=luminance,
        yaw_ratio=yaw_ratio,
        pitch_deviation=pitch_deviation,
        frontalness=frontalness,
    )
