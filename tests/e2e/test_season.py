"""A season of three episodes through the real stack (issue #18): roll-ups, unknown people linked across
episodes, reviewers' link decisions, and a facebank that learns from review.

The season sample (services/evaluation/season_episodes.py) has the same people in different shots of
three episodes: the enrolled three, one person never enrolled who is in all of them (the unknown person),
and one more who is never enrolled, named by a reviewer in ep1 and promoted to the facebank, after which a
re-run of ep2 names them with no seed photo. Each episode runs at the default settings. The figures land
in test-artifacts/season/figures.json for the closing note.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.cli.stack import LocalStack
from services.common.config import Settings
from tests.contract.helpers import expect_status

pytestmark = pytest.mark.e2e
SHOW = "season-test"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "season"
PROMOTED_NAME = "Promoted Person"
Op = orchestrator_pb2.ReviewOp


@pytest.fixture(scope="module")
def season(media: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from services.evaluation.season_episodes import build_season

    out = tmp_path_factory.mktemp("season")
    summary = build_season(media, out, seed=0, model_path=settings.model_dir / "retinaface_mnet025.onnx")
    return out, summary


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LocalStack]]:
    """A stack of its own: the facebank of the show starts with the enrolled people only."""
    with LocalStack(tmp_path_factory.mktemp("season-stack")) as stack, stack.channel("orchestrator") as channel:
        yield orchestrator_pb2_grpc.OrchestratorServiceStub(channel), stack


def _enrol(orchestrator: Any, enrol: Path) -> None:
    for folder in sorted(enrol.iterdir()):
        images = [
            orchestrator_pb2.EnrollPersonRequest.SeedImage(name=p.name, data=p.read_bytes())
            for p in sorted(folder.iterdir())
        ]
        orchestrator.EnrollPerson(orchestrator_pb2.EnrollPersonRequest(show_id=SHOW, name=folder.name, images=images))


def _run(orchestrator: Any, ep_id: str) -> None:
    request = orchestrator_pb2.SubmitJobRequest(ep_id=ep_id, options=orchestrator_pb2.RunOptions(show_id=SHOW))
    final = list(orchestrator.RunEpisode(request))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _people_of(orchestrator: Any, stack: LocalStack, ep_id: str, truth: dict) -> dict[str, str]:
    """Reviewed identity -> the ground-truth person most of its faces belong to."""
    boxes: dict[tuple[int, str], list[float]] = {(f["frame"], f["person_id"]): f["box"] for f in truth["faces"]}
    by_frame: dict[int, list[str]] = {}
    for frame, person in boxes:
        by_frame.setdefault(frame, []).append(person)
    votes: dict[int, dict[str, int]] = {}
    for line in (stack.data_root / "episodes" / ep_id / "tracks.jsonl").read_text().splitlines():
        track = json.loads(line)
        counts = votes.setdefault(track["track_id"], {})
        for frame, box in zip(track["frames"], track["boxes"], strict=True):
            for person in by_frame.get(frame, []):
                if _iou(box, boxes[(frame, person)]) >= 0.5:
                    counts[person] = counts.get(person, 0) + 1
    state = orchestrator.GetReview(orchestrator_pb2.GetReviewRequest(ep_id=ep_id))
    people = {}
    for identity in state.identities:
        total: dict[str, int] = {}
        for track in identity.track_ids:
            for person, count in votes.get(track, {}).items():
                total[person] = total.get(person, 0) + count
        people[identity.identity_id] = max(total, key=lambda p: total[p]) if total else ""
    return people


def _rows_of(table: orchestrator_pb2.ShowScreenTime, people: dict[str, dict[str, str]], person: str) -> list:
    return [
        row
        for row in table.people
        if any(people[i.identity.ep_id].get(i.identity.identity_id) == person for i in row.identities)
    ]


def test_a_season_rolls_up_links_unknown_people_and_learns_from_review(
    season: tuple[Path, dict], orchestrator: tuple[Any, LocalStack]
) -> None:
    root, summary = season
    stub, stack = orchestrator
    episodes = [e["name"] for e in summary["episodes"]]
    truths = {ep: json.loads((root / ep / "ground_truth.json").read_text()) for ep in episodes}
    unknown, promoted = summary["unknown_person"], summary["promoted_person"]
    _enrol(stub, root / episodes[0] / "enrol")
    for number, ep in enumerate(episodes, start=1):
        stub.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(
                ep_id=ep, source_path=str(root / ep / "episode.mp4"), show_id=SHOW, season=1, episode_number=number
            )
        )
        _run(stub, ep)
    people = {ep: _people_of(stub, stack, ep, truths[ep]) for ep in episodes}
    table = stub.GetShowScreenTime(orchestrator_pb2.GetShowScreenTimeRequest(show_id=SHOW, season=1))
    assert [e.ep_id for e in table.episodes] == episodes
    assert [e.episode_number for e in table.episodes] == [1, 2, 3]

    # Roll-up totals are the sum of the episodes' own reviewed figures, cell by cell.
    per_episode = {ep: stub.GetScreenTime(orchestrator_pb2.GetScreenTimeRequest(ep_id=ep)) for ep in episodes}
    for row in table.people:
        assert row.total_s == pytest.approx(sum(row.seconds), abs=1e-6)
        for index, ep in enumerate(episodes):
            if row.label:
                expected = next((p.seconds for p in per_episode[ep].people if p.label == row.label), 0.0)
            else:
                mine = {i.identity.identity_id for i in row.identities if i.identity.ep_id == ep}
                expected = sum(r.seconds for r in per_episode[ep].identities if r.identity_id in mine)
            assert row.seconds[index] == pytest.approx(expected, abs=1e-6), (row.display_name, ep)
    assert table.total_duration_s == pytest.approx(sum(e.duration_s for e in table.episodes))

    # The unknown person is one row across the three episodes, and nobody else is in it.
    rows = _rows_of(table, people, unknown)
    assert len(rows) == 1, [
        (r.display_name, [(i.identity.ep_id, i.identity.identity_id) for i in r.identities]) for r in rows
    ]
    row = rows[0]
    assert row.episodes_appeared == 3 and not row.label and row.display_name.startswith("unknown person #")
    assert {people[i.identity.ep_id][i.identity.identity_id] for i in row.identities} == {unknown}
    truth_seconds = [summary["seconds"][ep].get(unknown, 0.0) for ep in episodes]
    figures: dict[str, Any] = {
        "unknown_person": {
            "measured_s": list(row.seconds),
            "true_s": truth_seconds,
            "links": [i.link for i in row.identities],
        }
    }
    for measured, true in zip(row.seconds, truth_seconds, strict=True):
        assert measured == pytest.approx(true, rel=0.1)

    # A reviewer splits one identity off the row (it stays apart), links it back, then names the row:
    # every episode gets the name.
    member = row.identities[1].identity
    table = stub.UnlinkIdentity(orchestrator_pb2.UnlinkIdentityRequest(show_id=SHOW, season=1, identity=member))
    assert len(_rows_of(table, people, unknown)) == 2
    assert stub.GetShowScreenTime(orchestrator_pb2.GetShowScreenTimeRequest(show_id=SHOW, season=1)) == table
    others = [i.identity for i in row.identities if i.identity != member]
    table = stub.LinkIdentities(
        orchestrator_pb2.LinkIdentitiesRequest(show_id=SHOW, season=1, identities=[member, others[0]])
    )
    (rejoined,) = _rows_of(table, people, unknown)
    assert rejoined.episodes_appeared == 3
    assert {i.link for i in rejoined.identities if i.identity in (member, others[0])} == {"confirmed"}
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.LinkIdentities(
            orchestrator_pb2.LinkIdentitiesRequest(show_id=SHOW, season=1, identities=[member, member])
        ),
        "two or more identities",
    )
    table = stub.NameShowPerson(
        orchestrator_pb2.NameShowPersonRequest(show_id=SHOW, season=1, identity=member, name="The Stranger")
    )
    named = next(r for r in table.people if r.label == "The Stranger")
    assert named.episodes_appeared == 3 and named.row_id == "person:The Stranger"
    for ep in episodes:
        labels = {i.label for i in stub.GetReview(orchestrator_pb2.GetReviewRequest(ep_id=ep)).identities}
        assert "The Stranger" in labels

    # The facebank learns from review: name the promoted person in ep1, add them, re-run ep2.
    first, second = [ep for ep in episodes if summary["seconds"][ep].get(promoted, 0.0) > 0][:2]
    identity = next(i for i, p in people[first].items() if p == promoted)
    stub.Review(
        orchestrator_pb2.ReviewRequest(ep_id=first, op=Op(rename=Op.Rename(identity_id=identity, name=PROMOTED_NAME)))
    )
    added = stub.AddToFacebank(orchestrator_pb2.AddToFacebankRequest(ep_id=first, identity_id=identity))
    assert added.exemplars_added >= 1 and added.person.name == PROMOTED_NAME
    assert all(e.origin == "review" and e.added_by for e in added.person.exemplars)
    before = {i.label for i in stub.GetReview(orchestrator_pb2.GetReviewRequest(ep_id=second)).identities}
    assert PROMOTED_NAME not in before
    _run(stub, second)
    people[second] = _people_of(stub, stack, second, truths[second])
    state = stub.GetReview(orchestrator_pb2.GetReviewRequest(ep_id=second))
    labelled = [i for i in state.identities if people[second].get(i.identity_id) == promoted]
    assert labelled and all(i.label == PROMOTED_NAME and i.label_source == "facebank" for i in labelled)
    table = stub.GetShowScreenTime(orchestrator_pb2.GetShowScreenTimeRequest(show_id=SHOW, season=1))
    promoted_row = next(r for r in table.people if r.label == PROMOTED_NAME)
    assert promoted_row.seconds[episodes.index(first)] > 0 and promoted_row.seconds[episodes.index(second)] > 0

    figures["promoted_person"] = {
        "exemplars_added": added.exemplars_added,
        "rejected": [r.reason for r in added.rejected],
        "measured_s": list(promoted_row.seconds),
        "true_s": [summary["seconds"][ep].get(promoted, 0.0) for ep in episodes],
    }
    figures["rows"] = [
        {
            "name": r.display_name,
            "seconds": [round(s, 2) for s in r.seconds],
            "total_s": round(r.total_s, 2),
            "share": round(r.share, 4),
            "episodes": r.episodes_appeared,
        }
        for r in table.people
    ]
    figures["true_seconds"] = summary["seconds"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=1))
