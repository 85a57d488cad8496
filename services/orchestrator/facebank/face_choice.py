"""Which faces of a reviewed identity become facebank exemplars: pure functions on the run's arrays.

The best quality first, spread across the identity's tracks and seconds apart within one, skipping
faces a reviewer deleted and near-duplicates of each other or of the person's exemplars; then a cap on
the review-made exemplars of a person. The calls (gate, embed, store) are promotion.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

# Faces promoted per call, count. Eight faces from different tracks, seconds apart, cover the poses
# and lighting one episode shows of a person (matching uses the best exemplar, so variety is what
# helps); each costs a detector and an embedder call, which keeps a call to a few seconds on CPU.
# Promoting from another episode adds that episode's look.
PER_CALL = 8
# Review-made exemplars per person and embedding model, count. A person's similarity is that of
# their best exemplar (MatchSettings.exemplar_top_k = 1), so every exemplar can only pull identities
# towards the person: past ~20 varied faces (a few episodes' worth) recall gains little while each
# mislabelled one stays a standing false-match risk, and each run compares every identity with
# every exemplar. Seed exemplars (curated at enrolment) do not count.
MAX_REVIEW_EXEMPLARS = 20
# Cosine similarity, unitless. Above this two faces are the same picture to the matcher (adjacent
# frames, same pose and light): ArcFace vectors of one person across shots are typically 0.5-0.9,
# and the same face re-cut from the video scores ~0.97-1.0. A second copy adds nothing but weight.
NEAR_DUPLICATE_COSINE = 0.95
# Seconds between two faces chosen from one track. Samples are one a second per track
# (SamplerSettings.window_s); two seconds apart the head has usually turned or the expression moved.
MIN_GAP_S = 2.0
# Faces looked at per call, count: bounds the gate's detector calls (~0.05 s a review crop, ~0.3 s
# a frame of the video on CPU) and the rejected list when an identity's faces keep failing the gate
# (a person seen only in profile) or are already in the facebank (a second promotion of an episode).
MAX_EXAMINED = 4 * PER_CALL


@dataclass(frozen=True)
class Candidates:
    """An identity's embedded faces (rows of faces.jsonl / faces.npy) as parallel arrays."""

    track: np.ndarray  # (n,) int64
    frame: np.ndarray  # (n,) int64
    ts: np.ndarray  # (n,) seconds
    quality: np.ndarray  # (n,) the run's quality score [0, 1]
    box: np.ndarray  # (n, 4) x1, y1, x2, y2 in video px
    embedding: np.ndarray  # (n, d) the run's vectors (model of the run)

    def __len__(self) -> int:
        return len(self.track)

    def name(self, i: int) -> str:
        return f"track {int(self.track[i])} frame {int(self.frame[i])}"


@dataclass(frozen=True)
class Choice:
    chosen: list[int]  # indices into the candidates, in the order picked
    rejected: list[tuple[int, str]]  # (index, reason) of the faces looked at and passed over


