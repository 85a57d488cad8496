"""Unit tests for track embeddings, co-occurrence and constrained identity clustering."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.analysis.identities import (
    ClusteringSettings,
    cluster_tracks,
    cooccurrence_matrix,
    track_embedding,
)

DIM = 512


def vectors_with_gram(gram: np.ndarray, seed: int = 0) -> np.ndarray:
    """Unit vectors in DIM dimensions whose pairwise cosine similarities are exactly `gram`."""
    gram = np.asarray(gram, dtype=np.float64)
    factor = np.linalg.cholesky(gram)
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, gram.shape[0])))
    return factor @ basis.T  # rows of an orthonormal basis, mixed to the wanted similarities


def clustered_vectors(sizes: list[int], within: float, seed: int = 0) -> np.ndarray:
    """Clusters of the given sizes: similarity `within` inside a cluster, 0 across clusters."""
    blocks = [np.full((n, n), within) for n in sizes]
    total = sum(sizes)
    gram = np.zeros((total, total))
    start = 0
    for block in blocks:
        gram[start : start + len(block), start : start + len(block)] = block
        start += len(block)
    np.fill_diagonal(gram, 1.0)
    return vectors_with_gram(gram, seed)


def no_links(count: int) -> np.ndarray:
    return np.zeros((count, count), dtype=bool)


def linked(count: int, *pairs: tuple[int, int]) -> np.ndarray:
    matrix = no_links(count)
    for a, b in pairs:
        matrix[a, b] = matrix[b, a] = True
    return matrix


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :]))


# --- track_embedding -------------------------------------------------------------------------


def test_track_embedding_weights_faces_by_quality() -> None:
    basis = np.eye(4)
    result = track_embedding(basis[:2], np.array([0.75, 0.25]))
    np.testing.assert_allclose(result, np.array([3.0, 1.0, 0.0, 0.0]) / np.sqrt(10.0))


def test_track_embedding_zero_weights_fall_back_to_plain_mean() -> None:
    result = track_embedding(np.eye(3)[:2], np.zeros(2))
    np.testing.assert_allclose(result, np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0))


def test_track_embedding_is_unit_length_and_ignores_zero_quality_faces() -> None:
    faces = vectors_with_gram(np.array([[1.0, 0.2, 0.1], [0.2, 1.0, 0.3], [0.1, 0.3, 1.0]]))
    result = track_embedding(faces, np.array([0.9, 0.0, 0.4]))
    expected = track_embedding(faces[[0, 2]], np.array([0.9, 0.4]))
    assert np.linalg.norm(result) == pytest.approx(1.0)
    np.testing.assert_allclose(result, expected)


@pytest.mark.parametrize(
    ("vectors", "qualities", "message"),
    [
        (np.zeros((0, 4)), np.zeros(0), "non-empty"),
        (np.eye(4)[0], np.ones(1), "non-empty"),
        (np.eye(4)[:2], np.ones(3), "one per face"),
        (np.eye(4)[:2], np.array([0.5, -0.1]), "non-negative"),
        (np.eye(4)[:2], np.array([0.5, np.nan]), "finite"),
        (np.array([[1.0, 0.0], [-1.0, 0.0]]), np.ones(2), "cancel out"),
    ],
)
def test_track_embedding_rejects_bad_input(vectors: np.ndarray, qualities: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        track_embedding(vectors, qualities)


# --- cooccurrence_matrix ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tracks", "pairs"),
    [
        ([], []),
        ([[1, 2, 3]], []),
        ([[1, 2, 3], [3, 4], [5, 6]], [(0, 1)]),
        ([[1, 2], [4, 5], [2, 4]], [(0, 2), (1, 2)]),
        ([[10], [], [10], [11]], [(0, 2)]),
        ([[7, 7, 8], [8]], [(0, 1)]),
    ],
)
def test_cooccurrence_matrix(tracks: list[list[int]], pairs: list[tuple[int, int]]) -> None:
    result = cooccurrence_matrix([np.array(t, dtype=np.int64) for t in tracks])
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, linked(len(tracks), *pairs))


def test_cooccurrence_matrix_rejects_float_frames() -> None:
    with pytest.raises(ValueError, match="integers"):
        cooccurrence_matrix([np.array([1.5])])


# --- cluster_tracks --------------------------------------------------------------------------


def test_two_clean_clusters_labelled_by_first_appearance() -> None:
    vectors = clustered_vectors([2, 2], within=0.8)
    order = np.array([2, 0, 3, 1])  # tracks of the second cluster come first
    labels = cluster_tracks(vectors[order], no_links(4))
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])


@pytest.mark.parametrize(
    ("similarity", "merged"),
    [(0.9, True), (0.55, True), (0.51, True), (0.49, False), (0.45, False), (0.0, False)],
)
def test_merge_threshold(similarity: float, merged: bool) -> None:
    vectors = vectors_with_gram(np.array([[1.0, similarity], [similarity, 1.0]]))
    labels = cluster_tracks(vectors, no_links(2), ClusteringSettings(distance_threshold=0.5))
    assert bool(labels[0] == labels[1]) is merged


def test_very_similar_cannot_link_pair_stays_apart() -> None:
    vectors = vectors_with_gram(np.array([[1.0, 0.97], [0.97, 1.0]]))
    np.testing.assert_array_equal(cluster_tracks(vectors, linked(2, (0, 1))), [0, 1])


def test_cannot_link_is_enforced_between_clusters_not_just_tracks() -> None:
    # A and B merge first (0.95). C is close to both (0.9) but shares a frame with B only: the
    # pair (A, C) is allowed on its own, yet C must not join the cluster {A, B}.
    gram = np.array([[1.0, 0.95, 0.9], [0.95, 1.0, 0.9], [0.9, 0.9, 1.0]])
    labels = cluster_tracks(vectors_with_gram(gram), linked(3, (1, 2)))
    np.testing.assert_array_equal(labels, [0, 0, 1])


def test_transitive_merge_respects_cannot_link() -> None:
    # A~B and B~C are strong, A and C share a frame: B joins one side, A and C never meet.
    gram = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.85], [0.8, 0.85, 1.0]])
    labels = cluster_tracks(vectors_with_gram(gram), linked(3, (0, 2)))
    assert labels[0] != labels[2]
    np.testing.assert_array_equal(labels, [0, 0, 1])


def test_average_linkage_does_not_chain() -> None:
    # Single linkage would chain A-B-C; the average distance {A,B}-C is (1.0 + 0.4) / 2 = 0.7.
    gram = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.6], [0.0, 0.6, 1.0]])
    labels = cluster_tracks(vectors_with_gram(gram), no_links(3))
    np.testing.assert_array_equal(labels, [0, 0, 1])


def test_average_linkage_merges_on_cluster_average() -> None:
    # C is at distance 0.45 from A (alone it would merge) and 0.57 from B: the average 0.51 is
    # not below the threshold 0.5. At 0.42 and 0.56 the average 0.49 is.
    for sim_ac, sim_bc, merged in [(0.55, 0.43, False), (0.58, 0.44, True)]:
        gram = np.array([[1.0, 0.9, sim_ac], [0.9, 1.0, sim_bc], [sim_ac, sim_bc, 1.0]])
        labels = cluster_tracks(vectors_with_gram(gram), no_links(3))
        assert bool(labels[2] == labels[0]) is merged


def test_partition_does_not_depend_on_track_order() -> None:
    rng = np.random.default_rng(3)
    vectors = clustered_vectors([4, 3, 5, 1], within=0.7, seed=3)
    cannot = linked(13, (0, 4), (5, 9))
    labels = cluster_tracks(vectors, cannot)
    permutation = rng.permutation(13)
    shuffled = cluster_tracks(vectors[permutation], cannot[np.ix_(permutation, permutation)])
    assert same_partition(labels[permutation], shuffled)
    assert labels.max() + 1 == 4


def _reference_clustering(vectors: np.ndarray, cannot: np.ndarray, threshold: float) -> np.ndarray:
    """Slow, obviously correct average linkage with cluster-level cannot-link."""
    clusters = [[i] for i in range(len(vectors))]
    distance = 1.0 - vectors @ vectors.T
    while True:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if cannot[np.ix_(clusters[a], clusters[b])].any():
                    continue
                d = distance[np.ix_(clusters[a], clusters[b])].mean()
                if d < threshold and (best is None or d < best[0]):
                    best = (d, a, b)
        if best is None:
            break
        _, a, b = best
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    labels = np.empty(len(vectors), dtype=np.int64)
    for k, members in enumerate(sorted(clusters, key=min)):
        labels[members] = k
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_average_linkage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, DIM))
    members = centres[rng.integers(0, 5, size=30)] + rng.normal(scale=0.9 / np.sqrt(DIM) * 30, size=(30, DIM))
    vectors = members / np.linalg.norm(members, axis=1, keepdims=True)
    cannot = np.triu(rng.random((30, 30)) < 0.05, 1)
    cannot = cannot | cannot.T
    settings = ClusteringSettings(distance_threshold=0.6)
    labels = cluster_tracks(vectors, cannot, settings)
    np.testing.assert_array_equal(labels, _reference_clustering(vectors, cannot, 0.6))
    assert 1 < labels.max() + 1 < 30  # the case is non-trivial
    for a, b in zip(*np.nonzero(cannot), strict=True):
        assert labels[a] != labels[b]


def test_short_tracks_attach_but_never_anchor() -> None:
    # Tracks 0-1: a cluster. Track 2: short, close to it -> attaches. Tracks 3-4: short and very
    # similar to each other but far from the cluster -> two singletons, not one identity.
    gram = np.eye(5)
    gram[0, 1] = gram[1, 0] = 0.8
    gram[0, 2] = gram[2, 0] = gram[1, 2] = gram[2, 1] = 0.7
    gram[3, 4] = gram[4, 3] = 0.95
    labels = cluster_tracks(
        vectors_with_gram(gram),
        no_links(5),
        ClusteringSettings(min_track_faces=3),
        track_face_counts=np.array([10, 10, 2, 1, 2]),
    )
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 2])
    # Without face counts all tracks anchor and the two short ones merge.
    np.testing.assert_array_equal(cluster_tracks(vectors_with_gram(gram), no_links(5)), [0, 0, 0, 1, 1])


def test_short_tracks_in_one_frame_do_not_join_the_same_cluster() -> None:
    gram = np.eye(4)
    gram[0, 1] = gram[1, 0] = 0.8
    for short, similarity in [(2, 0.75), (3, 0.65)]:
        gram[0, short] = gram[short, 0] = gram[1, short] = gram[short, 1] = similarity
    gram[2, 3] = gram[3, 2] = 0.6
    counts = np.array([9, 9, 1, 1])
    labels = cluster_tracks(vectors_with_gram(gram), linked(4, (2, 3)), track_face_counts=counts)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1])  # the closer short track wins
    # A short track sharing a frame with a cluster member stays on its own.
    labels = cluster_tracks(vectors_with_gram(gram), linked(4, (1, 2)), track_face_counts=counts)
    np.testing.assert_array_equal(labels, [0, 0, 1, 0])


def test_all_short_tracks_are_singletons() -> None:
    vectors = clustered_vectors([3], within=0.9)
    labels = cluster_tracks(vectors, no_links(3), track_face_counts=np.ones(3))
    np.testing.assert_array_equal(labels, [0, 1, 2])


def test_empty_input() -> None:
    assert cluster_tracks(np.zeros((0, DIM)), no_links(0)).shape == (0,)


@pytest.mark.parametrize(
    ("vectors", "cannot", "message"),
    [
        (np.eye(3), np.zeros((2, 2), dtype=bool), "cannot_link"),
        (np.eye(3), np.zeros((3, 3), dtype=int), "cannot_link"),
        (np.zeros((2, 3)), no_links(2), "all-zero"),
        (np.ones(3), no_links(3), "2-D"),
    ],
)
def test_cluster_tracks_rejects_bad_input(vectors: np.ndarray, cannot: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_tracks(vectors, cannot)


def test_face_counts_must_match_tracks() -> None:
    with pytest.raises(ValueError, match="track_face_counts"):
        cluster_tracks(np.eye(3), no_links(3), track_face_counts=np.ones(2))


@pytest.mark.parametrize(("threshold", "min_faces"), [(0.0, 3), (2.5, 3), (0.5, 0)])
def test_clustering_settings_validate(threshold: float, min_faces: int) -> None:
    with pytest.raises(ValueError):
        ClusteringSettings(distance_threshold=threshold, min_track_faces=min_faces)


def test_large_input_is_fast_enough() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, DIM))
    noisy = np.repeat(centres, 20, axis=0) + rng.normal(scale=0.8, size=(1000, DIM))
    vectors = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    frames = [np.arange(t % 20 * 10, t % 20 * 10 + 5) for t in range(1000)]
    cannot = cooccurrence_matrix(frames)
    labels = cluster_tracks(vectors, cannot)
    assert not np.any(cannot & (labels[:, None] == labels[None, :]))


def _two_people_and_a_pan(to_a: float, to_b: float) -> np.ndarray:
    """Tracks 0-1: person A; 2-3: person B; 4: a track of restored (deblurred) faces."""
    gram = np.eye(5)
    gram[0, 1] = gram[1, 0] = gram[2, 3] = gram[3, 2] = 0.8
    gram[4, :2] = gram[:2, 4] = to_a
    gram[4, 2:4] = gram[2:4, 4] = to_b
    return vectors_with_gram(gram)


@pytest.mark.parametrize(
    ("to_a", "to_b", "expected"),
    [
        (0.3, 0.05, [0, 0, 1, 1, 0]),  # clearly A's, though far below the 0.5 a clean track needs
        (0.3, 0.25, [0, 0, 1, 1, 2]),  # no clear winner: its own identity, never a guess
        (0.1, -0.05, [0, 0, 1, 1, 2]),  # too far from everyone
    ],
)
def test_a_weak_track_joins_the_identity_it_clearly_resembles(to_a: float, to_b: float, expected: list[int]) -> None:
    counts = np.array([10, 10, 10, 10, 25])
    weak = np.array([False, False, False, False, True])
    labels = cluster_tracks(_two_people_and_a_pan(to_a, to_b), no_links(5), track_face_counts=counts, weak_tracks=weak)
    np.testing.assert_array_equal(labels, expected)
    # The same track, not restored, is judged as any other: 0.3 is a different person.
    plain = cluster_tracks(_two_people_and_a_pan(to_a, to_b), no_links(5), track_face_counts=counts)
    np.testing.assert_array_equal(plain, [0, 0, 1, 1, 2])


def test_a_weak_track_never_joins_an_identity_it_shares_a_frame_with() -> None:
    counts = np.array([10, 10, 10, 10, 25])
    weak = np.array([False, False, False, False, True])
    labels = cluster_tracks(
        _two_people_and_a_pan(0.3, 0.05), linked(5, (1, 4)), track_face_counts=counts, weak_tracks=weak
    )
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2])  # A is on screen with it; B is not close
