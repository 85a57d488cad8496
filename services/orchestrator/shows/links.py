"""Unknown people across episodes: unnamed identities of a show's episodes grouped by their embeddings.

Each episode's clustering already decided who is who inside it; here an unnamed identity of one
episode is linked to unnamed identities of other episodes, with the facebank's tiers (labelling.py):
average similarity at the auto tier links them into one row, the suggest tier only offers the link
to a reviewer. A reviewer's decisions (services/orchestrator/review/view.py `links`) come first:
identities sharing a link id are one row whatever their vectors say, and an identity unlinked by a
reviewer ("" link) stays alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.orchestrator.analysis.identities import average_linkage, unit_rows
from services.orchestrator.analysis.labelling import MatchSettings

# Rows, count: how many other rows a row lists as possibly the same person (like facebank suggestions).
SUGGESTION_COUNT = 3


@dataclass(frozen=True)
class Unknown:
    """One unnamed identity of one episode."""

    episode: int  # index of its episode in the season's order
    vector: np.ndarray | None  # (d,) unit; None: nothing embedded (never linked automatically)
    link: str | None  # the reviewer's decision: None undecided, "" nobody else, else a link id


@dataclass(frozen=True)
class Row:
    members: tuple[int, ...]  # indices into the unknowns, by episode
    link_id: str  # the reviewers' link id, "" for an automatic or single row
    similarity: dict[int, float]  # member -> average similarity to the row's other members (auto links)


def link_unknowns(unknowns: Sequence[Unknown], settings: MatchSettings | None = None) -> list[Row]:
    """Rows of unknown people: reviewers' links, then average linkage at the auto tier.

    One row never holds two identities of the same episode (inside an episode that is a merge, a
    reviewer's call), and two rows a reviewer made are never joined automatically (they are offered
    as a suggestion instead). Rows are in the order of their first member.
    """
    settings = settings or MatchSettings()
    seeds: list[list[int]] = []
    by_link: dict[str, int] = {}
    for index, unknown in enumerate(unknowns):
        if unknown.link:
            if unknown.link not in by_link:
                by_link[unknown.link] = len(seeds)
                seeds.append([])
            seeds[by_link[unknown.link]].append(index)
        else:
            seeds.append([index])
    linkable = [
        s
        for s, members in enumerate(seeds)
        if all(unknowns[m].vector is not None for m in members) and unknowns[members[0]].link != ""
    ]
    vectors = _seed_vectors(unknowns, seeds, linkable)
    count = len(linkable)
    # Seed x episode incidence: two seeds sharing an episode may never be one row.
    incidence = np.zeros((count, max((u.episode for u in unknowns), default=0) + 1), np.float32)
    for position, seed in enumerate(linkable):
        incidence[position, [unknowns[m].episode for m in seeds[seed]]] = 1.0
    confirmed = np.array([bool(unknowns[seeds[s][0]].link) for s in linkable], bool)
    blocked = (incidence @ incidence.T > 0) | (confirmed[:, None] & confirmed[None, :])
    labels = average_linkage(vectors, blocked, 1.0 - settings.auto_assign_similarity) if count else np.zeros(0, int)

    merged: dict[int, list[int]] = {}
    for position, seed in enumerate(linkable):
        merged.setdefault(int(labels[position]), []).append(seed)
    alone = set(range(len(seeds))) - set(linkable)
    groups = list(merged.values()) + [[s] for s in sorted(alone)]
    rows = []
    for group in groups:
        members = tuple(sorted((m for s in group for m in seeds[s]), key=lambda m: (unknowns[m].episode, m)))
        link_id = next((unknowns[m].link for m in members if unknowns[m].link), "")
        rows.append(Row(members, link_id or "", _member_similarity(unknowns, members) if len(group) > 1 else {}))
    rows.sort(key=lambda row: row.members[0])
    return rows


def centroid(vectors: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The unit mean of a row's identity vectors; None when any is missing (nothing to compare)."""
    if not vectors or any(v is None for v in vectors):
        return None
    mean = unit_rows(np.asarray(vectors), "identity vectors").mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def _seed_vectors(unknowns: Sequence[Unknown], seeds: list[list[int]], linkable: list[int]) -> np.ndarray:
    if not linkable:
        return np.zeros((0, 1))
    stacked = [np.mean([_vector(unknowns[m]) for m in seeds[s]], axis=0) for s in linkable]
    return unit_rows(np.asarray(stacked), "identity vectors")


def _member_similarity(unknowns: Sequence[Unknown], members: tuple[int, ...]) -> dict[int, float]:
    vectors = unit_rows(np.asarray([_vector(unknowns[m]) for m in members]), "identity vectors")
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, np.nan)
    return {m: float(np.nanmean(similarity[i])) for i, m in enumerate(members)}


def suggestions(
    centroids: Sequence[np.ndarray | None], episodes: Sequence[set[int]], settings: MatchSettings | None = None
) -> list[list[tuple[int, float]]]:
    """Per row, the other rows that may be the same person: similarity of their centroids at the suggest
    tier or above, and no episode in common (two rows in one episode are two people on screen, or a
    split a reviewer merges in the episode). Rows without a centroid get and give none."""
    settings = settings or MatchSettings()
    usable = [index for index, centroid in enumerate(centroids) if centroid is not None]
    result: list[list[tuple[int, float]]] = [[] for _ in centroids]
    if len(usable) < 2:
        return result
    matrix = unit_rows(np.asarray([centroids[i] for i in usable]), "row centroids")
    similarity = matrix @ matrix.T
    for a, row_a in enumerate(usable):
        found = [
            (row_b, float(similarity[a, b]))
            for b, row_b in enumerate(usable)
            if b != a and similarity[a, b] >= settings.suggest_similarity and not episodes[row_a] & episodes[row_b]
        ]
        result[row_a] = sorted(found, key=lambda pair: (-pair[1], pair[0]))[:SUGGESTION_COUNT]
    return result


def _vector(unknown: Unknown) -> np.ndarray:
    if unknown.vector is None:
        raise ValueError("an identity without a vector cannot be linked by similarity")
    return unknown.vector
