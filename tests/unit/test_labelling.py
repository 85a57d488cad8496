"""Unit tests for naming identities against the facebank."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.analysis.labelling import Facebank, IdentityMatch, MatchSettings, match_identities

DIM = 128
SETTINGS = MatchSettings(auto_assign_similarity=0.55, suggest_similarity=0.35, margin=0.1)


def axis(index: int) -> np.ndarray:
    vector = np.zeros(DIM)
    vector[index] = 1.0
    return vector


def facebank(exemplar_axes: dict[str, list[int]]) -> Facebank:
    """One exemplar per listed axis: exemplars are orthogonal, so similarities are exact."""
    ids = [pid for pid, axes in exemplar_axes.items() for _ in axes]
    vectors = np.array([axis(a) for axes in exemplar_axes.values() for a in axes]).reshape(-1, DIM)
    return Facebank(vectors=vectors, person_ids=ids, names={pid: pid.title() for pid in exemplar_axes})


def identity(similarities: dict[int, float], own_axis: int) -> np.ndarray:
    """A unit vector with the given cosine similarity to each listed axis; the rest on `own_axis`."""
    vector = np.zeros(DIM)
    for index, similarity in similarities.items():
        vector[index] = similarity
    vector[own_axis] = np.sqrt(1.0 - np.sum(vector**2))
    return vector


# Persons: ann (axes 0, 1), bob (axis 2), cat (axis 3); identities use axes 40+ for their remainder.
BANK = facebank({"ann": [0, 1], "bob": [2], "cat": [3]})


def no_cooccurrence(count: int) -> np.ndarray:
    return np.zeros((count, count), dtype=bool)


def cooccurring(count: int, *pairs: tuple[int, int]) -> np.ndarray:
    matrix = no_cooccurrence(count)
    for a, b in pairs:
        matrix[a, b] = matrix[b, a] = True
    return matrix


@pytest.mark.parametrize(
    ("case", "similarities", "tier", "label"),
    [
        ("clear match", {0: 0.8}, "auto", "Ann"),
        ("best exemplar counts", {0: 0.1, 1: 0.7}, "auto", "Ann"),
        ("just above auto", {2: 0.56}, "auto", "Bob"),
        ("just below auto", {2: 0.54}, "suggest", None),
        ("just above suggest", {3: 0.36}, "suggest", None),
        ("just below suggest", {3: 0.34}, "unknown", None),
        ("no resemblance", {}, "unknown", None),
        ("margin met", {0: 0.75, 2: 0.64}, "auto", "Ann"),
        ("margin missed", {0: 0.75, 2: 0.66}, "suggest", None),
        ("margin uses persons, not exemplars", {0: 0.7, 1: 0.68}, "auto", "Ann"),
    ],
)
def test_tiers(case: str, similarities: dict[int, float], tier: str, label: str | None) -> None:
    [match] = match_identities(identity(similarities, 40)[None], BANK, no_cooccurrence(1), SETTINGS)
    assert (match.tier, match.label) == (tier, label), case
    assert match.person_id == (label.lower() if label else None)
    assert match.similarity == pytest.approx(max(similarities.values(), default=0.0))


def test_suggestions_are_top_three_above_the_suggest_threshold() -> None:
    bank = facebank({"ann": [0], "bob": [1], "cat": [2], "dan": [3], "eve": [4]})
    vector = identity({0: 0.5, 1: 0.45, 2: 0.4, 3: 0.38, 4: 0.3}, 40)
    [match] = match_identities(vector[None], bank, no_cooccurrence(1), SETTINGS)
    assert match.tier == "suggest"
    assert [(pid, name) for pid, name, _ in match.suggestions] == [
        ("ann", "Ann"),
        ("bob", "Bob"),
        ("cat", "Cat"),
    ]
    assert [s for _, _, s in match.suggestions] == pytest.approx([0.5, 0.45, 0.4])
    [match] = match_identities(identity({0: 0.4, 1: 0.2}, 40)[None], bank, no_cooccurrence(1), SETTINGS)
    assert [pid for pid, _, _ in match.suggestions] == ["ann"]
    [match] = match_identities(identity({0: 0.2}, 40)[None], bank, no_cooccurrence(1), SETTINGS)
    assert match.suggestions == ()


def test_cooccurring_identities_are_not_both_auto_assigned_to_one_person() -> None:
    vectors = np.array([identity({2: 0.7}, 40), identity({2: 0.8}, 41)])
    matches = match_identities(vectors, BANK, cooccurring(2, (0, 1)), SETTINGS)
    assert [m.tier for m in matches] == ["suggest", "auto"]
    assert matches[1].label == "Bob"
    assert matches[0].suggestions[0][0] == "bob"  # the loser still gets the person offered


def test_identities_that_never_cooccur_may_share_a_person() -> None:
    vectors = np.array([identity({2: 0.7}, 40), identity({2: 0.8}, 41)])
    matches = match_identities(vectors, BANK, no_cooccurrence(2), SETTINGS)
    assert [(m.tier, m.label) for m in matches] == [("auto", "Bob"), ("auto", "Bob")]


def test_cooccurring_identities_of_different_people_are_both_assigned() -> None:
    vectors = np.array([identity({0: 0.8}, 40), identity({2: 0.8}, 41)])
    matches = match_identities(vectors, BANK, cooccurring(2, (0, 1)), SETTINGS)
    assert [m.label for m in matches] == ["Ann", "Bob"]


def test_conflicts_are_resolved_for_the_highest_total_similarity() -> None:
    # 0 conflicts with 1 and 2, which never meet: {1, 2} (1.6) beats {0} (0.9). Identity 3 is
    # someone else's and is untouched.
    vectors = np.array([identity({2: 0.9}, 40), identity({2: 0.8}, 41), identity({2: 0.8}, 42), identity({3: 0.9}, 43)])
    matches = match_identities(vectors, BANK, cooccurring(4, (0, 1), (0, 2), (0, 3)), SETTINGS)
    assert [m.tier for m in matches] == ["suggest", "auto", "auto", "auto"]
    assert [m.label for m in matches] == [None, "Bob", "Bob", "Cat"]


def test_no_two_cooccurring_identities_share_an_auto_person_at_scale() -> None:
    rng = np.random.default_rng(5)
    count = 40
    vectors = np.array([identity({int(rng.integers(0, 4)): rng.uniform(0.56, 0.95)}, 40 + i) for i in range(count)])
    conflicts = np.triu(rng.random((count, count)) < 0.15, 1)
    conflicts = conflicts | conflicts.T
    matches = match_identities(vectors, BANK, conflicts, SETTINGS)
    assert sum(m.tier == "auto" for m in matches) > 4
    for a, b in zip(*np.nonzero(conflicts), strict=True):
        assert not (matches[a].tier == matches[b].tier == "auto" and matches[a].person_id == matches[b].person_id)
    # Every identity with an auto-eligible match either kept it or fell back to 'suggest'.
    assert all(m.tier in ("auto", "suggest") for m in matches)


def test_empty_facebank_gives_unknown_for_everyone() -> None:
    empty = Facebank(vectors=np.zeros((0, DIM)), person_ids=[], names={})
    matches = match_identities(np.array([axis(0), axis(1)]), empty, no_cooccurrence(2), SETTINGS)
    assert matches == [IdentityMatch(None, None, None, "unknown"), IdentityMatch(None, None, None, "unknown")]


def test_no_identities() -> None:
    assert match_identities(np.zeros((0, DIM)), BANK, no_cooccurrence(0), SETTINGS) == []


def test_single_person_facebank_has_no_margin_to_beat() -> None:
    bank = facebank({"bob": [2]})
    [match] = match_identities(identity({2: 0.6}, 40)[None], bank, no_cooccurrence(1), SETTINGS)
    assert (match.tier, match.label) == ("auto", "Bob")


def test_top_k_averages_a_persons_best_exemplars() -> None:
    vector = identity({0: 0.8, 1: 0.4}, 40)
    [by_max] = match_identities(vector[None], BANK, no_cooccurrence(1), SETTINGS)
    top2 = MatchSettings(exemplar_top_k=2)
    [by_mean] = match_identities(vector[None], BANK, no_cooccurrence(1), top2)
    assert by_max.similarity == pytest.approx(0.8)
    assert by_mean.similarity == pytest.approx(0.6)
    # k larger than a person's exemplar count uses all of them.
    [bob] = match_identities(identity({2: 0.7}, 40)[None], BANK, no_cooccurrence(1), MatchSettings(exemplar_top_k=5))
    assert bob.similarity == pytest.approx(0.7)


def test_default_settings_are_ordered() -> None:
    defaults = MatchSettings()
    assert defaults.suggest_similarity < 0.4 < defaults.auto_assign_similarity
    assert defaults.margin > 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auto_assign_similarity": 0.3, "suggest_similarity": 0.4},
        {"auto_assign_similarity": 1.2},
        {"margin": -0.1},
        {"exemplar_top_k": 0},
    ],
)
def test_match_settings_validate(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MatchSettings(**kwargs)  # type: ignore[arg-type]


def test_match_identities_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        match_identities(np.ones((1, DIM + 1)), BANK, no_cooccurrence(1), SETTINGS)
    with pytest.raises(ValueError, match="cooccurring"):
        match_identities(np.ones((2, DIM)), BANK, no_cooccurrence(3), SETTINGS)
    with pytest.raises(ValueError, match="name"):
        Facebank(vectors=np.ones((1, DIM)), person_ids=["x"], names={})
    with pytest.raises(ValueError, match="one row per person"):
        Facebank(vectors=np.ones((2, DIM)), person_ids=["x"], names={"x": "X"})


def test_large_conflict_component_is_resolved_greedily_without_violations() -> None:
    # 15 identities of one person in a chain of co-occurrences: too large to enumerate exactly.
    similarities = [0.6 + 0.02 * i for i in range(15)]
    vectors = np.array([identity({2: s}, 40 + i) for i, s in enumerate(similarities)])
    conflicts = cooccurring(15, *[(i, i + 1) for i in range(14)])
    matches = match_identities(vectors, BANK, conflicts, SETTINGS)
    auto = [m.tier == "auto" for m in matches]
    assert not any(auto[i] and auto[i + 1] for i in range(14))
    assert auto[14]  # best first: the most similar identity keeps its name
    assert sum(auto) == 8
