"""Learning from review: promote the best faces of a reviewed identity into the show's facebank.

A reviewer who named an identity has vouched for its faces. AddToFacebank picks a few of them (the
best quality, spread across the identity's tracks and seconds apart within one, skipping faces a
reviewer deleted and near-duplicates of each other or of the person's exemplars), turns each into an
exemplar through the same gate as enrolment (enrolment.py: detect, quality check, embed, aligned crop
as JPEG), caps the review-made exemplars of a person, and appends them with where they came from and
who promoted them (docs/facebank.md#learning-from-review). The next run of any episode of the show
then names that person automatically.

Which faces is face_choice.py (pure functions on arrays, tested in tests/unit/test_promotion.py);
add_to_facebank does the calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, embedder_pb2, orchestrator_pb2, storage_pb2

from services.common.boxes import iou_matrix
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import person_id_for
from services.common.placement import DEFAULT_SHOW
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.facebank.enrolment import (
    ORIGIN_REVIEW,
    GatedFace,
    check_face,
    detect_faces,
    embed_exemplars,
    utc_now,
)
from services.orchestrator.facebank.face_choice import (
    MAX_REVIEW_EXEMPLARS,
    Candidates,
    apply_cap,
    central_face,
    choose_faces,
    identity_candidates,
    near_duplicates,
)
from services.orchestrator.review.service import ReviewService
from services.orchestrator.review.view import MAX_NAME_LENGTH, ReviewView
from services.orchestrator.run.artifacts import read_artifact, read_faces
from services.orchestrator.run.harvest import MIN_MATCH_IOU  # a face found again in its frame, as harvest does

log = logging.getLogger(__name__)

# Crops a ListTrackCrops page holds (its maximum).
CROP_PAGE = 500
ACTION = "add_to_facebank"


def _matrix(exemplars: Sequence[storage_pb2.Exemplar]) -> np.ndarray:
    """The exemplars' vectors as rows ((0, 0) for none)."""
    if not exemplars:
        return np.zeros((0, 0), np.float32)
    return np.asarray([list(e.embedding) for e in exemplars], np.float32)


def _boxes(faces: Sequence[common_pb2.Face]) -> np.ndarray:
    return np.asarray([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in faces], np.float64).reshape(-1, 4)


# ---- the calls ------------------------------------------------------------------------------------


def _crop_keys(clients: ServiceClients, ep_id: str, run_id: str, track_id: int) -> dict[int, str]:
    """frame -> key of a track's saved review crops (none for a run made with skip_crops)."""
    keys: dict[int, str] = {}
    cursor = ""
    while True:
        request = storage_pb2.ListTrackCropsRequest(
            ep_id=ep_id, run_id=run_id, track_id=track_id, limit=CROP_PAGE, start_after=cursor
        )
        with translate_rpc_errors("storage"):
            page = clients.storage.ListTrackCrops(request)
        keys.update({item.frame_idx: item.key for item in page.items})
        cursor = page.next_start_after
        if not cursor:
            return keys


def _existing_person(clients: ServiceClients, show_id: str, person_id: str) -> storage_pb2.Person | None:
    try:
        with translate_rpc_errors("storage"):
            return clients.storage.GetPerson(  # type: ignore[no-any-return]
                storage_pb2.GetPersonRequest(show_id=show_id, person_id=person_id)
            )
    except NotFound:
        return None


