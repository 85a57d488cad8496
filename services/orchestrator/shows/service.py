"""A show's screen time per person and episode, and the reviewers' cross-episode links (docs/shows.md).

Figures come from each episode's current run after review, exactly what the episode's own screen-time
page shows: named people by name (the union of their identities' intervals), unnamed identities linked
across episodes into "unknown person #N" rows (links.py). Reviewers' link decisions are review
operations in each episode's log, so they survive re-runs like a rename does.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.common.placement import DEFAULT_SHOW, MAX_SEASON, check_range
from services.orchestrator.analysis.screentime import merge_by_label, total_seconds
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.review.service import ReviewService, reviewed_intervals
from services.orchestrator.review.view import MAX_NAME_LENGTH
from services.orchestrator.shows.links import Unknown, centroid, link_unknowns, suggestions
from services.orchestrator.shows.vectors import RunVectors


@dataclass(frozen=True)
class IdentityFigures:
    identity_id: str
    label: str  # "" when unnamed
    seconds: float
    first_s: float  # first time on screen (for numbering unknown people by first appearance)
    vector: np.ndarray | None
    link: str | None  # the reviewers' link decision (view.links), None when undecided


@dataclass(frozen=True)
class EpisodeFigures:
    """One episode's reviewed figures; cached until its current run or its review log changes."""

    signature: tuple[str, int]  # (run id, last review seq)
    model_id: str
    duration_s: float
    reviewed: bool
    people: dict[str, float]  # name -> seconds (union of the name's identities)
    identities: list[IdentityFigures]


@dataclass(frozen=True)
class _Row:
    label: str
    members: list[tuple[int, IdentityFigures]]  # (episode index, identity)
    link_id: str
    similarity: dict[str, float]  # identity id -> similarity to the rest of the row (auto links)


