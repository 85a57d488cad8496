"""Face alignment: warp a detected face onto the standard ArcFace 112x112 five-point template.

ArcFace-family embedders were trained on crops made exactly this way; any other crop (box crop,
different template, reflection) costs identification accuracy.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.common.detections import NUM_LANDMARKS, Detections

ALIGNED_SIZE = 112  # px: side of the crop the ArcFace template is defined for

# Standard ArcFace (insightface) template for a 112x112 crop, in pixels: left eye, right eye,
# nose tip, left mouth corner, right mouth corner (as seen in the image).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE_112.setflags(write=False)


def template_for(size: int) -> np.ndarray:
    """The ArcFace template scaled to a size x size crop (5, 2) in pixels."""
    if size <= 0:
        raise ValueError(f"aligned crop size must be positive, got {size}")
    return ARCFACE_TEMPLATE_112 * (size / ALIGNED_SIZE)


def similarity_transform(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src to dst.

    Umeyama (1991): the rotation comes from the SVD of the cross-covariance; a reflection is
    replaced by the nearest proper rotation, because a mirrored face is a different face to the
    embedder. Returns the (2, 3) matrix M with dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(
            f"similarity_transform needs two (K, 2) point arrays with K >= 2, got {src.shape} and {dst.shape}"
        )
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum(axis=1).mean())
    if src_var <= 1e-12:
        raise ValueError("similarity_transform: source points are all the same point; no transform exists")
    covariance = dst_c.T @ src_c / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    correction = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        correction[-1] = -1.0
    rotation = u @ np.diag(correction) @ vt
    scale = float((singular * correction).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 crop of the face with the given (5, 2) landmarks, on the ArcFace template."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"align_face needs landmarks of shape ({NUM_LANDMARKS}, 2), got {points.shape}")
    matrix = similarity_transform(points, template_for(size))
    # Black outside the frame, as in the crops ArcFace models are trained on (insightface norm_crop).
    crop = cv2.warpAffine(
        image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.asarray(crop, dtype=np.uint8)


def align_faces(image_bgr: np.ndarray, detections: Detections, size: int = ALIGNED_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8 aligned crops, one per detection, in detection order."""
    if len(detections) == 0:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([align_face(image_bgr, lm, size) for lm in detections.landmarks])


def alignment_residual(landmarks: np.ndarray) -> float:
    """RMS distance (in 112-px template pixels) between the fitted landmarks and the template.

    Near 0 for a frontal face; grows with pose and with landmark layouts unlike a human face.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    matrix = similarity_transform(points, ARCFACE_TEMPLATE_112)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return float(np.sqrt(((mapped - ARCFACE_TEMPLATE_112) ** 2).sum(axis=1).mean()))
