"""The storage interface every backend implements (local filesystem and S3), and what they share.

Keys are (episode id, run id, artifact name). A run's artifacts are written while it runs and become
the episode's current outputs only when the run is published, so readers never see a half-written run
and a failed run leaves the previous outputs untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from faceflow.v1 import common_pb2, storage_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.config import Settings
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.common.placement import DEFAULT_SHOW, check_placement

# Artifact names are relative paths of safe segments ("crops/track_0001/000012.jpg").
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ARTIFACT_DEPTH = 4
GIB = 1024**3
# 64 GiB: a 4K feature film; anything larger is refused while it streams in, not after.
MAX_VIDEO_BYTES = 64 * GIB
# Free space a local store keeps after any upload (the OS, logs and run artifacts need room too).
UPLOAD_HEADROOM_BYTES = 2 * GIB
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mxf", ".mpg", ".mpeg")
# Streaming unit for reads and hashing: large enough to amortise per-call overhead, small enough to keep
# a gRPC message (4 MiB default limit) and memory per stream bounded.
CHUNK_BYTES = 1024 * 1024
# An episode's record, and the artifact whose presence makes a run finished (publishable).
EPISODE_RECORD = "episode.json"
MANIFEST = "manifest.json"


def utc_timestamp() -> str:
    """Now, as records store it: "2024-05-01T12:00:00Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_json(record: Message) -> bytes:
    """A record (episode, person) as both backends store it: protobuf JSON with the .proto field names."""
    return json_format.MessageToJson(record, preserving_proto_field_name=True).encode()


def video_suffix(filename: str) -> str:
    """The stored file's extension: the upload's own when it is a known video container, else .mp4."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return suffix if suffix in VIDEO_SUFFIXES else ".mp4"


def gib(size: int) -> str:
    """A byte count for people: "64 GiB", "1.5 GiB" (bytes when it would round to 0 GiB)."""
    text = f"{size / GIB:.2f}".rstrip("0").rstrip(".")
    return f"{text} GiB" if text not in {"0", "-0"} else f"{size} bytes"


@dataclass(frozen=True)
class UploadLimits:
    """Admission of uploads: the largest one taken, and (local store) the free space kept after it."""

    max_bytes: int = MAX_VIDEO_BYTES
    headroom_bytes: int = UPLOAD_HEADROOM_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(max_bytes=settings.max_upload_bytes, headroom_bytes=settings.upload_headroom_bytes)

    def check_size(self, size_bytes: int) -> None:
        """InvalidArgument unless 0 < size_bytes <= max_bytes (the same rule on every backend)."""
        if size_bytes <= 0:
            raise InvalidArgument(f"an upload's size must be a positive number of bytes, got {size_bytes}")
        if size_bytes > self.max_bytes:
            raise InvalidArgument(
                f"an upload of {gib(size_bytes)} is larger than {gib(self.max_bytes)}, "
                "the largest video this faceflow accepts"
            )


def limited(chunks: Iterable[bytes], limit: int = MAX_VIDEO_BYTES) -> Iterator[bytes]:
    """Pass chunks through, failing as soon as the total passes `limit` bytes."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise InvalidArgument(f"the upload exceeds {gib(limit)}, the largest video this faceflow accepts")
        yield chunk


# Review records per episode: far beyond a day of reviewing, small enough to list in one call.
MAX_REVIEW_RECORDS = 100_000


