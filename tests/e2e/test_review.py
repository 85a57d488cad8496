"""Review operations on a real run of the sample episode, kept in effect across a re-run."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.stack import LocalStack
from tests.contract.helpers import expect_status

pytestmark = pytest.mark.e2e
EP = "review-1"
Op = orchestrator_pb2.ReviewOp


def _run(stubs: dict) -> orchestrator_pb2.Progress:
    request = orchestrator_pb2.SubmitJobRequest(
        ep_id=EP, options=orchestrator_pb2.RunOptions(stride=2, skip_crops=True)
    )
    final = list(stubs["orchestrator"].RunEpisode(request))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    return final


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _identity_of(stack: LocalStack, state: orchestrator_pb2.ReviewState, sample: Path, person: str) -> str:
    """The identity whose tracks cover most of a ground-truth person's faces."""
    truth = json.loads((sample / "ground_truth.json").read_text())
    boxes = {f["frame"]: f["box"] for f in truth["faces"] if f["person_id"] == person}
    votes: dict[int, int] = {}
    for line in (stack.data_root / "episodes" / EP / "tracks.jsonl").read_text().splitlines():
        track = json.loads(line)
        pairs = zip(track["frames"], track["boxes"], strict=True)
        hits = sum(_iou(box, boxes[f]) >= 0.5 for f, box in pairs if f in boxes)
        votes[track["track_id"]] = hits
    by_identity: dict[str, int] = {}
    for identity in state.identities:
        by_identity[identity.identity_id] = sum(votes.get(t, 0) for t in identity.track_ids)
    return max(by_identity, key=lambda k: by_identity[k])


def _review(stubs: dict, op: orchestrator_pb2.ReviewOp) -> orchestrator_pb2.ReviewState:
    return stubs["orchestrator"].Review(orchestrator_pb2.ReviewRequest(ep_id=EP, op=op))


def test_merge_rename_and_move_survive_a_rerun_and_undo_works(
    stubs: dict, stack: LocalStack, sample_episode: Path
) -> None:
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id=EP, source_path=str(sample_episode / "episode.mp4"))
    )
    first_run = _run(stubs).summary.run_id
    state = stubs["orchestrator"].GetReview(orchestrator_pb2.GetReviewRequest(ep_id=EP))
    biden = _identity_of(stack, state, sample_episode, "biden")
    woman = _identity_of(stack, state, sample_episode, "pexels_woman")
    man = _identity_of(stack, state, sample_episode, "single_face_man")
    biden_tracks = list(next(i for i in state.identities if i.identity_id == biden).track_ids)
    assert len(biden_tracks) >= 2
    moved = biden_tracks[-1]

    _review(stubs, Op(rename=Op.Rename(identity_id=biden, name="Joe Biden")))
    _review(stubs, Op(merge=Op.Merge(source_identity_id=man, target_identity_id=woman)))
    state = _review(stubs, Op(move_track=Op.MoveTrack(track_id=moved)))
    labels = {i.identity_id: i for i in state.identities}
    assert labels[biden].label == "Joe Biden" and moved not in labels[biden].track_ids
    assert man not in labels

    # Bad requests change nothing.
    before = len(state.log)
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: _review(stubs, Op(merge=Op.Merge(source_identity_id=woman, target_identity_id=woman))),
        "into itself",
    )
    expect_status(
        grpc.StatusCode.NOT_FOUND, lambda: _review(stubs, Op(rename=Op.Rename(identity_id="id_9999", name="x")))
    )
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _review(stubs, Op(move_track=Op.MoveTrack(track_id=99999))))
    obama = _identity_of(stack, state, sample_episode, "obama")
    if obama != biden:
        expect_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: _review(stubs, Op(merge=Op.Merge(source_identity_id=obama, target_identity_id=biden))),
            "appear together",
        )
    assert len(stubs["orchestrator"].GetReview(orchestrator_pb2.GetReviewRequest(ep_id=EP)).log) == before

    second_run = _run(stubs).summary.run_id
    assert second_run != first_run
    after = stubs["orchestrator"].GetReview(orchestrator_pb2.GetReviewRequest(ep_id=EP))
    assert after.run_id == second_run
    assert all(not entry.not_applied for entry in after.log), [e.not_applied for e in after.log]
    named = [i for i in after.identities if i.label == "Joe Biden"]
    assert len(named) == 1 and named[0].label_source == "review"
    woman_now = _identity_of(stack, after, sample_episode, "pexels_woman")
    assert _identity_of(stack, after, sample_episode, "single_face_man") == woman_now  # the merge holds
    moved_now = [i for i in after.identities if i.identity_id.startswith("id_r")]
    assert len(moved_now) == 1 and len(moved_now[0].track_ids) == 1  # the moved track is on its own
    reviewed = json.loads((stack.data_root / "episodes" / EP / "review.json").read_text())
    assert reviewed["run_id"] == second_run
    # Every record names the verified caller (the stubs call as this machine's user), never a typed name.
    assert after.log and all(entry.op.reviewer.endswith("@local") for entry in after.log), after.log
    folder = stack.data_root / "episodes" / EP
    people = json.loads((folder / "screentime.reviewed.json").read_text())["people"]
    assert [p["label"] for p in people] == ["Joe Biden"] and people[0]["seconds"] == pytest.approx(named[0].seconds)
    from services.reports.timeline import load_rows

    rows, _ = load_rows(folder)  # the timeline export follows the review
    assert {r.label for r in rows if r.kind == "person"} == {"Joe Biden"}

    undone = stubs["orchestrator"].UndoReview(orchestrator_pb2.UndoReviewRequest(ep_id=EP))
    assert not any(i.identity_id.startswith("id_r") for i in undone.identities)
    assert undone.log[-1].undo_of == undone.log[-2].seq and undone.log[-2].undone
