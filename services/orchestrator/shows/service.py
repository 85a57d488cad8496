"""Placeholder: the show service is being built (docs/shows.md)."""

from __future__ import annotations

from faceflow.v1 import orchestrator_pb2

from services.common.errors import FailedPrecondition
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.review.service import ReviewService


class ShowService:
    def __init__(self, clients: ServiceClients, review: ReviewService) -> None:
        self._clients = clients
        self._review = review

    def screen_time(self, show_id: str, season: int) -> orchestrator_pb2.ShowScreenTime:
        raise FailedPrecondition("show roll-ups are not available yet")

    def link(self, request: orchestrator_pb2.LinkIdentitiesRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        raise FailedPrecondition("show roll-ups are not available yet")

    def unlink(self, request: orchestrator_pb2.UnlinkIdentityRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        raise FailedPrecondition("show roll-ups are not available yet")

    def name(self, request: orchestrator_pb2.NameShowPersonRequest, by: str) -> orchestrator_pb2.ShowScreenTime:
        raise FailedPrecondition("show roll-ups are not available yet")
