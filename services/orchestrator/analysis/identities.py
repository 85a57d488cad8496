"""Identities from tracks: one embedding per track, then constrained clustering of tracks.

A track is one person followed through one shot; an identity is the set of tracks that show the
same person across the episode. Clustering is deliberately conservative: a person split into two
identities is recovered at labelling time (both identities can be named after the same person),
whereas two people merged into one identity cannot be separated downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse


def unit_rows(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Return `vectors` (n, d) as float64 rows of unit length.

    Inputs are expected to be L2-normalised already; renormalising is cheap and keeps a dot product
    equal to the cosine similarity even after float32 round trips through storage.
    """
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d); got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must contain only finite numbers")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0.0):
        raise ValueError(f"{what} must not contain all-zero rows; rows {np.flatnonzero(norms[:, 0] == 0.0)}")
    return array / norms


def track_embedding(vectors: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """One unit vector per track: the quality-weighted mean of its face embeddings.

    Weighting by detector/alignment quality lets the sharp frontal faces of a track dominate its
    blurred or profile ones. When every quality is zero there is nothing to prefer, so the plain
    mean is used rather than failing.
    """
    faces = np.asarray(vectors, dtype=np.float64)
    weights = np.asarray(qualities, dtype=np.float64)
    if faces.ndim != 2 or faces.shape[0] == 0:
        raise ValueError(f"a track embedding needs a non-empty (n, d) array of face vectors; got shape {faces.shape}")
    if weights.shape != (faces.shape[0],):
        raise ValueError(
            f"qualities must have shape ({faces.shape[0]},), one per face vector; got shape {weights.shape}"
        )
    if not (np.all(np.isfinite(faces)) and np.all(np.isfinite(weights))):
        raise ValueError("face vectors and qualities must contain only finite numbers")
    if np.any(weights < 0.0):
        raise ValueError("qualities must be non-negative (expected values in [0, 1])")
    total = weights.sum()
    mean = faces.mean(axis=0) if total <= 0.0 else (weights @ faces) / total
    norm = np.linalg.norm(mean)
    if norm == 0.0:
        raise ValueError("the face vectors of this track cancel out; expected L2-normalised embeddings of one face")
    return mean / norm


def cooccurrence_matrix(track_frames: Sequence[np.ndarray]) -> np.ndarray:
    """(T, T) bool: True where two different tracks share at least one frame index.

    Two faces in the same frame are two different people, so co-occurring tracks must never end up
    in one identity. The diagonal is False: a track does not conflict with itself.
    """
    count = len(track_frames)
    if count == 0:
        return np.zeros((0, 0), dtype=bool)
    arrays = [np.asarray(frames).reshape(-1) for frames in track_frames]
    for index, frames in enumerate(arrays):
        if frames.size and not np.issubdtype(frames.dtype, np.integer):
            raise ValueError(f"track {index} frame indices must be integers; got dtype {frames.dtype}")
    all_frames = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)
    owners = np.repeat(np.arange(count), [frames.size for frames in arrays])
    if all_frames.size == 0:
        return np.zeros((count, count), dtype=bool)
    unique_frames, columns = np.unique(all_frames, return_inverse=True)
    incidence = sparse.csr_matrix(
        (np.ones(all_frames.size, dtype=np.int32), (owners, columns)), shape=(count, unique_frames.size)
    )
    shared = (incidence @ incidence.T).toarray() > 0
    np.fill_diagonal(shared, False)
    return shared


@dataclass(frozen=True)
class ClusteringSettings:
    """Thresholds for grouping tracks into identities."""

    # Cosine distance (1 - cosine similarity), unitless. Two clusters merge while the average
    # distance between their tracks is below this, i.e. average similarity above 0.5. Different
    # people stay below ~0.4 similarity even on single clean faces (distance > 0.6) and track means
    # of different people are lower still; the same person's track means are typically 0.5-0.9.
    # 0.5 leaves a 0.1 safety band over the different-person ceiling: on TV footage (profiles,
    # motion blur, stage lighting) we prefer splitting a person, which labelling repairs, to
    # merging two people, which nothing downstream repairs.
    distance_threshold: float = 0.5
    # Faces (processed frames), count. Tracks with fewer faces still become (part of) an identity,
    # but they do not anchor merges: their mean embedding is one or two noisy faces whose
    # similarity spread (0.4-0.9 for the same person) straddles the threshold. They are attached
    # afterwards to the closest cluster of longer tracks if within the threshold and not
    # cannot-linked, and otherwise stay singletons; they are never merged with each other.
    min_track_faces: int = 3
    # Weak tracks (every embedded face restored from a motion smear) never anchor either, and their
    # embeddings are a reconstruction: a face the deconvolution brought back measured 0.19-0.44
    # cosine to the same person's clean tracks where clean tracks reach 0.5-0.9, and <= 0.09 to
    # the other people on screen. So a weak track joins the closest cluster when that cluster is
    # at least weak_min_similarity away and beats every other cluster it may join by weak_margin:
    # relative evidence, where an absolute 0.5 would make every pan a new person. 0.15 is above
    # the different-person mean (~0); 0.1 is the labelling margin (MatchSettings.margin).
    weak_min_similarity: float = 0.15
    weak_margin: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.distance_threshold <= 2.0:
            raise ValueError(f"distance_threshold must be a cosine distance in (0, 2]; got {self.distance_threshold}")
        if self.min_track_faces < 1:
            raise ValueError(f"min_track_faces must be at least 1; got {self.min_track_faces}")