@dataclass(frozen=True)
class ShowPlacement:
    """Where an episode belongs: its show ("default" when none is named), the season of the show and
    its number in that season (0: not set). Built with `checked`, so a record never holds a bad one."""

    show_id: str = DEFAULT_SHOW
    season: int = 0
    episode_number: int = 0

    @classmethod
    def checked(cls, show_id: str, season: int, episode_number: int) -> ShowPlacement:
        """InvalidArgument naming the field and the value for a malformed show id or an out-of-range number."""
        return cls(check_placement(show_id, season, episode_number), season, episode_number)

    def replacing(self, existing: storage_pb2.Episode | None, show_named: bool) -> ShowPlacement:
        """This placement for a video replacing `existing`'s: what the request left unset (no show
        named, a 0) keeps the episode's own."""
        if existing is None:
            return self
        return ShowPlacement(
            self.show_id if show_named or not existing.show_id else existing.show_id,
            self.season or existing.season,
            self.episode_number or existing.episode_number,
        )

    def apply(self, episode: storage_pb2.Episode) -> bool:
        """Set the episode's show, season and number; whether anything changed."""
        before = (episode.show_id, episode.season, episode.episode_number)
        episode.show_id, episode.season, episode.episode_number = self.show_id, self.season, self.episode_number
        return before != (self.show_id, self.season, self.episode_number)


def in_show(episode: storage_pb2.Episode, show_id: str) -> bool:
    """Whether an episode belongs to `show_id` (every episode does to ""; a record without a show is
    the default show's)."""
    return not show_id or (episode.show_id or DEFAULT_SHOW) == show_id


def show_filter(show_id: str) -> str:
    """A ListEpisodes show filter, validated ("" = every show)."""
    return validate_id("show", show_id) if show_id else ""


def person_with_exemplars(
    existing: storage_pb2.Person | None,
    person_id: str,
    name: str,
    show_id: str,
    exemplars: list[storage_pb2.Exemplar],
    append: bool,
    by: str,
    now: str,
) -> storage_pb2.Person:
    """A new person (enrolled_by `by`), or `existing` with the exemplars appended (updated_by `by`)."""
    if existing is not None and not append:
        raise AlreadyExists(f"{name!r} is already in the facebank of show {show_id or DEFAULT_SHOW!r}")
    person = existing or storage_pb2.Person(
        person_id=person_id, name=name.strip(), show_id=show_id or DEFAULT_SHOW, created_at=now, enrolled_by=by
    )
    person.updated_by = by
    for exemplar in exemplars:
        added = person.exemplars.add()
        added.CopyFrom(exemplar)
        added.exemplar_id = added.exemplar_id or uuid.uuid4().hex[:12]
    return person


def remove_exemplar_from(person: storage_pb2.Person, exemplar_id: str) -> storage_pb2.Person:
    """The person without that exemplar; a person keeps at least one (remove the person instead)."""
    kept = [e for e in person.exemplars if e.exemplar_id != exemplar_id]
    if len(kept) == len(person.exemplars):
        raise NotFound(f"{person.name} has no exemplar {exemplar_id!r}")
    if not kept:
        raise FailedPrecondition(f"{exemplar_id!r} is the last exemplar of {person.name}; remove the person instead")
    del person.exemplars[:]
    person.exemplars.extend(kept)
    return person


def validate_artifact_name(name: str) -> str:
    parts = name.split("/")
    if not name or len(parts) > MAX_ARTIFACT_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise InvalidArgument(
            f"artifact name {name[:80]!r} is invalid: use up to {MAX_ARTIFACT_DEPTH} '/'-separated segments of "
            "letters, digits, '.', '_' or '-' (no '..', no leading '/')"
        )
    return name


class Facebank(Protocol):
    """The people of each show and their exemplars: the facebank half of a StorageBackend."""

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        """Create a person (enrolled_by = by) or, with append, add exemplars (updated_by = by); `by`
        defaults to the verified caller of the current RPC (services.common.auth.audit_name())."""
        ...

    def list_people(self, show_id: str) -> list[storage_pb2.Person]: ...

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person: ...

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        """Purge one exemplar (its embedding and crop); NotFound if unknown, the person is kept."""
        ...

    def remove_person(self, show_id: str, person_id: str) -> int:
        """Purge a person's record and exemplars (embeddings and crops: biometric data); count removed."""
        ...


