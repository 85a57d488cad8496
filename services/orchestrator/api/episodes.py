"""Which show an episode belongs to, its season and its number in it: checked here, kept by storage.

The orchestrator is where a caller's request is validated (storage's UpdateEpisode is internal), and
checking the numbers before an upload begins saves sending a video that would be refused at the end.
Storage checks them again, as every record it writes, with the same rule (services/common/placement.py).
"""

from __future__ import annotations

from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.common.access import episode_for_caller
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.common.placement import check_placement
from services.orchestrator.api.clients import ServiceClients


def set_episode_show(clients: ServiceClients, request: orchestrator_pb2.SetEpisodeShowRequest) -> storage_pb2.Episode:
    """Move an episode to a show, season and number (all three as given: 0 clears a number); storage
    writes it atomically with any run being published meanwhile."""
    validate_id("episode", request.ep_id)
    show_id = check_placement(request.show_id, request.season, request.episode_number)
    update = storage_pb2.UpdateEpisodeRequest(
        ep_id=request.ep_id, show_id=show_id, season=request.season, episode_number=request.episode_number
    )
    with translate_rpc_errors("storage"):
        episode: storage_pb2.Episode = clients.storage.UpdateEpisode(update)
    return episode_for_caller(episode)