@contextmanager
def _audited(by: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """One structured audit line when the block ends, shaped like the storage service's
    (services/storage/audit.py); the block adds its counts to the dict."""
    try:
        yield fields
    except BaseException as error:
        log.info("audit", extra={"principal": by, "action": ACTION, **fields, "outcome": "failed", "error": str(error)})
        raise
    log.info("audit", extra={"principal": by, "action": ACTION, **fields, "outcome": "ok"})


def _person_name(request: orchestrator_pb2.AddToFacebankRequest, label: str) -> str:
    """The request's name, else the identity's reviewed one, validated like a review Rename."""
    name = request.name.strip() or label.strip()
    if not name:
        raise InvalidArgument(f"identity {request.identity_id} has no name: name it first or pass a name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"a name must have 1-{MAX_NAME_LENGTH} characters, got {name!r}")
    return name


def add_to_facebank(
    clients: ServiceClients, review: ReviewService, request: orchestrator_pb2.AddToFacebankRequest, by: str
) -> orchestrator_pb2.AddToFacebankResponse:
    """Promote faces of identity `request.identity_id` of the episode's current run (after review) to
    the person `request.name` (default: the identity's name) of the episode's show; `by` is the
    verified caller, recorded on every exemplar and in the audit line."""
    if not request.identity_id:
        raise InvalidArgument("identity_id is empty: name the identity to promote (e.g. id_0003)")
    run, view, _ = review.reviewed(request.ep_id)
    if request.identity_id not in view.identities:
        known = ", ".join(sorted(view.identities)) or "none"
        raise NotFound(
            f"identity {request.identity_id!r} does not exist in the current run of {request.ep_id!r} (known: {known})"
        )
    name = _person_name(request, view.labels.get(request.identity_id, ("", ""))[0])
    person_id = person_id_for(name)  # the id storage gives the name (InvalidArgument without letters or digits)
    with translate_rpc_errors("storage"):
        episode = clients.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=request.ep_id))
    ids = {"ep_id": request.ep_id, "run_id": run.run_id, "identity_id": request.identity_id}
    with _audited(by, **ids, show_id=episode.show_id or DEFAULT_SHOW, person_id=person_id, person_name=name) as audit:
        response, added_ids = _Promotion(clients, episode, run.run_id, name, person_id, by).promote(
            request.identity_id, view
        )
        audit.update(exemplars_added=response.exemplars_added, rejected=len(response.rejected), exemplar_ids=added_ids)
    return response


