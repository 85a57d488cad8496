"""Facebank enrolment: detect one clear face per seed image, gate on quality, embed, store.

Each rejected image gets a reason a person understands (no face, several faces, too small, too
blurred, too dark, extreme pose); the person is stored only if at least one image passes.
"""

from __future__ import annotations

import cv2
import numpy as np
from faceflow.v1 import detector_pb2, embedder_pb2, orchestrator_pb2, storage_pb2

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.face_quality import face_quality
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.api.clients import ServiceClients

MAX_SEED_IMAGES = 50
CROP_SIZE = 112


def _check_image(
    clients: ServiceClients, image: orchestrator_pb2.EnrollPersonRequest.SeedImage
) -> tuple[bytes | None, float, str]:
    """(aligned crop bytes, quality, "") for a usable image, else (None, 0, reason)."""
    try:
        with translate_rpc_errors("detector"):
            detected = clients.detector.Detect(detector_pb2.DetectRequest(image=image.data, include_crops=True))
    except InvalidArgument as error:
        return None, 0.0, str(error)
    if not detected.faces:
        return None, 0.0, "no face found"
    if len(detected.faces) > 1:
        return None, 0.0, f"{len(detected.faces)} faces found; use an image showing only this person"
    face = detected.faces[0]
    crop = np.frombuffer(face.aligned_crop_bgr, np.uint8).reshape(CROP_SIZE, CROP_SIZE, 3)
    box = np.array([face.box.x1, face.box.y1, face.box.x2, face.box.y2], np.float32)
    quality = face_quality(crop, box, np.asarray(face.landmarks, np.float32).reshape(5, 2), face.score)
    problems = quality.problems()
    if problems:
        return None, 0.0, "; ".join(problems)
    return face.aligned_crop_bgr, quality.score, ""


def enroll_person(
    clients: ServiceClients, request: orchestrator_pb2.EnrollPersonRequest
) -> orchestrator_pb2.EnrollPersonResponse:
    if not request.name.strip():
        raise InvalidArgument("the person's name is empty")
    if not request.images:
        raise InvalidArgument(f"no seed images given for {request.name!r}")
    if len(request.images) > MAX_SEED_IMAGES:
        raise InvalidArgument(f"{len(request.images)} seed images given; at most {MAX_SEED_IMAGES} per call")
    accepted: list[tuple[str, bytes, float]] = []
    rejected: list[orchestrator_pb2.RejectedImage] = []
    for image in request.images:
        crop, quality, reason = _check_image(clients, image)
        if crop is None:
            rejected.append(orchestrator_pb2.RejectedImage(name=image.name, reason=reason))
        else:
            accepted.append((image.name, crop, quality))
    if not accepted:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rejected)
        raise InvalidArgument(f"no usable seed image for {request.name!r} ({reasons})")
    with translate_rpc_errors("embedder"):
        embedded = clients.embedder.Embed(embedder_pb2.EmbedRequest(crops_bgr=[c for _, c, _ in accepted]))
    exemplars = []
    for (name, crop, quality), vector in zip(accepted, embedded.embeddings, strict=True):
        pixels = np.frombuffer(crop, np.uint8).reshape(CROP_SIZE, CROP_SIZE, 3)
        ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
        exemplars.append(
            storage_pb2.Exemplar(
                model_id=embedded.model_id,
                embedding=vector.values,
                crop_jpeg=jpeg.tobytes() if ok else b"",
                source_name=name,
                quality=quality,
            )
        )
    with translate_rpc_errors("storage"):
        person = clients.storage.AddPerson(
            storage_pb2.AddPersonRequest(
                show_id=request.show_id, name=request.name, exemplars=exemplars, append=request.append
            )
        )
    return orchestrator_pb2.EnrollPersonResponse(person=person, rejected=rejected)


def reembed_facebank(clients: ServiceClients, show_id: str) -> orchestrator_pb2.ReembedFacebankResponse:
    """Give every exemplar a vector of the current model, computed from its stored aligned crop."""
    with translate_rpc_errors("embedder"):
        model_id = clients.embedder.GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest()).model.model_id
    with translate_rpc_errors("storage"):
        people = clients.storage.ListPeople(storage_pb2.ListPeopleRequest(show_id=show_id)).people
    touched = done = 0
    for person in people:
        current = {e.source_name for e in person.exemplars if e.model_id == model_id}
        stale = [e for e in person.exemplars if e.model_id != model_id and e.source_name not in current and e.crop_jpeg]
        if not stale:
            continue
        crops = []
        for exemplar in stale:
            image = cv2.imdecode(np.frombuffer(exemplar.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None or image.shape != (CROP_SIZE, CROP_SIZE, 3):
                raise FailedPrecondition(
                    f"exemplar {exemplar.exemplar_id} of {person.name} has no usable crop; re-enrol {person.name}"
                )
            crops.append(image.tobytes())
        with translate_rpc_errors("embedder"):
            embedded = clients.embedder.Embed(embedder_pb2.EmbedRequest(crops_bgr=crops))
        fresh = [
            storage_pb2.Exemplar(
                model_id=embedded.model_id,
                embedding=vector.values,
                crop_jpeg=old.crop_jpeg,
                source_name=old.source_name,
                quality=old.quality,
            )
            for old, vector in zip(stale, embedded.embeddings, strict=True)
        ]
        with translate_rpc_errors("storage"):
            clients.storage.AddPerson(
                storage_pb2.AddPersonRequest(show_id=show_id, name=person.name, exemplars=fresh, append=True)
            )
        touched += 1
        done += len(fresh)
    return orchestrator_pb2.ReembedFacebankResponse(model_id=model_id, people=touched, exemplars_reembedded=done)