def identity_candidates(
    rows: Sequence[dict[str, Any]],
    embeddings: np.ndarray,
    track_ids: Iterable[int],
    deleted_faces: AbstractSet[tuple[int, int]] = frozenset(),
    deleted_tracks: AbstractSet[int] = frozenset(),
) -> Candidates:
    """The faces.jsonl rows of the given tracks, minus faces and tracks a reviewer deleted."""
    tracks = set(track_ids) - set(deleted_tracks)
    keep = [
        r for r in rows if int(r["track_id"]) in tracks and (int(r["track_id"]), int(r["frame"])) not in deleted_faces
    ]
    return Candidates(
        track=np.asarray([int(r["track_id"]) for r in keep], np.int64),
        frame=np.asarray([int(r["frame"]) for r in keep], np.int64),
        ts=np.asarray([float(r["ts"]) for r in keep], np.float64),
        quality=np.asarray([float(r["quality"]) for r in keep], np.float64),
        box=np.asarray([r["box"] for r in keep], np.float64).reshape(-1, 4),
        embedding=np.asarray(embeddings, np.float32)[np.asarray([int(r["row"]) for r in keep], np.int64)],
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    if vectors.size == 0:
        return vectors if vectors.ndim == 2 else np.zeros((0, 0))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _duplicate(vector: np.ndarray, others: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """(index, cosine) of the most similar of `others` (unit rows) when above threshold, else None."""
    if len(others) == 0 or others.shape[1] != vector.shape[0]:
        return None
    similarity = others @ vector
    best = int(np.argmax(similarity))
    return (best, float(similarity[best])) if similarity[best] > threshold else None


def round_robin(track: np.ndarray, quality: np.ndarray) -> list[int]:
    """Indices in the order faces are considered: the best face of each track (tracks by their best
    face), then the second best of each, and so on; ties by index."""
    by_track: dict[int, list[int]] = {}
    for i in sorted(range(len(track)), key=lambda i: (-float(quality[i]), i)):
        by_track.setdefault(int(track[i]), []).append(i)
    ordered = sorted(by_track.values(), key=lambda faces: (-float(quality[faces[0]]), faces[0]))
    return [faces[k] for k in range(max((len(f) for f in ordered), default=0)) for faces in ordered if k < len(faces)]


def _passes(i: int) -> str:
    return ""


def choose_faces(
    candidates: Candidates,
    existing: np.ndarray,
    gate: Callable[[int], str] = _passes,
    already: AbstractSet[tuple[int, int]] = frozenset(),
    per_call: int = PER_CALL,
    near_duplicate: float = NEAR_DUPLICATE_COSINE,
    min_gap_s: float = MIN_GAP_S,
    max_examined: int = MAX_EXAMINED,
) -> Choice:
    """Up to `per_call` faces to promote, looked at in round_robin order, each either chosen or
    rejected with the reason:

    - within `min_gap_s` of a face chosen from its track: passed over silently (the track has one);
    - in `already` ((track, frame) of this run already promoted): rejected;
    - more similar than `near_duplicate` to an `existing` exemplar vector (same model as the
      candidates', else pass an empty array) or to a face chosen before it: rejected;
    - else `gate(i)`, enrolment's quality gate ("" when the face passes, else why): chosen or rejected.

    Only chosen faces count as duplicates' originals, so a near-duplicate of a refused face still gets
    its chance. At most `max_examined` faces are looked at (each may cost a gate call)."""
    vectors = _unit(candidates.embedding)
    known = _unit(existing)
    chosen: list[int] = []
    rejected: list[tuple[int, str]] = []
    examined = 0
    for i in round_robin(candidates.track, candidates.quality):
        if len(chosen) >= per_call or examined >= max_examined:
            break
        same_track = [j for j in chosen if candidates.track[j] == candidates.track[i]]
        if any(abs(float(candidates.ts[i] - candidates.ts[j])) < min_gap_s for j in same_track):
            continue
        examined += 1
        if (int(candidates.track[i]), int(candidates.frame[i])) in already:
            rejected.append((i, "already in the facebank"))
            continue
        of_existing = _duplicate(vectors[i], known, near_duplicate)
        if of_existing is not None:
            rejected.append((i, f"near-duplicate of an exemplar of the person (cosine {of_existing[1]:.2f})"))
            continue
        of_chosen = _duplicate(vectors[i], vectors[chosen], near_duplicate) if chosen else None
        if of_chosen is not None:
            twin = chosen[of_chosen[0]]
            rejected.append((i, f"near-duplicate of {candidates.name(twin)} (cosine {of_chosen[1]:.2f})"))
            continue
        reason = gate(i)
        if reason:
            rejected.append((i, reason))
        else:
            chosen.append(i)
    return Choice(chosen, rejected)


def near_duplicates(
    vectors: np.ndarray, quality: Sequence[float], existing: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE
) -> dict[int, str]:
    """After embedding with the current model: {index: reason} of the vectors too similar to an
    existing exemplar vector (same model) or to a better-quality vector of this batch."""
    unit, known = _unit(vectors), _unit(existing)
    kept: list[int] = []
    reasons = {}
    for i in sorted(range(len(unit)), key=lambda i: (-float(quality[i]), i)):
        of_existing = _duplicate(unit[i], known, threshold)
        of_kept = _duplicate(unit[i], unit[kept], threshold) if kept else None
        if of_existing is not None:
            reasons[i] = f"near-duplicate of an exemplar of the person (cosine {of_existing[1]:.2f})"
        elif of_kept is not None:
            reasons[i] = f"near-duplicate of a face promoted with it (cosine {of_kept[1]:.2f})"
        else:
            kept.append(i)
    return reasons


def apply_cap(quality: Sequence[float], room: int) -> tuple[list[int], list[int]]:
    """(kept, capped) indices: the best `room` by quality are kept, the lowest-quality rest capped."""
    order = sorted(range(len(quality)), key=lambda i: (-float(quality[i]), i))
    room = max(0, room)
    return sorted(order[:room]), sorted(order[room:])


def central_face(boxes: np.ndarray, width: int, height: int) -> int | None:
    """In a review crop (centred on its face), the face whose box holds the centre, nearest to it."""
    cx, cy = width / 2, height / 2
    best: tuple[float, int] | None = None
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        if x1 <= cx <= x2 and y1 <= cy <= y2:
            distance = float(np.hypot((x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy))
            if best is None or distance < best[0]:
                best = (distance, i)
    return None if best is None else best[1]
