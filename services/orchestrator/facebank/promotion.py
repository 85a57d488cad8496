"""Placeholder: promoting a reviewed identity's faces into the facebank is being built."""

from __future__ import annotations

from faceflow.v1 import orchestrator_pb2

from services.common.errors import FailedPrecondition
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.review.service import ReviewService


def add_to_facebank(
    clients: ServiceClients, review: ReviewService, request: orchestrator_pb2.AddToFacebankRequest, by: str
) -> orchestrator_pb2.AddToFacebankResponse:
    raise FailedPrecondition("adding reviewed faces to the facebank is not available yet")
