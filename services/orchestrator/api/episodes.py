"""Placeholder: setting an episode's show and season is being built."""

from __future__ import annotations

from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.common.errors import FailedPrecondition
from services.orchestrator.api.clients import ServiceClients


def set_episode_show(clients: ServiceClients, request: orchestrator_pb2.SetEpisodeShowRequest) -> storage_pb2.Episode:
    raise FailedPrecondition("setting an episode's show is not available yet")
