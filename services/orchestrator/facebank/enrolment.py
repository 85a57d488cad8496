"""Facebank enrolment: detect one clear face per seed image, gate on quality, embed, store.

Each rejected image gets a reason a person understands (no face, several faces, too small, too
blurred, too dark, extreme pose); the person is stored only if at least one image passes.

A face enters the facebank one way, whether from a seed image or promoted from review
(promotion.py): `detect_faces` finds it, `check_face` is the quality gate, `embed_exemplars` embeds
it with the current model and keeps its aligned crop as a JPEG.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from faceflow.v1 import common_pb2, detector_pb2, embedder_pb2, orchestrator_pb2, storage_pb2

from services.common.auth import audit_name
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.face_quality import face_quality
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.api.clients import ServiceClients

MAX_SEED_IMAGES = 50
CROP_SIZE = 112
# Exemplar.origin values.
ORIGIN_SEED = "seed"
ORIGIN_REVIEW = "review"


@dataclass(frozen=True)
class GatedFace:
    """A face that passed the quality gate: its aligned CROP_SIZE x CROP_SIZE BGR crop and quality score."""

    crop_bgr: bytes
    quality: float


def utc_now() -> str:
    """Now as records store it: "2024-05-01T12:00:00Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def detect_faces(clients: ServiceClients, image: bytes) -> tuple[list[common_pb2.Face], str]:
    """The faces (with aligned crops) in an encoded image, or ([], why) when the detector refuses the image."""
    try:
        with translate_rpc_errors("detector"):
            detected = clients.detector.Detect(detector_pb2.DetectRequest(image=image, include_crops=True))
    except InvalidArgument as error:
        return [], str(error)
    return list(detected.faces), ""


def check_face(face: common_pb2.Face, size_box: Sequence[float] | None = None) -> tuple[GatedFace | None, str]:
    """The quality gate of every facebank face: (the face, "") when it is fit as a reference face,
    else (None, the reasons). `size_box` is where the face's size is judged when the image is a
    rescaled copy (a review crop: the face's box in the video); by default the detected box."""
    crop = np.frombuffer(face.aligned_crop_bgr, np.uint8).reshape(CROP_SIZE, CROP_SIZE, 3)
    detected = [face.box.x1, face.box.y1, face.box.x2, face.box.y2]
    box = np.asarray(size_box if size_box is not None else detected, np.float32)
    quality = face_quality(crop, box, np.asarray(face.landmarks, np.float32).reshape(5, 2), face.score)
    problems = quality.problems()
    if problems:
        return None, "; ".join(problems)
    return GatedFace(face.aligned_crop_bgr, quality.score), ""


def embed_exemplars(
    clients: ServiceClients, faces: Sequence[GatedFace], templates: Sequence[storage_pb2.Exemplar]
) -> list[storage_pb2.Exemplar]:
    """Gated faces embedded with the current model in one call: each template (source, origin, who)
    completed with the model id, the vector, the aligned crop as JPEG and the gate's quality."""
    if not faces:
        return []
    with translate_rpc_errors("embedder"):
        embedded = clients.embedder.Embed(embedder_pb2.EmbedRequest(crops_bgr=[f.crop_bgr for f in faces]))
    exemplars = []
    for face, template, vector in zip(faces, templates, embedded.embeddings, strict=True):
        pixels = np.frombuffer(face.crop_bgr, np.uint8).reshape(CROP_SIZE, CROP_SIZE, 3)
        ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
        exemplar = storage_pb2.Exemplar()
        exemplar.CopyFrom(template)
        exemplar.model_id = embedded.model_id
        exemplar.embedding[:] = vector.values
        exemplar.crop_jpeg = jpeg.tobytes() if ok else b""
        exemplar.quality = face.quality
        exemplars.append(exemplar)
    return exemplars


def _check_image(
    clients: ServiceClients, image: orchestrator_pb2.EnrollPersonRequest.SeedImage
) -> tuple[GatedFace | None, str]:
    """(the face, "") for a usable seed image (exactly one face, fit), else (None, reason)."""
    faces, reason = detect_faces(clients, image.data)
    if reason:
        return None, reason
    if not faces:
        return None, "no face found"
    if len(faces) > 1:
        return None, f"{len(faces)} faces found; use an image showing only this person"
    return check_face(faces[0])


def enroll_person(
    clients: ServiceClients, request: orchestrator_pb2.EnrollPersonRequest
) -> orchestrator_pb2.EnrollPersonResponse:
    if not request.name.strip():
        raise InvalidArgument("the person's name is empty")
    if not request.images:
        raise InvalidArgument(f"no seed images given for {request.name!r}")
    if len(request.images) > MAX_SEED_IMAGES:
        raise InvalidArgument(f"{len(request.images)} seed images given; at most {MAX_SEED_IMAGES} per call")
    accepted: list[GatedFace] = []
    templates: list[storage_pb2.Exemplar] = []
    rejected: list[orchestrator_pb2.RejectedImage] = []
    by, now = audit_name(), utc_now()
    for image in request.images:
        face, reason = _check_image(clients, image)
        if face is None:
            rejected.append(orchestrator_pb2.RejectedImage(name=image.name, reason=reason))
        else:
            accepted.append(face)
            templates.append(
                storage_pb2.Exemplar(source_name=image.name, origin=ORIGIN_SEED, added_by=by, added_at=now)
            )
    if not accepted:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rejected)
        raise InvalidArgument(f"no usable seed image for {request.name!r} ({reasons})")
    exemplars = embed_exemplars(clients, accepted, templates)
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
        fresh = []
        for old, vector in zip(stale, embedded.embeddings, strict=True):
            # The same face under the new model: where it came from and who added it carry over.
            exemplar = storage_pb2.Exemplar()
            exemplar.CopyFrom(old)
            exemplar.exemplar_id = ""
            exemplar.model_id = embedded.model_id
            exemplar.embedding[:] = vector.values
            fresh.append(exemplar)
        with translate_rpc_errors("storage"):
            clients.storage.AddPerson(
                storage_pb2.AddPersonRequest(show_id=show_id, name=person.name, exemplars=fresh, append=True)
            )
        touched += 1
        done += len(fresh)
    return orchestrator_pb2.ReembedFacebankResponse(model_id=model_id, people=touched, exemplars_reembedded=done)
