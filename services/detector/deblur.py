"""Motion blur: frames of a fast pan restored before their faces are looked for again.

RetinaFace scores a face smeared over 30 px at 0.4-0.99, below what a large face needs (0.994), so a
fast pan loses every face (the hard episode: 2 of 15 found). A uniform linear smear is measurable and
mostly reversible: the power cepstrum of a frame smeared over L px along a direction has a sharp
negative peak at distance L in that direction (Cannon 1976), and Wiener deconvolution with that
kernel brings the faces back to 0.99+.

It is decided per frame from what the native pass finds, so clean frames stay cheap: only a frame with
a large face the detector doubts (a candidate) is analysed (~9 ms); only a frame the cepstrum calls
smeared is deconvolved (~60 ms at 720p) and looked at again; and the restored frame replaces the
original only when the detector is surer of it (more confident faces). The replacement is in place, so
crops and embeddings are taken from the restored pixels too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import fft

from services.common.detections import Detections
from services.detector.retinaface import RetinaFaceSettings

# (frames, reduced) -> detections of each frame in frame pixels (reduced: at the reduced input size).
DetectFn = Callable[[Sequence[np.ndarray], bool], list[Detections]]


@dataclass(frozen=True)
class DeblurSettings:
    # Width (px) the cepstrum is computed at. Measured on the hard episode: at 640 px a 31 px smear
    # peaks at z 5.3-10 and every other condition (clean, crowd, compressed, low light, a hand over a
    # face) stays under 4.9; at 320 px the two overlap (blur 2.8-5.7, others up to 3.7).
    analysis_width: int = 640
    # Cepstral peak depth, in standard deviations of the cepstrum around it, that calls a frame
    # smeared: between the 4.9 of unblurred frames and the 5.3 of the weakest smeared one.
    min_peak_z: float = 5.0
    # Smears shorter than this (frame px) are left alone: RetinaFace copes with them, and short
    # cepstral peaks come from texture (a crowd, a hand: 4-10 px at 1280 wide), not from motion.
    min_smear_px: float = 16.0
    # Longest smear looked for (frame px at 1280 wide; scaled with the frame): 3 s for a pan across
    # the frame at 25 fps. Longer smears leave nothing a face detector can use.
    max_smear_px: float = 80.0
    # Wiener noise-to-signal ratio: 0.01-0.03 measured alike on faces (0.996-0.997); larger keeps
    # compression noise from ringing.
    noise_to_signal: float = 0.02
    # A candidate (a face the detector doubts) this large (short side, frame px) makes a frame worth
    # analysing: a smeared face is found as a weak large face; small ones are the zoom's business.
    # After a restored frame, the next ones are restored first, until one is not smeared (a pan lasts).
    min_candidate_px: float = 32.0
    # Score a large face of a restored frame needs (the server's detector for restored frames).
    # Deconvolution leaves ringing that costs real faces a little: restored faces of 50-110 px
    # score 0.984-0.998 where sharp ones score >= 0.996. The usual 0.994 is there to refuse
    # cartoon faces (up to 0.9906); a cartoon in a fast pan is the accepted risk.
    restored_large_face_score: float = 0.98

    def __post_init__(self) -> None:
        if self.analysis_width < 64 or self.min_peak_z <= 0 or self.noise_to_signal <= 0:
            raise ValueError("need analysis_width >= 64, min_peak_z > 0 and noise_to_signal > 0")
        if not 0 < self.min_smear_px < self.max_smear_px:
            raise ValueError(f"need 0 < min_smear_px < max_smear_px, got {self.min_smear_px}, {self.max_smear_px}")
        if not 0 < self.restored_large_face_score < 1 or self.min_candidate_px < 0:
            raise ValueError("need restored_large_face_score in (0, 1) and min_candidate_px >= 0")

    def large_face_score(self, detector: RetinaFaceSettings) -> float:
        """The large-face score a restored frame's faces need with this detector: never above its own."""
        relaxed = max(detector.score_threshold, self.restored_large_face_score)
        return min(detector.large_face_score_threshold, relaxed)