class ShowService:
    def __init__(self, clients: ServiceClients, review: ReviewService) -> None:
        self._clients = clients
        self._review = review
        self._vectors = RunVectors(clients)
        self._figures: dict[str, EpisodeFigures] = {}
        self._lock = threading.Lock()

    # ---- reading ------------------------------------------------------------------------------

    def screen_time(self, show_id: str, season: int) -> orchestrator_pb2.ShowScreenTime:
        show, episodes, figures = self._season(show_id, season)
        return self._roll_up(show, season, episodes, figures)[0]

    def _season(self, show_id: str, season: int) -> tuple[str, list[storage_pb2.Episode], list[EpisodeFigures | None]]:
        show = validate_id("show", show_id or DEFAULT_SHOW)
        check_range("season", season, MAX_SEASON)
        with translate_rpc_errors("storage"):
            listed = self._clients.storage.ListEpisodes(storage_pb2.ListEpisodesRequest(show_id=show)).episodes
        episodes = [e for e in listed if (e.show_id or DEFAULT_SHOW) == show and (not season or e.season == season)]
        if not episodes:
            where = f" in season {season}" if season else ""
            raise NotFound(f"show {show!r} has no episodes{where}; set them with SetEpisodeShow")
        episodes.sort(key=lambda e: (e.season or MAX_SEASON + 1, e.episode_number or 1 << 30, e.ep_id))
        return show, episodes, [self._episode_figures(e) if e.current_run_id else None for e in episodes]

    def _episode_figures(self, episode: storage_pb2.Episode) -> EpisodeFigures:
        records = self._review.log(episode.ep_id)
        signature = (episode.current_run_id, records[-1].seq if records else 0)
        with self._lock:
            cached = self._figures.get(episode.ep_id)
        if cached is not None and cached.signature == signature:
            return cached
        run, view, records = self._review.reviewed(episode.ep_id, records)
        sums = self._vectors.get(episode.ep_id, run.run_id)
        intervals = reviewed_intervals(run, view)
        labels = {identity: view.labels.get(identity, ("", ""))[0] for identity in view.identities}
        identities = [
            IdentityFigures(
                identity_id=identity,
                label=labels[identity],
                seconds=total_seconds(spans),
                first_s=spans[0][0] if spans else run.duration_s,
                vector=sums.identity_vector(view.identities[identity]),
                link=view.links.get(identity),
            )
            for identity, spans in intervals.items()
            if view.identities.get(identity)
        ]
        people = merge_by_label(intervals, {k: v or None for k, v in labels.items()})
        figures = EpisodeFigures(
            signature=(run.run_id, records[-1].seq if records else 0),
            model_id=sums.model_id or run.embedding_model,
            duration_s=run.duration_s,
            reviewed=any(r.op is not None for r in records),
            people={name: total_seconds(spans) for name, spans in people.items()},
            identities=identities,
        )
        with self._lock:
            self._figures[episode.ep_id] = figures
        return figures

    def _roll_up(
        self, show: str, season: int, episodes: list[storage_pb2.Episode], figures: list[EpisodeFigures | None]
    ) -> tuple[orchestrator_pb2.ShowScreenTime, list[_Row]]:
        counted = {i: f for i, f in enumerate(figures) if f is not None}
        models = Counter(f.model_id for f in counted.values() if f.model_id)
        model = models.most_common(1)[0][0] if models else ""
        rows = self._named_rows(counted) + self._unknown_rows(counted, model)
        total_duration = sum(f.duration_s for f in counted.values())

        def per_episode(row: _Row) -> list[float]:
            seconds = [0.0] * len(episodes)
            if row.label:
                for index, episode in counted.items():
                    seconds[index] = episode.people.get(row.label, 0.0)
            else:
                for index, identity in row.members:
                    seconds[index] += identity.seconds
            return seconds

        numbered = [r for r in rows if not r.label]
        numbered.sort(key=lambda r: min((i, m.first_s) for i, m in r.members))
        display = {id(r): r.label or f"unknown person #{n}" for n, r in enumerate(numbered, 1)}
        display.update({id(r): r.label for r in rows if r.label})
        row_ids = [self._row_id(episodes, r) for r in rows]
        usable = [
            centroid([m.vector for _, m in r.members])
            if all(counted[i].model_id == model for i, _ in r.members)
            else None
            for r in rows
        ]
        suggested = suggestions(usable, [{i for i, _ in r.members} for r in rows])
        messages = []
        for index, row in enumerate(rows):
            seconds = per_episode(row)
            total = float(sum(seconds))
            messages.append(
                orchestrator_pb2.ShowPersonRow(
                    row_id=row_ids[index],
                    label=row.label,
                    display_name=display[id(row)],
                    seconds=seconds,
                    total_s=total,
                    share=total / total_duration if total_duration > 0 else 0.0,
                    episodes_appeared=sum(1 for s in seconds if s > 0),
                    identities=[
                        orchestrator_pb2.LinkedIdentity(
                            identity=orchestrator_pb2.IdentityRef(ep_id=episodes[i].ep_id, identity_id=m.identity_id),
                            seconds=m.seconds,
                            link=self._link_state(row, m),
                            similarity=row.similarity.get(m.identity_id, 0.0),
                        )
                        for i, m in row.members
                    ],
                    suggestions=[
                        orchestrator_pb2.LinkSuggestion(
                            row_id=row_ids[other], display_name=display[id(rows[other])], similarity=similarity
                        )
                        for other, similarity in suggested[index]
                    ],
                )
            )
        order = sorted(range(len(rows)), key=lambda k: (not rows[k].label, -messages[k].total_s, display[id(rows[k])]))
        response = orchestrator_pb2.ShowScreenTime(
            show_id=show,
            season=season,
            episodes=[
                orchestrator_pb2.ShowEpisode(
                    ep_id=e.ep_id,
                    season=e.season,
                    episode_number=e.episode_number,
                    run_id=e.current_run_id if f is not None else "",
                    duration_s=f.duration_s if f is not None else e.video.duration_s,
                    reviewed=f.reviewed if f is not None else False,
                    embedding_model=f.model_id if f is not None else "",
                )
                for e, f in zip(episodes, figures, strict=True)
            ],
            people=[messages[k] for k in order],
            total_duration_s=total_duration,
            unlinked_episodes=[episodes[i].ep_id for i, f in counted.items() if f.model_id != model],
        )
        return response, [rows[k] for k in order]

    @staticmethod
    def _named_rows(counted: dict[int, EpisodeFigures]) -> list[_Row]:
        named: dict[str, list[tuple[int, IdentityFigures]]] = {}
        for index, episode in counted.items():
            for identity in episode.identities:
                if identity.label:
                    named.setdefault(identity.label, []).append((index, identity))
        return [_Row(label, members, "", {}) for label, members in sorted(named.items())]

    @staticmethod
    def _unknown_rows(counted: dict[int, EpisodeFigures], model: str) -> list[_Row]:
        found = [
            (index, identity)
            for index, episode in counted.items()
            for identity in episode.identities
            if not identity.label
        ]
        unknowns = [
            Unknown(index, identity.vector if counted[index].model_id == model else None, identity.link)
            for index, identity in found
        ]
        rows = []
        for row in link_unknowns(unknowns):
            members = [found[m] for m in row.members]
            similarity = {found[m][1].identity_id: s for m, s in row.similarity.items()}
            rows.append(_Row("", members, row.link_id, similarity))
        return rows

    @staticmethod
    def _row_id(episodes: list[storage_pb2.Episode], row: _Row) -> str:
        if row.label:
            return f"person:{row.label}"
        if row.link_id:
            return f"link:{row.link_id}"
        index, first = row.members[0]
        return f"unknown:{episodes[index].ep_id}/{first.identity_id}"

    @staticmethod
    def _link_state(row: _Row, member: IdentityFigures) -> str:
        if row.label:
            return "named"
        if member.link:
            return "confirmed"
        return "auto" if len(row.members) > 1 else "single"

    # ---- reviewers' decisions ------------------------------------------------------------------

    def link(self, request: orchestrator_pb2.LinkIdentitiesRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        refs = [(r.ep_id, r.identity_id) for r in request.identities]
        if len(set(refs)) < 2:
            raise InvalidArgument("link needs two or more identities (of different episodes)")
        episodes_named = [ep for ep, _ in refs]
        if len(set(episodes_named)) < len(refs):
            repeated = sorted({ep for ep in episodes_named if episodes_named.count(ep) > 1})
            raise InvalidArgument(
                f"identities of one episode ({', '.join(repeated)}) cannot be linked: "
                "merge them in that episode's review"
            )
        show, episodes, figures = self._season(request.show_id, request.season)
        _, rows = self._roll_up(show, request.season, episodes, figures)
        chosen = [self._row_of(rows, episodes, ep, identity) for ep, identity in refs]
        for row, (ep, identity) in zip(chosen, refs, strict=True):
            if row.label:
                raise FailedPrecondition(
                    f"identity {identity} of {ep} is named {row.label!r}: named identities are one row by name"
                )
        link_id = next((row.link_id for row in chosen if row.link_id), "") or f"lnk-{secrets.token_hex(6)}"
        # Every identity named, plus the other members of reviewer-made rows being joined (one link each).
        members: dict[tuple[str, str], IdentityFigures] = {}
        for row, (ep, identity) in zip(chosen, refs, strict=True):
            for index, member in row.members:
                if row.link_id or (episodes[index].ep_id, member.identity_id) == (ep, identity):
                    members[(episodes[index].ep_id, member.identity_id)] = member
        seen = [ep for ep, _ in members]
        if len(set(seen)) < len(seen):
            clash = sorted({ep for ep in seen if seen.count(ep) > 1})
            raise FailedPrecondition(
                f"linking these joins two identities of {', '.join(clash)}: merge them in that episode's review first"
            )
        for (ep, identity), member in members.items():
            if member.link != link_id:
                self._apply(ep, orchestrator_pb2.ReviewOp.Link(identity_id=identity, link_id=link_id), by)
        return self.screen_time(request.show_id, request.season)

    def unlink(self, request: orchestrator_pb2.UnlinkIdentityRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        show, episodes, figures = self._season(request.show_id, request.season)
        _, rows = self._roll_up(show, request.season, episodes, figures)
        ref = request.identity
        row = self._row_of(rows, episodes, ref.ep_id, ref.identity_id)
        if row.label:
            raise FailedPrecondition(
                f"identity {ref.identity_id} of {ref.ep_id} is named {row.label!r}: rename it in the episode's review"
            )
        self._apply(ref.ep_id, orchestrator_pb2.ReviewOp.Link(identity_id=ref.identity_id, link_id=""), by)
        return self.screen_time(request.show_id, request.season)

    def name(self, request: orchestrator_pb2.NameShowPersonRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        name = request.name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"a name must have 1-{MAX_NAME_LENGTH} characters, got {request.name!r}")
        show, episodes, figures = self._season(request.show_id, request.season)
        _, rows = self._roll_up(show, request.season, episodes, figures)
        ref = request.identity
        row = self._row_of(rows, episodes, ref.ep_id, ref.identity_id)
        for index, member in row.members:
            if member.label != name:
                self._apply(
                    episodes[index].ep_id,
                    orchestrator_pb2.ReviewOp.Rename(identity_id=member.identity_id, name=name),
                    by,
                )
        return self.screen_time(request.show_id, request.season)

    @staticmethod
    def _row_of(rows: list[_Row], episodes: list[storage_pb2.Episode], ep_id: str, identity_id: str) -> _Row:
        validate_id("episode", ep_id)
        if not any(e.ep_id == ep_id for e in episodes):
            raise NotFound(f"episode {ep_id!r} is not in this show and season (or has no run)")
        for row in rows:
            if any(episodes[i].ep_id == ep_id and m.identity_id == identity_id for i, m in row.members):
                return row
        raise NotFound(f"identity {identity_id!r} does not exist in the current run of {ep_id!r}")

    def _apply(
        self, ep_id: str, op: orchestrator_pb2.ReviewOp.Link | orchestrator_pb2.ReviewOp.Rename, by: str
    ) -> None:
        wrapped = orchestrator_pb2.ReviewOp(reviewer=by)
        if isinstance(op, orchestrator_pb2.ReviewOp.Link):
            wrapped.link.CopyFrom(op)
        else:
            wrapped.rename.CopyFrom(op)
        self._review.review(ep_id, wrapped)