def cluster_tracks(
    track_vectors: np.ndarray,
    cannot_link: np.ndarray,
    settings: ClusteringSettings | None = None,
    *,
    track_face_counts: np.ndarray | None = None,
    weak_tracks: np.ndarray | None = None,
) -> np.ndarray:
    """Identity label per track: labels 0..K-1, numbered in order of each identity's first track.

    Average-linkage agglomerative clustering on cosine distance: repeatedly merge the closest pair
    of clusters while their distance is strictly below `settings.distance_threshold`. Two clusters
    are never merged if any track of one shares a frame with any track of the other; this is
    re-evaluated as clusters grow, so cannot-link also blocks transitive merges (A~B, B~C, but A
    and C in one frame). Average linkage is used because it is robust to the one odd track that
    would chain people together under single linkage, without the size bias of complete linkage.

    `track_face_counts` (T,), when given, marks tracks with fewer than `settings.min_track_faces`
    faces as non-anchoring (see ClusteringSettings); `weak_tracks` (T,) bool marks tracks whose
    faces were all restored from a smear: non-anchoring, and attached by relative evidence
    (weak_min_similarity, weak_margin). Ties are broken by the lowest track index, so the result
    depends only on the inputs.
    """
    settings = settings or ClusteringSettings()
    vectors = unit_rows(track_vectors, "track_vectors")
    count = vectors.shape[0]
    blocked = np.asarray(cannot_link)
    if blocked.shape != (count, count) or blocked.dtype != np.bool_:
        raise ValueError(f"cannot_link must be a ({count}, {count}) bool array; got {blocked.dtype} {blocked.shape}")
    blocked = blocked | blocked.T
    if count == 0:
        return np.zeros(0, dtype=np.int64)

    anchors = np.ones(count, dtype=bool)
    if track_face_counts is not None:
        faces = np.asarray(track_face_counts)
        if faces.shape != (count,):
            raise ValueError(f"track_face_counts must have shape ({count},); got {faces.shape}")
        anchors = faces >= settings.min_track_faces
    weak = np.zeros(count, dtype=bool)
    if weak_tracks is not None:
        weak = np.asarray(weak_tracks, dtype=bool)
        if weak.shape != (count,):
            raise ValueError(f"weak_tracks must have shape ({count},); got {weak.shape}")
        anchors &= ~weak

    raw = np.full(count, -1, dtype=np.int64)
    anchor_index = np.flatnonzero(anchors)
    if anchor_index.size:
        raw[anchor_index] = average_linkage(
            vectors[anchor_index], blocked[np.ix_(anchor_index, anchor_index)], settings.distance_threshold
        )
    short_index = np.flatnonzero(~anchors)
    if short_index.size:
        raw[short_index] = _attach_short_tracks(
            vectors, blocked, raw, anchor_index, short_index, weak[short_index], settings
        )
    return _relabel_by_first_appearance(raw)


