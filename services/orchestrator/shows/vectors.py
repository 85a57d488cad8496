"""Per-run track embeddings, read once from a run's faces.npy and faces.jsonl and kept in memory.

A run's artifacts never change once published, so (episode, run) is a safe cache key: a show's roll-up
reads each run's embeddings once, then builds identity vectors for whatever the review made of its
tracks (a merge, a split) from the per-track sums without touching storage again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.run.artifacts import read_faces

# Runs, count. One run costs about (tracks x 2 KB): 1000 runs of 200 tracks is ~400 MB at most, and a
# season view touches one run per episode; 512 covers a long show's seasons without re-reading.
CACHE_RUNS = 512


@dataclass(frozen=True)
class TrackSums:
    """Per track: the quality-weighted sum of its face embeddings and the sum of weights."""

    model_id: str
    sums: dict[int, np.ndarray]
    weights: dict[int, float]

    def identity_vector(self, track_ids: Iterable[int]) -> np.ndarray | None:
        """The quality-weighted mean (unit) of every face of these tracks, as the episode's clustering
        weights them (analysis/identities.track_embedding); None when no face of theirs was embedded."""
        present = [t for t in track_ids if t in self.sums]
        if not present:
            return None
        total = np.sum([self.sums[t] for t in present], axis=0)
        norm = float(np.linalg.norm(total))
        return total / norm if norm > 0 else None


def track_sums(rows: list[dict[str, Any]], faces: np.ndarray) -> TrackSums:
    """From a run's faces.jsonl rows and faces.npy embeddings (run/artifacts.read_faces)."""
    embeddings = np.asarray(faces, np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    sums: dict[int, np.ndarray] = {}
    weights: dict[int, float] = {}
    for row in rows:
        track, quality = int(row["track_id"]), max(float(row.get("quality", 1.0)), 1e-3)
        if track <= 0:
            continue
        sums[track] = sums.get(track, 0.0) + quality * unit[int(row["row"])]
        weights[track] = weights.get(track, 0.0) + quality
    model = rows[0].get("embedding_model", "") if rows else ""
    return TrackSums(model, sums, weights)


class RunVectors:
    """TrackSums per (episode, run), least recently used evicted beyond CACHE_RUNS."""

    def __init__(self, clients: ServiceClients, capacity: int = CACHE_RUNS) -> None:
        self._clients = clients
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str], TrackSums] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ep_id: str, run_id: str) -> TrackSums:
        key = (ep_id, run_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        loaded = track_sums(*read_faces(self._clients, ep_id, run_id))
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return loaded
