"""The report's two charts, rendered with matplotlib's Agg canvas to PNG bytes.

Figures are built with matplotlib.figure.Figure on an explicit Agg canvas rather than pyplot, so
no GUI backend is ever touched (headless servers, CI) and no global figure state leaks between
reports made in one process.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Inches x DPI: 12 in at 100 dpi is 1200 CSS px, the content width of a 1280 px page. Saving at
# twice that keeps text sharp on high-density screens while the page shows it at 1200 px.
FIGURE_WIDTH_IN = 12.0
DISPLAY_DPI = 100
PIXEL_RATIO = 2
SAVE_DPI = PIXEL_RATIO * DISPLAY_DPI
# Inches per identity lane / bar and the fixed room for axes, title and tick labels.
LANE_HEIGHT_IN = 0.42
FIGURE_PADDING_IN = 1.3
FONT_SIZE = 10
# One colour per naming tier, so a reader sees at a glance which time is attributed to a named
# person and which still needs review. Colour-blind-safe (Okabe-Ito) hues.
TIER_COLOURS = {"auto": "#0072B2", "suggest": "#E69F00", "unknown": "#8C8C8C"}
DEFAULT_COLOUR = TIER_COLOURS["unknown"]
CUT_COLOUR = "#D55E00"
GRID_COLOUR = "#DDDDDD"


@dataclass(frozen=True)
class Lane:
    """One identity as the charts draw it."""

    identity_id: str
    name: str
    tier: str
    seconds: float
    intervals: Sequence[tuple[float, float]]

    @property
    def title(self) -> str:
        return f"{self.name} ({self.identity_id})"

    @property
    def colour(self) -> str:
        return TIER_COLOURS.get(self.tier, DEFAULT_COLOUR)


def png_css_size(png: bytes) -> tuple[int, int]:
    """Width and height in CSS px at which a chart shows at its designed size (from the PNG header).

    Giving the <img> its size lets the browser lay the page out before decoding the image.
    """
    width, height = struct.unpack(">II", png[16:24])  # IHDR: the first chunk, right after the signature
    return width // PIXEL_RATIO, height // PIXEL_RATIO


def _figure(lanes: int) -> Figure:
    figure = Figure(figsize=(FIGURE_WIDTH_IN, FIGURE_PADDING_IN + LANE_HEIGHT_IN * max(lanes, 1)), dpi=DISPLAY_DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=SAVE_DPI, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def _tier_legend(axes: object, lanes: Sequence[Lane]) -> None:
    from matplotlib.patches import Patch

    tiers = [t for t in TIER_COLOURS if any(lane.tier == t for lane in lanes)]
    handles = [Patch(color=TIER_COLOURS[t], label=f"tier {t}") for t in tiers]
    if handles:
        axes.legend(handles=handles, loc="lower right", fontsize=FONT_SIZE - 1, frameon=False)  # type: ignore[attr-defined]


def screen_time_bars(lanes: Sequence[Lane], duration_s: float) -> bytes:
    """Horizontal bars, one per identity, longest on top, each labelled with its seconds and share."""
    figure = _figure(len(lanes))
    axes = figure.add_subplot()
    positions = list(range(len(lanes)))
    axes.barh(positions, [lane.seconds for lane in lanes], color=[lane.colour for lane in lanes], height=0.6)
    axes.set_yticks(positions, [lane.title for lane in lanes], fontsize=FONT_SIZE)
    axes.invert_yaxis()
    longest = max((lane.seconds for lane in lanes), default=0.0)
    limit = max(duration_s, longest, 1.0)
    axes.set_xlim(0, limit * 1.12)  # room for the value labels right of the longest bar
    for position, lane in zip(positions, lanes, strict=True):
        share = f" ({100 * lane.seconds / duration_s:.1f}%)" if duration_s > 0 else ""
        axes.text(
            lane.seconds + limit * 0.01, position, f"{lane.seconds:.2f} s{share}", va="center", fontsize=FONT_SIZE
        )
    axes.set_xlabel("seconds on screen", fontsize=FONT_SIZE)
    axes.grid(axis="x", color=GRID_COLOUR)
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)
    if not lanes:
        axes.text(0.5, 0.5, "no identities in this run", transform=axes.transAxes, ha="center", va="center")
    _tier_legend(axes, lanes)
    return _png(figure)


def timeline(lanes: Sequence[Lane], duration_s: float, cuts_s: Sequence[float]) -> bytes:
    """One lane per identity with its on-screen intervals; shot cuts as thin vertical lines."""
    figure = _figure(len(lanes))
    axes = figure.add_subplot()
    for position, lane in enumerate(lanes):
        bars = [(start, end - start) for start, end in lane.intervals if end > start]
        axes.broken_barh(bars, (position - 0.3, 0.6), facecolors=lane.colour)
    for number, cut in enumerate(cuts_s):
        axes.axvline(cut, color=CUT_COLOUR, linewidth=0.8, alpha=0.8, label="shot cut" if number == 0 else None)
    axes.set_yticks(list(range(len(lanes))), [lane.title for lane in lanes], fontsize=FONT_SIZE)
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_xlim(0, max(duration_s, 1e-3))
    axes.set_xlabel("episode time (s)", fontsize=FONT_SIZE)
    axes.grid(axis="x", color=GRID_COLOUR)
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)
    if cuts_s:
        axes.legend(loc="upper right", bbox_to_anchor=(1.0, 1.12), fontsize=FONT_SIZE - 1, frameon=False)
    if not lanes:
        axes.text(0.5, 0.5, "no identities in this run", transform=axes.transAxes, ha="center", va="center")
    return _png(figure)
