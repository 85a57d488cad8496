"""Small, pure statistics for the bench: medians, ratios and a least-squares line.

Kept free of timing and I/O so the unit tests can pin them down exactly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def median(values: Sequence[float]) -> float:
    """Median of the measurements: robust to the odd run slowed by other work on a shared machine."""
    if not values:
        raise ValueError("median of no measurements")
    return float(statistics.median(values))


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-repetition ratios a_i / b_i.

    Ratios are taken pairwise because a_i and b_i ran side by side under the same machine load;
    a ratio of medians would mix runs taken under different loads.
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators for {len(denominators)} denominators")
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


@dataclass(frozen=True)
class Line:
    """y = slope * x + intercept, with r^2 (1.0 when the points are exactly on the line)."""

    slope: float
    intercept: float
    r2: float

    def at(self, x: float) -> float:
        return self.slope * x + self.intercept


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """Ordinary least squares: how wall time grows with episode length (slope = s per minute of video)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
    if len(xs) < 2:
        raise ValueError("a line needs at least two points")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all x values are equal: no slope")
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return Line(slope, intercept, r2)


def x_realtime(video_s: float, wall_s: float) -> float:
    """Seconds of video processed per second of wall time (> 1: faster than real time)."""
    if wall_s <= 0:
        return math.inf
    return video_s / wall_s
