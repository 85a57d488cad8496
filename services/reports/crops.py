"""Choosing the face crops that show an identity in the contact sheet.

A reviewer decides "is this one person, and who?" faster from a handful of faces spread over the
whole episode than from the first eight frames of one track, so crops are taken evenly over time
from all of the identity's tracks. Crops come from each track's crops/track_NNNNNN/index.json
(written after the crops, so a listed crop exists); tracks without crops (a run made with
skip_crops) are simply skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.reports import run_files

# Crops per identity in the contact sheet: one 1280 px row holds eight 64x80 thumbnails next to
# the identity's text, and eight views over an episode are enough to spot a mixed cluster.
MAX_CROPS_PER_IDENTITY = 8
_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Crop:
    """One saved 4:5 face crop of a track."""

    track_id: int
    frame_idx: int
    ts: float
    path: Path


def track_crops(run_dir: Path, track_id: int) -> list[Crop]:
    """The crops a track's index lists, oldest first; none when the track has no (readable) index."""
    index = run_dir / run_files.CROPS_DIR / f"track_{track_id:06d}" / run_files.CROP_INDEX
    try:
        items = json.loads(index.read_text(encoding="utf-8"))["items"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    root = run_dir.resolve()
    crops = []
    for item in items:
        path = (run_dir / str(item["key"])).resolve()
        # Keys are relative to the run folder; one that points elsewhere is not ours to read.
        if root in path.parents and path.is_file():
            crops.append(Crop(track_id, int(item["frame_idx"]), float(item["ts"]), path))
    return sorted(crops, key=lambda c: (c.ts, c.track_id))


def evenly(items: list[Crop], count: int) -> list[Crop]:
    """`count` items spread evenly from first to last (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[len(items) // 2]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def identity_crops(run_dir: Path, track_ids: Iterable[int], limit: int = MAX_CROPS_PER_IDENTITY) -> list[Crop]:
    """Up to `limit` crops of an identity, evenly over the time its tracks were sampled."""
    pooled = sorted(
        (crop for track_id in track_ids for crop in track_crops(run_dir, int(track_id))),
        key=lambda c: (c.ts, c.track_id),
    )
    return evenly(pooled, limit)


def jpeg_bytes(crop: Crop) -> bytes | None:
    """The crop's bytes when they are a JPEG; a damaged file is left out rather than shown broken."""
    data = crop.path.read_bytes()
    return data if data.startswith(_JPEG_MAGIC) else None