class _Promotion:
    """One AddToFacebank call once the request is validated: the person's exemplars, the choice,
    the gate, the cap, the write."""

    def __init__(
        self, clients: ServiceClients, episode: storage_pb2.Episode, run_id: str, name: str, person_id: str, by: str
    ) -> None:
        self._clients = clients
        self._episode = episode
        self._ep_id = episode.ep_id
        self._show_id = episode.show_id or DEFAULT_SHOW
        self._run_id = run_id
        self._name = name
        self._person_id = person_id
        self._by = by
        self._crops: dict[int, dict[int, str]] = {}  # track -> frame -> review crop key

    def promote(self, identity_id: str, view: ReviewView) -> tuple[orchestrator_pb2.AddToFacebankResponse, list[str]]:
        """The response, and the ids of the exemplars added (for the audit line)."""
        clients = self._clients
        with translate_rpc_errors("embedder"):
            model_id = clients.embedder.GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest()).model.model_id
        person = _existing_person(clients, self._show_id, self._person_id)
        everything = list(person.exemplars) if person is not None else []
        own = [e for e in everything if e.model_id == model_id]
        existing = _matrix(own)
        review_count = sum(e.origin == ORIGIN_REVIEW for e in own)
        already = {
            (int(e.source_track_id), int(e.source_frame))
            for e in everything
            if e.source_ep_id == self._ep_id and e.source_run_id == self._run_id
        }
        rows, embeddings = read_faces(clients, self._ep_id, self._run_id)
        candidates = identity_candidates(
            rows, embeddings, view.identities[identity_id], view.deleted_faces, view.deleted
        )
        if not len(candidates):
            raise FailedPrecondition(f"identity {identity_id} has no face left to promote (deleted in review)")
        # Vectors of different models are never compared: the run's are checked against the
        # person's exemplars only when the run used the current model (always after embedding).
        run_model = str(rows[0].get("embedding_model", ""))
        comparable = existing if run_model == model_id else np.zeros((0, 0), np.float32)
        room = MAX_REVIEW_EXEMPLARS - review_count
        cap = f"cap reached: at most {MAX_REVIEW_EXEMPLARS} review exemplars per person and model"
        if room <= 0:  # no gate calls: the faces that would have been looked at, and why they are not added
            choice = choose_faces(candidates, comparable, already=already)
            rejected = [self._rejected(candidates, i, reason) for i, reason in choice.rejected]
            rejected += [
                self._rejected(candidates, i, f"{cap} ({self._name} has {review_count})") for i in choice.chosen
            ]
            return orchestrator_pb2.AddToFacebankResponse(person=person, rejected=rejected), []

        gated: dict[int, GatedFace] = {}

        def gate(i: int) -> str:
            face, reason = self._gate(int(candidates.track[i]), int(candidates.frame[i]), candidates.box[i])
            if face is not None:
                gated[i] = face
            return reason

        choice = choose_faces(candidates, comparable, gate, already)
        rejected = [self._rejected(candidates, i, reason) for i, reason in choice.rejected]
        passed = [(i, gated[i]) for i in choice.chosen]
        made = embed_exemplars(
            clients, [face for _, face in passed], [self._template(candidates, i) for i, _ in passed]
        )
        duplicates = near_duplicates(_matrix(made), [e.quality for e in made], existing)
        fresh = [k for k in range(len(made)) if k not in duplicates]
        kept, capped = apply_cap([made[k].quality for k in fresh], room)
        rejected += [self._rejected(candidates, passed[k][0], reason) for k, reason in sorted(duplicates.items())]
        rejected += [self._rejected(candidates, passed[fresh[c]][0], cap) for c in capped]
        added = [made[fresh[c]] for c in kept]
        if not added:
            return orchestrator_pb2.AddToFacebankResponse(person=person, rejected=rejected), []
        with translate_rpc_errors("storage"):
            stored = clients.storage.AddPerson(
                storage_pb2.AddPersonRequest(show_id=self._show_id, name=self._name, exemplars=added, append=True)
            )
        # Storage appends, giving each exemplar its id: the new ones are the last.
        added_ids = [e.exemplar_id for e in stored.exemplars[len(stored.exemplars) - len(added) :]]
        response = orchestrator_pb2.AddToFacebankResponse(person=stored, exemplars_added=len(added), rejected=rejected)
        return response, added_ids

    @staticmethod
    def _rejected(candidates: Candidates, i: int, reason: str) -> orchestrator_pb2.RejectedImage:
        return orchestrator_pb2.RejectedImage(name=candidates.name(i), reason=reason)

    def _template(self, candidates: Candidates, i: int) -> storage_pb2.Exemplar:
        return storage_pb2.Exemplar(
            source_name=f"{self._ep_id}/{self._run_id}/{candidates.name(i)}",
            origin=ORIGIN_REVIEW,
            source_ep_id=self._ep_id,
            source_run_id=self._run_id,
            source_track_id=int(candidates.track[i]),
            source_frame=int(candidates.frame[i]),
            added_by=self._by,
            added_at=utc_now(),
        )

    def _crop_key(self, track: int, frame: int) -> str:
        """The key of the face's review crop ("" when the run saved none), listing each track's once."""
        if track not in self._crops:
            self._crops[track] = _crop_keys(self._clients, self._ep_id, self._run_id, track)
        return self._crops[track].get(frame, "")

    def _gate(self, track: int, frame: int, box: np.ndarray) -> tuple[GatedFace | None, str]:
        """The face through enrolment's gate, from its review crop, else from its frame of the video."""
        key = self._crop_key(track, frame)
        if key:
            image = read_artifact(self._clients, self._ep_id, self._run_id, key)
            faces, reason = detect_faces(self._clients, image)
            if reason:
                return None, reason
            pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
            height, width = pixels.shape if pixels is not None else (0, 0)
            index = central_face(_boxes(faces), width, height)
            if index is None:
                return None, "no face found in its review crop"
            return check_face(faces[index], size_box=box.tolist())  # sized as in the video, not the rescaled crop
        request = detector_pb2.DetectVideoRequest(
            video_uri=self._episode.video_uri, start_frame=frame, end_frame=frame + 1, include_crops=True
        )
        with translate_rpc_errors("detector"):
            found = [face for message in self._clients.detector.DetectVideo(request) for face in message.frame.faces]
        if not found:
            return None, "no face found in its frame"
        overlap = iou_matrix(np.asarray([box], np.float64), _boxes(found))[0]
        best = int(np.argmax(overlap))
        if overlap[best] < MIN_MATCH_IOU:
            return None, "the face was not found again in its frame"
        return check_face(found[best])
