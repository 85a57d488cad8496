"""Which faces to embed: the best face of each track in each time window, not every face.

Embedding dominates CPU cost (the embedder is ~10x the detector per face on CPU), while a track's
identity is stable over a second of video. Per track we keep the highest-quality face of every
window of `window_s` and embed only those; clustering uses the quality-weighted mean of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SamplerSettings:
    # Seconds per window: one embedded face per track per window. 1.0 s gives a 30 s track 30
    # samples (plenty for a stable mean and for post-hoc splitting; TV shots of 2-5 s still give
    # 2-5 per track) at ~1/25 of the embed cost of every face at 25 fps. 0.5 s doubled the embed
    # calls for identical clusters and scores on the sample (docs/performance.md).
    window_s: float = 1.0
    # Seconds per window for faces restored from a motion smear (Face.restored): each is a noisy
    # reconstruction (0.19-0.44 cosine to its person's clean tracks), and a pan lasts a second or
    # two, so one sample a second left its track 1-2 noisy vectors to be judged on. Five a second
    # average the noise out at the cost of a few embeddings per pan.
    restored_window_s: float = 0.2

    def __post_init__(self) -> None:
        if not (self.window_s >= 0 and self.restored_window_s >= 0):
            raise ValueError(f"window_s and restored_window_s must be >= 0 seconds, got {self.window_s}")


@dataclass
class _Window(Generic[T]):
    start_frame: int
    best_quality: float
    best_row: int
    best_crop: T


@dataclass
class TrackSampler(Generic[T]):
    """Feed every tracked face in frame order with its payload (crops); collect (row, payload) samples."""

    fps: float
    settings: SamplerSettings = field(default_factory=SamplerSettings)
    _open: dict[int, _Window[T]] = field(default_factory=dict)

    def add(
        self, track_id: int, frame: int, row: int, quality: float, crop: T, restored: bool = False
    ) -> list[tuple[int, T]]:
        """Returns the samples that became final (a window closed); usually none."""
        window_frames = (self.settings.restored_window_s if restored else self.settings.window_s) * self.fps
        current = self._open.get(track_id)
        if current is None or frame - current.start_frame >= window_frames:
            self._open[track_id] = _Window(frame, quality, row, crop)
            return [] if current is None else [(current.best_row, current.best_crop)]
        if quality > current.best_quality:
            current.best_quality, current.best_row, current.best_crop = quality, row, crop
        return []

    def flush(self) -> list[tuple[int, T]]:
        """Close every open window (end of stream)."""
        done = [(w.best_row, w.best_crop) for w in self._open.values()]
        self._open.clear()
        return done
