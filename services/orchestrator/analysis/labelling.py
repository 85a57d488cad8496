"""Naming identities: match each identity's embedding against the facebank of known people.

Three tiers keep people in the loop where the model is unsure: 'auto' names an identity without
review, 'suggest' offers candidates to a person, 'unknown' offers nothing. Two identities seen in
the same frame are two different people, so they are never both auto-named after one person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.sparse import csgraph

from services.orchestrator.analysis.identities import unit_rows

Tier = Literal["auto", "suggest", "unknown"]
Suggestion = tuple[str, str, float]  # (person_id, name, cosine similarity)

# Identities, count. Conflicting auto candidates for one person are resolved exactly (best total
# similarity) by enumerating subsets of a conflict component up to this size (2**12 subsets);
# larger components, which real episodes do not produce, fall back to greedy best-first.
_EXACT_COMPONENT_LIMIT = 12
# Persons, count: how many candidates an IdentityMatch lists.
_SUGGESTION_COUNT = 3


@dataclass(frozen=True)
class MatchSettings:
    """Cosine-similarity tiers for naming identities (identity vectors are track-averaged)."""

    # Cosine similarity, unitless. Named without review at or above this. Different people stay
    # below ~0.4 even on single clean faces, and identity vectors are averages over many faces,
    # which pushes same-person matches up (typically 0.5-0.9); 0.55 keeps a 0.15 band above the
    # different-person ceiling so automatic names are almost never wrong.
    auto_assign_similarity: float = 0.55
    # Cosine similarity, unitless. Offered to a person at or above this. Slightly below the 0.4
    # different-person ceiling so hard same-person cases (profile, blur, dim stage light) still
    # surface; a wrong suggestion costs one click, a missed one costs a manual search.
    suggest_similarity: float = 0.35
    # Cosine similarity, unitless. Auto-naming also needs the best person to beat the second-best
    # person by this much: look-alikes and relatives enrolled together are a suggestion, not a fact.
    margin: float = 0.1
    # Exemplars, count. A person's similarity is the mean of their k most similar exemplars; 1 is
    # the maximum. The maximum is the default because exemplars are curated and deliberately
    # varied (frontal, profile, glasses): an identity seen mostly in profile should match the
    # profile exemplar and not be dragged down by the frontal ones. Raise k if the facebank
    # collects exemplars automatically and may contain a mislabelled one.
    exemplar_top_k: int = 1

    def __post_init__(self) -> None:
        if not -1.0 <= self.suggest_similarity <= self.auto_assign_similarity <= 1.0:
            raise ValueError(
                "expected -1 <= suggest_similarity <= auto_assign_similarity <= 1; got "
                f"{self.suggest_similarity} and {self.auto_assign_similarity}"
            )
        if not self.margin >= 0.0:
            raise ValueError(f"margin must be a non-negative similarity difference; got {self.margin}")
        if self.exemplar_top_k < 1:
            raise ValueError(f"exemplar_top_k must be at least 1; got {self.exemplar_top_k}")


@dataclass(frozen=True, eq=False)
class Facebank:
    """Known people as arrays: exemplar vectors (E, d), the person id of each exemplar (E,),
    and the display name of each person id."""

    vectors: np.ndarray
    person_ids: Sequence[str]
    names: Mapping[str, str]

    def __post_init__(self) -> None:
        count = len(self.person_ids)
        shape = np.shape(self.vectors)
        if len(shape) != 2 or shape[0] != count:
            raise ValueError(f"facebank vectors must be ({count}, d), one row per person id; got shape {shape}")
        missing = sorted({str(pid) for pid in self.person_ids} - {str(pid) for pid in self.names})
        if missing:
            raise ValueError(f"every facebank person id needs a name; missing names for {missing}")


@dataclass(frozen=True)
class IdentityMatch:
    """The naming decision for one identity.

    `label` and `person_id` are set only for tier 'auto'. `similarity` is the best person
    similarity (None when the facebank is empty). `suggestions` are up to three persons at or above
    the suggest threshold, most similar first; empty for 'unknown'.
    """

    label: str | None
    person_id: str | None
    similarity: float | None
    tier: Tier
    suggestions: tuple[Suggestion, ...] = field(default_factory=tuple)


def person_similarities(
    identity_vectors: np.ndarray, facebank: Facebank, settings: MatchSettings
) -> tuple[list[str], np.ndarray]:
    """Person ids (sorted) and the (I, P) similarity of each identity to each person."""
    identities = unit_rows(identity_vectors, "identity_vectors")
    person_ids = sorted({str(pid) for pid in facebank.person_ids})
    if not person_ids:
        return [], np.zeros((identities.shape[0], 0))
    exemplars = unit_rows(facebank.vectors, "facebank vectors")
    if exemplars.shape[1] != identities.shape[1]:
        raise ValueError(
            f"identity vectors have {identities.shape[1]} dimensions but facebank vectors have "
            f"{exemplars.shape[1]}; both must come from the same embedding model"
        )
    exemplar_similarity = identities @ exemplars.T
    owners = np.array([str(pid) for pid in facebank.person_ids])
    result = np.empty((identities.shape[0], len(person_ids)))
    for column, pid in enumerate(person_ids):
        own = exemplar_similarity[:, owners == pid]
        k = min(settings.exemplar_top_k, own.shape[1])
        result[:, column] = -np.sort(-own, axis=1)[:, :k].mean(axis=1)
    return person_ids, result


def match_identities(
    identity_vectors: np.ndarray,
    facebank: Facebank,
    cooccurring: np.ndarray,
    settings: MatchSettings | None = None,
) -> list[IdentityMatch]:
    """One IdentityMatch per identity row, in input order.

    An identity is auto-eligible for its best person when the similarity reaches
    `auto_assign_similarity` and beats the second-best person by `margin`. Several identities may
    be auto-named after the same person (one person split into clusters) unless two of them
    co-occur in a frame; among eligible identities of one person the co-occurrence-free subset
    with the highest total similarity keeps 'auto', the others fall back to 'suggest'.
    """
    settings = settings or MatchSettings()
    person_ids, similarity = person_similarities(identity_vectors, facebank, settings)
    count = similarity.shape[0]
    conflicts = np.asarray(cooccurring)
    if conflicts.shape != (count, count) or conflicts.dtype != np.bool_:
        raise ValueError(
            f"cooccurring must be a ({count}, {count}) bool array; got {conflicts.dtype} {conflicts.shape}"
        )
    conflicts = conflicts | conflicts.T
    np.fill_diagonal(conflicts, False)
    if not person_ids:
        return [IdentityMatch(None, None, None, "unknown") for _ in range(count)]

    names = {str(pid): name for pid, name in facebank.names.items()}
    order = np.argsort(-similarity, axis=1, kind="stable")
    best_person = order[:, 0]
    best = similarity[np.arange(count), best_person]
    second = similarity[np.arange(count), order[:, 1]] if len(person_ids) > 1 else np.full(count, -np.inf)
    eligible = (best >= settings.auto_assign_similarity) & (best - second >= settings.margin)

    auto = np.zeros(count, dtype=bool)
    for person in np.unique(best_person[eligible]):
        candidates = np.flatnonzero(eligible & (best_person == person))
        kept = _best_compatible_subset(best[candidates], conflicts[np.ix_(candidates, candidates)])
        auto[candidates[kept]] = True

    matches = []
    for row in range(count):
        suggestions = tuple(
            (person_ids[p], names[person_ids[p]], float(similarity[row, p]))
            for p in order[row, :_SUGGESTION_COUNT]
            if similarity[row, p] >= settings.suggest_similarity
        )
        if auto[row]:
            pid = person_ids[best_person[row]]
            matches.append(IdentityMatch(names[pid], pid, float(best[row]), "auto", suggestions))
        elif best[row] >= settings.suggest_similarity:
            matches.append(IdentityMatch(None, None, float(best[row]), "suggest", suggestions))
        else:
            matches.append(IdentityMatch(None, None, float(best[row]), "unknown"))
    return matches


def _best_compatible_subset(scores: np.ndarray, conflicts: np.ndarray) -> np.ndarray:
    """Bool mask of a conflict-free subset with the highest total score (max-weight independent set).

    Solved exactly per connected component of the conflict graph (components are tiny: identities
    of one person seen in the same frames), greedily best-first beyond _EXACT_COMPONENT_LIMIT.
    """
    keep = np.zeros(scores.size, dtype=bool)
    _, component = csgraph.connected_components(conflicts, directed=False)
    for label in np.unique(component):
        members = np.flatnonzero(component == label)
        local = conflicts[np.ix_(members, members)]
        if members.size <= _EXACT_COMPONENT_LIMIT:
            subsets = (np.arange(2**members.size)[:, None] >> np.arange(members.size)) & 1 == 1
            clash = np.einsum("si,ij,sj->s", subsets.astype(np.int64), local.astype(np.int64), subsets.astype(np.int64))
            totals = np.where(clash == 0, subsets @ scores[members], -np.inf)
            keep[members[subsets[int(totals.argmax())]]] = True
        else:
            taken = np.zeros(members.size, dtype=bool)
            for index in np.argsort(-scores[members], kind="stable"):
                if not np.any(local[index] & taken):
                    taken[index] = True
            keep[members[taken]] = True
    return keep
