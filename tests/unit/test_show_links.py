"""Cross-episode links of unknown people (services/orchestrator/shows/links.py) on constructed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.shows.links import Unknown, centroid, link_unknowns, suggestions

DIM = 64


def _person(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return vector / np.linalg.norm(vector)


def _near(base: np.ndarray, similarity: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `similarity` cosine to `base`."""
    noise = np.random.default_rng(10_000 + seed).normal(size=DIM)  # never a person's own seed
    noise -= noise @ base * base
    noise /= np.linalg.norm(noise)
    return similarity * base + np.sqrt(1 - similarity**2) * noise


def _members(rows: list) -> list[tuple[int, ...]]:
    return [row.members for row in rows]


def test_the_same_person_in_three_episodes_is_one_row() -> None:
    a, b = _person(1), _person(2)
    unknowns = [
        Unknown(0, _near(a, 0.8, 10), None),
        Unknown(0, _near(b, 0.8, 11), None),
        Unknown(1, _near(a, 0.8, 12), None),
        Unknown(2, _near(a, 0.8, 13), None),
        Unknown(2, _near(b, 0.8, 14), None),
    ]
    rows = link_unknowns(unknowns)
    assert _members(rows) == [(0, 2, 3), (1, 4)]
    assert all(0.55 <= s <= 1.0 for s in rows[0].similarity.values())
    assert rows[0].link_id == ""


def test_two_identities_of_one_episode_are_never_one_row() -> None:
    a = _person(1)
    rows = link_unknowns([Unknown(0, _near(a, 0.9, 1), None), Unknown(0, _near(a, 0.9, 2), None)])
    assert _members(rows) == [(0,), (1,)]


def test_below_the_auto_tier_stays_apart_and_is_suggested() -> None:
    a = _person(1)
    first = _near(a, 0.7, 1)
    second = _near(first, 0.45, 2)  # between the suggest (0.35) and auto (0.55) tiers
    rows = link_unknowns([Unknown(0, first, None), Unknown(1, second, None)])
    assert _members(rows) == [(0,), (1,)]
    offered = suggestions([first, second], [{0}, {1}])
    assert [pair[0] for pair in offered[0]] == [1] and offered[0][0][1] == pytest.approx(0.45, abs=1e-6)
    assert suggestions([first, second], [{0}, {0}]) == [[], []]  # same episode: never offered


def test_reviewers_decisions_win_over_vectors() -> None:
    a, b, c = _person(1), _person(2), _person(3)
    link = "lnk-0123456789ab"
    unknowns = [
        Unknown(0, a, link),  # confirmed with a dissimilar identity of episode 1
        Unknown(1, b, link),
        Unknown(1, _near(c, 0.95, 4), ""),  # unlinked by a reviewer: alone although c is in episode 2
        Unknown(2, _near(c, 0.95, 5), None),
        Unknown(2, _near(a, 0.95, 6), None),  # looks like a: may join the confirmed row
    ]
    rows = link_unknowns(unknowns)
    assert _members(rows) == [(0, 1, 4), (2,), (3,)]
    assert rows[0].link_id == link


def test_two_reviewer_rows_are_never_joined_automatically() -> None:
    a = _person(1)
    unknowns = [
        Unknown(0, _near(a, 0.9, 1), "lnk-aaaaaaaaaaaa"),
        Unknown(1, _near(a, 0.9, 2), "lnk-aaaaaaaaaaaa"),
        Unknown(2, _near(a, 0.9, 3), "lnk-bbbbbbbbbbbb"),
        Unknown(3, _near(a, 0.9, 4), "lnk-bbbbbbbbbbbb"),
    ]
    assert _members(link_unknowns(unknowns)) == [(0, 1), (2, 3)]


def test_an_identity_without_a_vector_is_its_own_row() -> None:
    a = _person(1)
    rows = link_unknowns([Unknown(0, a, None), Unknown(1, None, None), Unknown(2, a, None)])
    assert _members(rows) == [(0, 2), (1,)]
    assert centroid([a, None]) is None
    assert centroid([a, a]) == pytest.approx(a)


def test_linking_scales_to_a_long_show() -> None:
    """30 episodes x 10 unknown identities, 40 people: every person's identities end in one row each."""
    people = [_person(p) for p in range(40)]
    rng = np.random.default_rng(0)
    unknowns, truth = [], []
    for episode in range(30):
        for person in rng.choice(40, size=10, replace=False):
            unknowns.append(Unknown(episode, _near(people[person], 0.85, len(unknowns) + 100), None))
            truth.append(int(person))
    rows = link_unknowns(unknowns)
    for row in rows:
        assert len({truth[m] for m in row.members}) == 1  # never two people in a row
    assert len(rows) == len(set(truth))  # and each person in exactly one row