def average_linkage(vectors: np.ndarray, blocked: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster id per row (arbitrary ids); see cluster_tracks for the rules.

    Keeps a nearest-neighbour cache per cluster so each merge costs O(n) instead of a full O(n^2)
    scan; the distance matrix is updated with the Lance-Williams formula for average linkage.
    """
    count = vectors.shape[0]
    distance = 1.0 - vectors @ vectors.T
    blocked = blocked.copy()
    np.fill_diagonal(blocked, True)
    sizes = np.ones(count, dtype=np.float64)
    labels = np.arange(count)
    masked = np.where(blocked, np.inf, distance)
    nearest = masked.argmin(axis=1)
    nearest_distance = masked[np.arange(count), nearest]
    active = np.ones(count, dtype=bool)

    while True:
        first = int(nearest_distance.argmin())
        if not nearest_distance[first] < threshold:
            break
        keep, gone = sorted((first, int(nearest[first])))
        merged = (sizes[keep] * distance[keep] + sizes[gone] * distance[gone]) / (sizes[keep] + sizes[gone])
        distance[keep, :] = merged
        distance[:, keep] = merged
        sizes[keep] += sizes[gone]
        blocked[keep] |= blocked[gone]
        blocked[:, keep] = blocked[keep]
        blocked[gone, :] = True
        blocked[:, gone] = True
        active[gone] = False
        nearest_distance[gone] = np.inf
        labels[labels == gone] = keep

        row = np.where(blocked[keep], np.inf, distance[keep])
        nearest[keep] = int(row.argmin())
        nearest_distance[keep] = row[nearest[keep]]
        # Rows whose neighbour was one of the merged clusters must rescan; the others can only
        # have gained a closer neighbour in the merged cluster.
        stale = np.flatnonzero(active & ((nearest == keep) | (nearest == gone)))
        stale = stale[stale != keep]
        if stale.size:
            rows = np.where(blocked[stale], np.inf, distance[stale])
            nearest[stale] = rows.argmin(axis=1)
            nearest_distance[stale] = rows[np.arange(stale.size), nearest[stale]]
        column = np.where(blocked[:, keep], np.inf, distance[:, keep])
        closer = active & (column < nearest_distance)
        closer[keep] = False
        nearest[closer] = keep
        nearest_distance[closer] = column[closer]
    return labels


def _attach_short_tracks(
    vectors: np.ndarray,
    blocked: np.ndarray,
    raw: np.ndarray,
    anchor_index: np.ndarray,
    short_index: np.ndarray,
    weak: np.ndarray,
    settings: ClusteringSettings,
) -> np.ndarray:
    """Raw cluster id per short track: an anchored cluster when close enough, else a new singleton.

    Close enough: within the distance threshold; for a weak short track also the closest cluster it
    may join when that one is weak_min_similarity or more and beats the next by weak_margin.

    Candidate (short track, cluster) pairs are taken closest first; a short track joining a
    cluster adds its own cannot-links to that cluster, so two short tracks from one frame never
    join the same cluster. Cluster centroids stay those of the anchoring tracks.
    """
    assigned = np.full(short_index.size, -1, dtype=np.int64)
    if anchor_index.size:
        cluster_ids, members = np.unique(raw[anchor_index], return_inverse=True)
        membership = np.zeros((anchor_index.size, cluster_ids.size), dtype=np.float64)
        membership[np.arange(anchor_index.size), members] = 1.0
        sums = membership.T @ vectors[anchor_index]
        average_distance = 1.0 - (vectors[short_index] @ sums.T) / membership.sum(axis=0)
        conflict = (blocked[np.ix_(short_index, anchor_index)].astype(np.float64) @ membership) > 0
        accept = average_distance < settings.distance_threshold
        if weak.any():
            similarity = np.where(conflict, -np.inf, 1.0 - average_distance)
            ranked = np.sort(similarity, axis=1)
            best = ranked[:, -1]
            runner_up = ranked[:, -2] if ranked.shape[1] > 1 else np.full(len(best), -np.inf)
            clear = (best >= settings.weak_min_similarity) & (best - runner_up >= settings.weak_margin)
            accept |= (weak & clear)[:, None] & (similarity == best[:, None])
        shorts, clusters = np.nonzero(accept)
        order = np.lexsort((clusters, shorts, average_distance[shorts, clusters]))
        for short, cluster in zip(shorts[order], clusters[order], strict=True):
            if assigned[short] >= 0 or conflict[short, cluster]:
                continue
            assigned[short] = cluster_ids[cluster]
            conflict[:, cluster] |= blocked[short_index, short_index[short]]
    loners = np.flatnonzero(assigned < 0)
    # Fresh ids above every anchored id (which are row indices < len(raw)).
    assigned[loners] = raw.size + loners
    return assigned


def _relabel_by_first_appearance(raw: np.ndarray) -> np.ndarray:
    """Map arbitrary cluster ids to 0..K-1 in order of the first track carrying each id."""
    _, first_track, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first_track.size, dtype=np.int64)
    rank[np.argsort(first_track, kind="stable")] = np.arange(first_track.size)
    return rank[inverse.reshape(-1)]