@dataclass(frozen=True)
class Smear:
    """A linear motion smear: its extent along x and y in frame pixels (sign-free: (dx, dy) ~ (-dx, -dy))."""

    dx: float
    dy: float
    peak_z: float

    @property
    def length(self) -> float:
        return math.hypot(self.dx, self.dy)


@functools.lru_cache(maxsize=4)
def _window(height: int, width: int) -> np.ndarray:
    """A 2-D Hann window (float32), so the frame's edges do not add a cross to the spectrum."""
    return np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)


def measure_smear(frame_bgr: np.ndarray, settings: DeblurSettings | None = None) -> Smear | None:
    """The frame's linear motion smear, or None when it has none worth undoing."""
    s = settings or DeblurSettings()
    height, width = frame_bgr.shape[:2]
    scale = min(1.0, s.analysis_width / width)
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
    if scale < 1.0:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    h, w = grey.shape
    x = grey.astype(np.float32)
    x = (x - x.mean()) * _window(h, w)
    power = np.square(np.abs(fft.rfft2(x, workers=-1)))
    cepstrum = np.fft.fftshift(fft.irfft2(np.log(power + 1e-3 * power.mean() + 1e-12), s=(h, w), workers=-1))
    reach = max(2, min(int(s.max_smear_px * width / 1280 * scale), h // 2 - 1, w // 2 - 1))
    cy, cx = h // 2, w // 2
    window = cepstrum[cy - reach : cy + reach + 1, cx - reach : cx + reach + 1]
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    ring = np.hypot(yy, xx) >= 4  # the centre holds the frame's overall spectrum (its 1/f slope), not a smear
    values = window[ring]
    spread = float(values.std())
    if spread <= 0:
        return None  # a flat frame
    index = np.unravel_index(int(np.argmin(np.where(ring, window, np.inf))), window.shape)
    peak_z = float((values.mean() - window[index]) / spread)
    smear = Smear(float(xx[index]) / scale, float(yy[index]) / scale, peak_z)
    if peak_z < s.min_peak_z or smear.length < s.min_smear_px * max(width, 1) / 1280:
        return None
    return smear


def smear_kernel(smear: Smear) -> np.ndarray:
    """A normalised line kernel of the smear's length and direction (odd size, centred)."""
    half = int(math.ceil(smear.length / 2))
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float32)
    ux, uy = smear.dx / 2, smear.dy / 2
    if abs(smear.dy) < 0.5:  # horizontal: exact taps, the common case of a pan
        taps = max(1, round(abs(smear.dx)))
        kernel[half, half - taps // 2 : half - taps // 2 + taps] = 1.0
    elif abs(smear.dx) < 0.5:
        taps = max(1, round(abs(smear.dy)))
        kernel[half - taps // 2 : half - taps // 2 + taps, half] = 1.0
    else:
        scale = 16  # anti-aliased line drawn at 1/16 px (cv2 shift), so oblique smears are not jagged
        start = (round((half - ux) * scale), round((half - uy) * scale))
        end = (round((half + ux) * scale), round((half + uy) * scale))
        cv2.line(kernel, start, end, 1.0, 1, cv2.LINE_AA, shift=4)
    return kernel / kernel.sum()


def deconvolve(frame_bgr: np.ndarray, smear: Smear, noise_to_signal: float = 0.02) -> np.ndarray:
    """Wiener deconvolution of the frame's luma by the smear's kernel (edges mirrored so they do not ring).

    Only luma is restored (a third of the work): face detection and the embedder's features live in
    it, and chroma is low-resolution in every broadcast format anyway. A horizontal or vertical smear
    (pans and tilts) needs a 1-D transform along its axis only. Transform sizes are grown to small
    prime factors: a 720p frame padded by a kernel width is 786 x 1346 (2 x 673), ~30x slower.
    """
    kernel = smear_kernel(smear)
    k = kernel.shape[0]
    height, width = frame_bgr.shape[:2]
    ycrcb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YCrCb)
    axis: tuple[int, ...] = (0, 1)
    if abs(smear.dy) < 0.5:
        axis, kernel = (1,), kernel[k // 2 : k // 2 + 1]
    elif abs(smear.dx) < 0.5:
        axis, kernel = (0,), kernel[:, k // 2 : k // 2 + 1]
    pad_y = k if 0 in axis else 0
    pad_x = k if 1 in axis else 0
    fft_h = fft.next_fast_len(height + 2 * pad_y, real=True) if pad_y else height
    fft_w = fft.next_fast_len(width + 2 * pad_x, real=True) if pad_x else width
    luma = cv2.copyMakeBorder(
        ycrcb[..., 0], pad_y, fft_h - height - pad_y, pad_x, fft_w - width - pad_x, cv2.BORDER_REFLECT
    ).astype(np.float32)
    shape = (fft_h if 0 in axis else 1, fft_w if 1 in axis else 1)
    full = np.zeros(shape, np.float32)
    full[: kernel.shape[0], : kernel.shape[1]] = kernel
    full = np.roll(full, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), axis=(0, 1))  # centred: no shift
    sizes = [shape[a] for a in axis]
    response = fft.rfftn(full, s=sizes, axes=axis)
    gain = (np.conj(response) / (np.abs(response) ** 2 + noise_to_signal)).astype(np.complex64)
    restored = fft.irfftn(fft.rfftn(luma, s=sizes, axes=axis, workers=-1) * gain, s=sizes, axes=axis, workers=-1)
    ycrcb[..., 0] = np.clip(restored[pad_y : pad_y + height, pad_x : pad_x + width], 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def _sureness(found: Detections) -> tuple[int, int]:
    """How sure the detector is of a frame's faces: confident faces, then faces scoring 0.9 or more."""
    return int(found.confident.sum()), int((found.scores >= 0.9).sum())


@dataclass
class MotionDeblur:
    """Restores smeared frames in place when that makes their faces surer."""

    detect: DetectFn
    settings: DeblurSettings = field(default_factory=DeblurSettings)
    frames_restored: int = 0  # for tests and benchmarks
    _in_pan: bool = False  # the last restored frame was kept (a pan is under way)
    _restored: set[int] = field(default_factory=set)  # id() of restored frames not yet taken

    def was_restored(self, frame: np.ndarray) -> bool:
        """Whether refine() restored this frame (asked once per frame, when its faces are sent)."""
        if id(frame) in self._restored:
            self._restored.discard(id(frame))
            return True
        return False

    def refine(self, frame: np.ndarray, native: Detections, reduced: bool = False) -> Detections:
        """The frame's faces: `native` (found at the reduced input size if `reduced`), or those of the
        restored frame at the same input size when it is smeared and restoring makes the faces surer."""
        sides = np.minimum(native.xyxy[:, 2] - native.xyxy[:, 0], native.xyxy[:, 3] - native.xyxy[:, 1])
        if not np.any(~native.confident & (sides >= self.settings.min_candidate_px)):
            return native
        look = self._restored_look(frame, reduced)
        if look is None or _sureness(look[1]) <= _sureness(native):
            return native
        self._adopt(frame, look[0])
        return look[1]

    def in_pan(self, frame: np.ndarray, reduced: bool = False) -> Detections | None:
        """While a pan lasts (the last frame was restored), the next frame's faces from its restored
        pixels without a native look first (a pan costs one detection a frame, not two); None when
        the pan is over (no smear) or there is none: detect the frame natively and refine() it."""
        if not self._in_pan:
            return None
        look = self._restored_look(frame, reduced)
        if look is None:
            self._in_pan = False
            return None
        self._adopt(frame, look[0])
        return look[1]

    def _restored_look(self, frame: np.ndarray, reduced: bool) -> tuple[np.ndarray, Detections] | None:
        """The frame deconvolved by its smear and the faces found there; None when it has no smear."""
        smear = measure_smear(frame, self.settings)
        if smear is None:
            return None
        restored = deconvolve(frame, smear, self.settings.noise_to_signal)
        (found,) = self.detect([restored], reduced)
        return restored, found

    def _adopt(self, frame: np.ndarray, restored: np.ndarray) -> None:
        frame[...] = restored  # crops, embeddings and display crops come from the restored pixels
        self.frames_restored += 1
        self._restored.add(id(frame))
        self._in_pan = True
