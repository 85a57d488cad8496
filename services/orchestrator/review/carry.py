"""Carrying review operations made on one run over to another run of the same episode.

Track ids are per run. An old track maps to the new track that covers most of its faces (same
frame, box IoU >= MIN_BOX_IOU) if that covers at least MIN_COVERAGE of them; an identity named in
an old operation maps to the identity that now holds most of its mapped tracks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.common.boxes import iou_matrix
from services.orchestrator.review.view import ReviewView, Track

# Same face in the same frame across runs: detector boxes of two runs of the same video agree to
# IoU > 0.9; 0.5 also tolerates a changed detector input size.
MIN_BOX_IOU = 0.5
# Share of an old track's faces a new track must cover to inherit its decisions.
MIN_COVERAGE = 0.5


def map_tracks(old: dict[int, Track], new: dict[int, Track]) -> dict[int, int]:
    by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track in new.values():
        for frame, box in zip(track.frames.tolist(), track.boxes, strict=True):
            by_frame.setdefault(frame, []).append((track.track_id, box))
    mapping = {}
    for track in old.values():
        votes: Counter[int] = Counter()
        for frame, box in zip(track.frames.tolist(), track.boxes, strict=True):
            candidates = by_frame.get(frame, [])
            if not candidates:
                continue
            overlaps = iou_matrix(np.asarray([box], np.float32), np.asarray([b for _, b in candidates], np.float32))[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= MIN_BOX_IOU:
                votes[candidates[best][0]] += 1
        if votes:
            winner, count = votes.most_common(1)[0]
            if count >= MIN_COVERAGE * len(track.frames):
                mapping[track.track_id] = winner
    return mapping


def map_identity(view: ReviewView, anchor_tracks: list[int], mapping: dict[int, int]) -> str | None:
    """The identity of `view` that holds most of the anchor tracks (already in the view's run ids)."""
    votes: Counter[str] = Counter()
    for old in anchor_tracks:
        new = mapping.get(old)
        identity = view.identity_of(new) if new is not None else None
        if identity is not None:
            votes[identity] += 1
    return votes.most_common(1)[0][0] if votes else None
