"""From tracks to named identities and screen time: cluster, label against the facebank, time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from faceflow.v1 import storage_pb2

from services.orchestrator.analysis.face_table import FaceTable
from services.orchestrator.analysis.identities import (
    ClusteringSettings,
    cluster_tracks,
    cooccurrence_matrix,
    track_embedding,
)
from services.orchestrator.analysis.labelling import Facebank, IdentityMatch, MatchSettings, match_identities
from services.orchestrator.analysis.screentime import ScreenTimeSettings, merge_by_label, screen_time, total_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    identity_id: str
    track_ids: tuple[int, ...]
    vector: np.ndarray
    match: IdentityMatch
    intervals: list[tuple[float, float]]

    @property
    def seconds(self) -> float:
        return total_seconds(self.intervals)


@dataclass(frozen=True)
class IdentityResult:
    identities: list[Identity]
    people: dict[str, list[tuple[float, float]]]  # label -> union of intervals of its identities
    facebank_exemplars_used: int
    facebank_exemplars_skipped: int


def facebank_for_model(people: list[storage_pb2.Person], model_id: str) -> tuple[Facebank, int, int]:
    """Exemplars made by `model_id` only: vectors of different models are never compared."""
    vectors, owners, names = [], [], {}
    skipped = 0
    for person in people:
        for exemplar in person.exemplars:
            if exemplar.model_id != model_id:
                skipped += 1
                continue
            vectors.append(np.asarray(exemplar.embedding, np.float32))
            owners.append(person.person_id)
            names[person.person_id] = person.name
    if skipped:
        log.warning(
            "facebank exemplars made by another model were skipped; run `faceflow facebank reembed`",
            extra={"skipped": skipped, "model_id": model_id},
        )
    dim = len(vectors[0]) if vectors else 0
    matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    return Facebank(matrix, owners, names), len(vectors), skipped


def build_identities(
    faces: FaceTable,
    people: list[storage_pb2.Person],
    model_id: str,
    fps: float,
    stride: int,
    duration_s: float,
    clustering: ClusteringSettings,
    matching: MatchSettings,
    timing: ScreenTimeSettings,
) -> IdentityResult:
    track_ids = faces.track_ids()
    if len(track_ids) == 0:
        return IdentityResult([], {}, 0, 0)
    rows = [faces.rows_of_track(int(t)) for t in track_ids]
    samples = [faces.embeddings_of_track(int(t)) for t in track_ids]  # every track has >= 1 sample
    sample_quality = faces.quality[faces.embedding_row]
    vectors = np.stack([track_embedding(faces.embedding[e], sample_quality[e]) for e in samples])
    track_frames = [faces.frame[r] for r in rows]
    cannot_link = cooccurrence_matrix(track_frames)
    restored = faces.restored[faces.embedding_row]
    weak = np.array([bool(restored[e].all()) for e in samples])  # every embedded face a reconstruction
    labels = cluster_tracks(
        vectors, cannot_link, clustering, track_face_counts=np.array([len(r) for r in rows]), weak_tracks=weak
    )
    count = int(labels.max()) + 1
    members = [np.flatnonzero(labels == k) for k in range(count)]
    member_samples = [np.concatenate([samples[i] for i in m]) for m in members]
    identity_vectors = np.stack([track_embedding(faces.embedding[e], sample_quality[e]) for e in member_samples])
    identity_frames = [np.concatenate([track_frames[i] for i in m]) for m in members]
    facebank, used, skipped = facebank_for_model(people, model_id)
    matches = match_identities(identity_vectors, facebank, cooccurrence_matrix(identity_frames), matching)
    ids = [f"id_{k + 1:04d}" for k in range(count)]
    intervals = screen_time(
        dict(zip(ids, identity_frames, strict=True)),
        fps,
        stride,
        duration_s,
        timing,
        cut_frames=faces.cut_frames,
        processed_frames=faces.processed_frames,
    )
    identities = [
        Identity(
            ids[k], tuple(int(track_ids[i]) for i in members[k]), identity_vectors[k], matches[k], intervals[ids[k]]
        )
        for k in range(count)
    ]
    people_intervals = merge_by_label(intervals, {i.identity_id: i.match.label for i in identities})
    return IdentityResult(identities, people_intervals, used, skipped)
