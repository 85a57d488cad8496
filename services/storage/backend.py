"""The storage interface every backend implements (local filesystem now; S3 next).

Keys are (episode id, run id, artifact name). A run's artifacts are written while it runs and become
the episode's current outputs only when the run is published, so readers never see a half-written run
and a failed run leaves the previous outputs untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Protocol

from faceflow.v1 import common_pb2, storage_pb2

from services.common.errors import InvalidArgument

# Artifact names are relative paths of safe segments ("crops/track_0001/000012.jpg").
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ARTIFACT_DEPTH = 4
DEFAULT_SHOW = "default"


def validate_artifact_name(name: str) -> str:
    parts = name.split("/")
    if not name or len(parts) > MAX_ARTIFACT_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise InvalidArgument(
            f"artifact name {name[:80]!r} is invalid: use up to {MAX_ARTIFACT_DEPTH} '/'-separated segments of "
            "letters, digits, '.', '_' or '-' (no '..', no leading '/')"
        )
    return name


class StorageBackend(Protocol):
    def create_episode(
        self, ep_id: str, source_path: str, video: common_pb2.VideoInfo, show_id: str, replace_video: bool
    ) -> storage_pb2.Episode: ...

    def get_episode(self, ep_id: str) -> storage_pb2.Episode: ...

    def list_episodes(self) -> list[storage_pb2.Episode]: ...

    def delete_episode(self, ep_id: str, include_remote: bool) -> tuple[int, int]: ...

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact: ...

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]: ...

    def list_artifacts(self, ep_id: str, run_id: str, prefix: str) -> list[storage_pb2.Artifact]: ...

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode: ...

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool
    ) -> storage_pb2.Person: ...

    def list_people(self, show_id: str) -> list[storage_pb2.Person]: ...

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person: ...

    def remove_person(self, show_id: str, person_id: str) -> int: ...
