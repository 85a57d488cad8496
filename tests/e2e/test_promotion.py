"""A facebank that learns from review, on a real stack and the sample episode (stride 5): a reviewer
names an identity nobody enrolled, adds its faces to the facebank, and the next run names it by itself;
removing the person purges the promoted exemplars."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2
from google.protobuf import json_format

from services.cli.stack import LocalStack
from services.common.auth import ClientCredentials
from services.common.local_issuer import LocalIssuer
from services.orchestrator.facebank.face_choice import MAX_REVIEW_EXEMPLARS, PER_CALL
from tests.contract.helpers import expect_status

pytestmark = pytest.mark.e2e
EP = "promote-1"
SHOW = "promotion"
NAME, PERSON_ID = "Joe Biden", "joe-biden"
Op = orchestrator_pb2.ReviewOp
REPO_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


@pytest.fixture(scope="module")
def sample(request: pytest.FixtureRequest) -> Path:
    """The sample episode `make sample` built (data/sample), else the session's own build of it."""
    if (REPO_SAMPLE / "episode.mp4").is_file() and (REPO_SAMPLE / "ground_truth.json").is_file():
        return REPO_SAMPLE
    return Path(request.getfixturevalue("sample_episode"))


def _run(stubs: dict, skip_crops: bool) -> str:
    options = orchestrator_pb2.RunOptions(stride=5, show_id=SHOW, skip_crops=skip_crops)
    final = list(stubs["orchestrator"].RunEpisode(orchestrator_pb2.SubmitJobRequest(ep_id=EP, options=options)))[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    return str(final.summary.run_id)


def _artifact(stubs: dict, name: str) -> bytes:
    ref = storage_pb2.ArtifactRef(ep_id=EP, name=name)  # the current run
    return b"".join(m.chunk for m in stubs["storage"].GetArtifact(storage_pb2.GetArtifactRequest(ref=ref)))


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _identity_of(stubs: dict, identities: dict[str, list[int]], sample: Path, person: str) -> str:
    """The identity whose tracks cover most of a ground-truth person's faces (current run)."""
    truth = json.loads((sample / "ground_truth.json").read_text())
    boxes = {f["frame"]: f["box"] for f in truth["faces"] if f["person_id"] == person}
    votes: dict[int, int] = {}
    for line in _artifact(stubs, "tracks.jsonl").decode().splitlines():
        track = json.loads(line)
        pairs = zip(track["frames"], track["boxes"], strict=True)
        votes[track["track_id"]] = sum(_iou(box, boxes[f]) >= 0.5 for f, box in pairs if f in boxes)
    return max(identities, key=lambda i: sum(votes.get(t, 0) for t in identities[i]))


def _reviewed(stubs: dict) -> dict[str, list[int]]:
    state = stubs["orchestrator"].GetReview(orchestrator_pb2.GetReviewRequest(ep_id=EP))
    return {i.identity_id: list(i.track_ids) for i in state.identities}


def _promote(stubs: dict, identity: str, name: str = "") -> orchestrator_pb2.AddToFacebankResponse:
    request = orchestrator_pb2.AddToFacebankRequest(ep_id=EP, identity_id=identity, name=name)
    return stubs["orchestrator"].AddToFacebank(request)


def _person(stubs: dict, person_id: str = PERSON_ID) -> storage_pb2.Person:
    return stubs["storage"].GetPerson(storage_pb2.GetPersonRequest(show_id=SHOW, person_id=person_id))


def _audit_lines(stack: LocalStack) -> list[dict[str, Any]]:
    lines = []
    for line in (stack.logs / "orchestrator.log").read_text(errors="replace").splitlines():
        if '"add_to_facebank"' in line:
            entry = json.loads(line)
            if entry.get("msg") == "audit":
                lines.append(entry)
    return lines


@pytest.fixture(scope="module")
def first(stubs: dict, sample: Path) -> dict[str, Any]:
    """The first run (with review crops), Biden's identity named by a reviewer and added to the facebank."""
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id=EP, source_path=str(sample / "episode.mp4"), show_id=SHOW)
    )
    run_id = _run(stubs, skip_crops=False)
    identities = _reviewed(stubs)
    raw = json.loads(_artifact(stubs, "identities.json"))["identities"]
    assert all(i["tier"] == "unknown" for i in raw)  # nobody is enrolled in this show
    biden = _identity_of(stubs, identities, sample, "biden")
    stubs["orchestrator"].Review(
        orchestrator_pb2.ReviewRequest(ep_id=EP, op=Op(rename=Op.Rename(identity_id=biden, name=NAME)))
    )
    response = _promote(stubs, biden)  # no name: the reviewed one
    return {"run_id": run_id, "biden": biden, "tracks": identities[biden], "response": response}