class StorageBackend(Facebank, Protocol):
    """Episodes, run artifacts and the facebank. Every method raises services.common.errors on bad
    input (InvalidArgument for malformed ids/names, NotFound for unknown things) before touching data.
    """

    def create_episode(
        self,
        ep_id: str,
        source_path: str,
        video: common_pb2.VideoInfo,
        show_id: str,
        replace_video: bool,
        upload_id: str = "",
        season: int = 0,
        episode_number: int = 0,
    ) -> storage_pb2.Episode:
        """Copy the video at source_path (a local file), or move a staged upload, into the store;
        idempotent for the same bytes (the stored record is returned as it is). Replacing a video
        keeps the episode's show when show_id is empty, and its season and number when they are 0."""
        ...

    def update_episode(self, ep_id: str, show_id: str, season: int, episode_number: int) -> storage_pb2.Episode:
        """Set an episode's show ("default" when empty), season and number (0: not set), atomically with
        every other writer of the record (publish_run, create_episode): neither undoes the other."""
        ...

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        """Receive a video into staging (at most the backend's UploadLimits.max_bytes; a local store also
        stops with ResourceExhausted when its disk would drop below the headroom); nothing is left
        behind on failure."""
        ...

    def check_upload_capacity(self, size_bytes: int) -> int:
        """Whether an upload of size_bytes would be taken now: InvalidArgument for a size <= 0 or above
        the maximum, ResourceExhausted when a local store lacks the space (keeping its headroom).
        Returns the largest upload that would be taken now."""
        ...

    def stage_object(self, source_uri: str) -> storage_pb2.StagedUpload:
        """Copy s3://BUCKET/KEY (the configured bucket, outside the store's prefix) into staging, like
        stage_upload; FailedPrecondition on a backend without a bucket."""
        ...

    def discard_upload(self, upload_id: str) -> None: ...

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        """Delete staged uploads untouched for older_than_s (never adopted: a client that went away);
        returns how many. `now` (epoch seconds) is for tests."""
        ...

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        """The record; video_uri is readable by the detector (a path, or a presigned URL on S3)."""
        ...

    def list_episodes(self, show_id: str = "") -> list[storage_pb2.Episode]:
        """Every episode by id, or only those of show `show_id` (validated)."""
        ...

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        """Remove local caches always, S3 objects only if include_s3: (local dirs, S3 objects) removed."""
        ...

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact:
        """Write one artifact of a run atomically (temp + rename locally, one PUT or multipart on S3)."""
        ...

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        """Chunks of an artifact; an empty run_id means the episode's current (published) run."""
        ...

    def list_artifacts(
        self, ep_id: str, run_id: str, prefix: str, start_after: str = "", limit: int = 0
    ) -> list[storage_pb2.Artifact]:
        """Artifacts of a run whose names start with prefix, sorted by name, names > start_after,
        at most limit (0: all). An empty run_id means the current run."""
        ...

    def artifact_url(self, ep_id: str, run_id: str, name: str, expires_s: int) -> str:
        """An HTTP URL that GETs the artifact until it expires (presigned on S3, signed and served
        by the storage service locally). Raises NotFound if the artifact does not exist."""
        ...

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Make a finished run (its manifest.json exists) the episode's current outputs, atomically."""
        ...

    def delete_run(self, ep_id: str, run_id: str, prefix: str) -> int:
        """Delete a run's artifacts (prefix empty: all, refused for the current run); the count removed."""
        ...

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        """Create review record `seq` (>= 1) of an episode exactly once: AlreadyExists if taken."""
        ...

    def list_review_records(self, ep_id: str) -> list[tuple[int, bytes]]:
        """Every review record of an episode, in seq order."""
        ...


class FacebankCalls:
    """Base of both backends: their Facebank calls go to self._facebank (LocalFacebank, S3Facebank)."""

    _facebank: Facebank

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        return self._facebank.add_person(show_id, name, exemplars, append, by)

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        return self._facebank.list_people(show_id)

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        return self._facebank.get_person(show_id, person_id)

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        return self._facebank.remove_exemplar(show_id, person_id, exemplar_id)

    def remove_person(self, show_id: str, person_id: str) -> int:
        return self._facebank.remove_person(show_id, person_id)
