"""Requests both clients build the same way."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from faceflow.client.errors import InvalidArgument
from faceflow.client.models import RunOptions
from faceflow.v1 import orchestrator_pb2, storage_pb2

# Calls that probe a video or move it into the store take longer than an ordinary call.
LONG_CALL_S = 300.0


def submit_request(
    episode: str, options: RunOptions | None, idempotency_key: str | None
) -> orchestrator_pb2.SubmitJobRequest:
    """A fresh key when none is given: the client's own retries of this submit then join one job."""
    return orchestrator_pb2.SubmitJobRequest(
        ep_id=episode,
        options=(options or RunOptions()).to_proto(),
        idempotency_key=idempotency_key or uuid.uuid4().hex,
    )


def s3_request(uri: str, episode: str, show: str, replace_video: bool) -> storage_pb2.CreateEpisodeRequest:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise InvalidArgument(f"the video must be given as s3://bucket/key, got {uri!r}")
    return storage_pb2.CreateEpisodeRequest(ep_id=episode, show_id=show, replace_video=replace_video, source_uri=uri)


def artifact_request(episode: str, name: str) -> storage_pb2.GetArtifactRequest:
    """An artifact of the episode's current (published) run."""
    return storage_pb2.GetArtifactRequest(ref=storage_pb2.ArtifactRef(ep_id=episode, run_id="", name=name))