def test_a_named_identity_s_best_faces_become_review_exemplars(first: dict[str, Any], stack: LocalStack) -> None:
    response: orchestrator_pb2.AddToFacebankResponse = first["response"]
    assert 1 <= response.exemplars_added <= PER_CALL, response.rejected
    person = response.person
    assert (person.name, person.person_id, person.show_id) == (NAME, PERSON_ID, SHOW)
    assert len(person.exemplars) == response.exemplars_added
    assert person.enrolled_by.endswith("@local")  # the verified caller, through the orchestrator
    seen = set()
    for exemplar in person.exemplars:
        assert exemplar.origin == "review" and exemplar.added_by.endswith("@local"), exemplar.added_by
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", exemplar.added_at), exemplar.added_at
        assert (exemplar.source_ep_id, exemplar.source_run_id) == (EP, first["run_id"])
        assert exemplar.source_track_id in first["tracks"]
        seen.add((exemplar.source_track_id, exemplar.source_frame))
        assert exemplar.model_id.startswith("arcface_mbf@") and len(exemplar.embedding) == 512
        crop = cv2.imdecode(np.frombuffer(exemplar.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and crop.shape == (112, 112, 3)  # the aligned face, as enrolment keeps it
        assert 0 < exemplar.quality <= 1
    assert len(seen) == len(person.exemplars)
    for rejected in response.rejected:
        assert rejected.name.startswith("track ") and rejected.reason
    stored = storage_pb2.Person()  # what storage keeps on disk: every field as given
    json_format.Parse((stack.data_root / "facebank" / SHOW / f"{PERSON_ID}.json").read_bytes(), stored)
    assert [e.origin for e in stored.exemplars] == ["review"] * len(person.exemplars)
    assert [e.source_frame for e in stored.exemplars] == [e.source_frame for e in person.exemplars]
    [audit] = [a for a in _audit_lines(stack) if a["identity_id"] == first["biden"] and a["outcome"] == "ok"][:1]
    assert audit["principal"].endswith("@local") and audit["ep_id"] == EP and audit["person_id"] == PERSON_ID
    assert audit["show_id"] == SHOW and audit["run_id"] == first["run_id"]
    assert audit["exemplars_added"] == response.exemplars_added and audit["rejected"] == len(response.rejected)
    assert audit["exemplar_ids"] == [e.exemplar_id for e in person.exemplars]


def test_promoting_again_adds_no_face_twice(first: dict[str, Any], stubs: dict) -> None:
    before = _person(stubs)
    again = _promote(stubs, first["biden"], NAME)
    after = _person(stubs)
    assert len(after.exemplars) == len(before.exemplars) + again.exemplars_added
    sources = [(e.source_run_id, e.source_track_id, e.source_frame) for e in after.exemplars]
    assert len(set(sources)) == len(sources)
    reasons = [r.reason for r in again.rejected]
    assert any(r == "already in the facebank" or r.startswith("near-duplicate") for r in reasons), reasons


def test_bad_requests_and_callers_are_refused(first: dict[str, Any], stubs: dict, stack: LocalStack) -> None:
    before = len(_person(stubs).exemplars)
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _promote(stubs, "id_9999", NAME), "id_9999")
    unnamed = next(i for i in _reviewed(stubs) if i != first["biden"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _promote(stubs, unnamed), "name it first or pass a name")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _promote(stubs, unnamed, "x" * 129), "1-128 characters")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _promote(stubs, unnamed, "!!!"), "letter or digit")
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: stubs["orchestrator"].AddToFacebank(
            orchestrator_pb2.AddToFacebankRequest(ep_id="no-such-episode", identity_id="id_0001", name=NAME)
        ),
    )
    token = LocalIssuer.at(stack.data_root).mint("viewer", "vera", 600)
    with stack.channel("orchestrator", ClientCredentials(bearer=token)) as channel:
        viewer = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        request = orchestrator_pb2.AddToFacebankRequest(ep_id=EP, identity_id=first["biden"], name=NAME)
        expect_status(grpc.StatusCode.PERMISSION_DENIED, lambda: viewer.AddToFacebank(request))
    assert len(_person(stubs).exemplars) == before  # nothing was added by a refused call


