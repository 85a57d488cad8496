"""4:5 face crops for people to look at (review pages, reports), cut from the full frame.

Aligned 112x112 crops are for the model; reviewers need the head with some context, framed the
same way every time, so rows of crops line up.
"""

from __future__ import annotations

import cv2
import numpy as np

# Output size (px): 4:5 portrait, large enough to recognise a face on a review page.
DISPLAY_WIDTH = 160
DISPLAY_HEIGHT = 200
# Crop height as a multiple of the face box height: room for hair and chin, not the whole body.
CONTEXT = 1.6
JPEG_QUALITY = 85


def display_crop(frame_bgr: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """A DISPLAY_WIDTH x DISPLAY_HEIGHT crop centred on the face; black where it leaves the frame."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    height = max(y2 - y1, 1.0) * CONTEXT
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = DISPLAY_HEIGHT / height
    # One affine warp crops, scales and pads in a single pass.
    matrix = np.array([[scale, 0, DISPLAY_WIDTH / 2 - cx * scale], [0, scale, DISPLAY_HEIGHT / 2 - cy * scale]])
    return cv2.warpAffine(
        frame_bgr, matrix, (DISPLAY_WIDTH, DISPLAY_HEIGHT), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT
    )


def display_crop_jpeg(frame_bgr: np.ndarray, box_xyxy: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", display_crop(frame_bgr, box_xyxy), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return encoded.tobytes() if ok else b""