def test_the_cap_keeps_review_exemplars_of_a_person_bounded(first: dict[str, Any], stubs: dict) -> None:
    model = first["response"].person.exemplars[0].model_id
    rng = np.random.default_rng(0)
    full = [
        storage_pb2.Exemplar(
            model_id=model, embedding=(v / np.linalg.norm(v)).tolist(), origin="review", source_name=f"filler-{k}"
        )
        for k, v in enumerate(rng.normal(size=(MAX_REVIEW_EXEMPLARS, 512)))
    ]
    stubs["storage"].AddPerson(storage_pb2.AddPersonRequest(show_id=SHOW, name="Cap test", exemplars=full))
    try:
        capped = _promote(stubs, first["biden"], "Cap test")
        assert capped.exemplars_added == 0
        reasons = [r.reason for r in capped.rejected]
        assert any(r.startswith("cap reached") for r in reasons), reasons  # the faces chosen, with no room
        assert all(r.startswith(("cap reached", "near-duplicate")) for r in reasons), reasons
        assert len(_person(stubs, "cap-test").exemplars) == MAX_REVIEW_EXEMPLARS
    finally:
        stubs["storage"].RemovePerson(storage_pb2.RemovePersonRequest(show_id=SHOW, person_id="cap-test"))


def test_the_next_run_names_the_person_and_removal_purges_the_exemplars(
    first: dict[str, Any], stubs: dict, stack: LocalStack, sample: Path
) -> None:
    second = _run(stubs, skip_crops=True)  # no review crops this time: promotion reads frames of the video
    assert second != first["run_id"]
    identities = _reviewed(stubs)
    biden = _identity_of(stubs, identities, sample, "biden")
    raw = {i["identity_id"]: i for i in json.loads(_artifact(stubs, "identities.json"))["identities"]}
    assert raw[biden]["tier"] == "auto" and raw[biden]["label"] == NAME, raw[biden]  # the run itself, not review
    assert raw[biden]["person_id"] == PERSON_ID
    obama = _identity_of(stubs, identities, sample, "obama")
    assert obama == biden or raw[obama]["label"] != NAME  # nobody else takes the name

    # Another person, from this run without crops: the faces come from the video's frames.
    from_frames = _promote(stubs, obama, "Barack Obama")
    assert from_frames.exemplars_added >= 1, from_frames.rejected
    assert {e.source_run_id for e in from_frames.person.exemplars} == {second}
    # Seen only in profile: every face looked at fails the gate, and nobody is added.
    profile = _promote(stubs, _identity_of(stubs, identities, sample, "t1_standing_man"), "Standing man")
    assert profile.exemplars_added == 0 and not profile.person.person_id
    assert any(r.reason.startswith("extreme pose") for r in profile.rejected), profile.rejected

    exemplars = {e.exemplar_id for e in _person(stubs).exemplars}
    removed = stubs["storage"].RemovePerson(storage_pb2.RemovePersonRequest(show_id=SHOW, person_id=PERSON_ID))
    assert removed.exemplars_removed == len(exemplars)
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _person(stubs))
    people = stubs["storage"].ListPeople(storage_pb2.ListPeopleRequest(show_id=SHOW)).people
    assert [p.person_id for p in people] == ["barack-obama"]
    # Promoted exemplars live only in the person's record: nothing of them is left in the store.
    facebank = stack.data_root / "facebank" / SHOW
    assert not (facebank / f"{PERSON_ID}.json").exists()
    leftovers = [p for p in facebank.rglob("*") if p.is_file() and any(x in p.read_text() for x in exemplars)]
    assert leftovers == []
