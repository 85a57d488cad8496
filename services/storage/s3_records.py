"""Where the S3 backend keeps each object (the key layout), and its JSON records (episode.json, people)
with the one compare-and-swap loop that changes them.

Key layout (also in docs/storage.md, the one place a reader should need):

    {prefix}/episodes/{ep_id}/episode.json              the record (video probe, sha256, current run, show)
    {prefix}/episodes/{ep_id}/video{ext}                the stored video
    {prefix}/episodes/{ep_id}/runs/{run_id}/{artifact}  every run's artifacts, kept
    {prefix}/episodes/{ep_id}/review/{seq:06d}.json     the review log, one immutable object per record
    {prefix}/facebank/{show_id}/{person_id}.json        a person and their exemplars
    {prefix}/staging/{upload_id}/video{ext}, upload.json a received video before CreateEpisode adopts it

Every write of a record is a conditional PUT (If-None-Match: * to create, If-Match: <etag> to update),
so concurrent writers cannot lose each other's updates and a publish can never resurrect a deleted
episode.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from faceflow.v1 import storage_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.common.ids import validate_id
from services.storage.backend import DEFAULT_SHOW, EPISODE_RECORD, record_json
from services.storage.s3_transport import S3Transport

# Written after a staged video is complete: its presence is what makes an upload id valid.
UPLOAD_RECORD = "upload.json"

R = TypeVar("R", bound=Message)

# User metadata on every record: a random id given when the record is created and kept by every update.
# The same incarnation read twice means the record was not deleted in between (every write is
# conditional, so only a create, If-None-Match, can follow a delete, and a create draws a new id).
INCARNATION = "incarnation"


@dataclass(frozen=True)
class StoredRecord(Generic[R]):
    record: R
    etag: str
    incarnation: str  # "" for a record written before incarnations


class S3Keys:
    """The object keys of one deployment (everything under `prefix`); ids are validated here."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def episode(self, ep_id: str, *rest: str) -> str:
        return self.key("episodes", validate_id("episode", ep_id), *rest)

    def run(self, ep_id: str, run_id: str, name: str = "") -> str:
        return self.episode(ep_id, "runs", validate_id("run", run_id), name)

    def review(self, ep_id: str, seq: int) -> str:
        return self.episode(ep_id, "review", f"{seq:06d}.json")

    def show(self, show_id: str, *rest: str) -> str:
        return self.key("facebank", validate_id("show", show_id or DEFAULT_SHOW), *rest)

    def person(self, show_id: str, person_id: str) -> str:
        return self.show(show_id, f"{person_id}.json")


def key_of(uri: str, bucket: str) -> str:
    """The object key of an s3://bucket/key URI stored in a record ('' for anything else)."""
    head = f"s3://{bucket}/"
    return uri[len(head) :] if uri.startswith(head) else ""


def source_key(uri: str, bucket: str, prefix: str) -> str:
    """The key of a video source s3://BUCKET/KEY: only the configured bucket, never under the store's
    own prefix (episodes, runs, the facebank are not sources), no '..' or empty segments."""
    if not uri.startswith("s3://"):
        raise InvalidArgument(f"a video source must be s3://{bucket}/KEY, got {uri!r}")
    named_bucket, _, key = uri.removeprefix("s3://").partition("/")
    if named_bucket != bucket:
        raise PermissionDenied(f"only videos in the configured bucket {bucket!r} can be sources")
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise InvalidArgument(f"{uri!r} does not name an object (s3://{bucket}/FOLDER/VIDEO.mp4)")
    if prefix and (key == prefix or key.startswith(prefix + "/")):
        raise PermissionDenied(f"objects under {prefix}/ are faceflow's own store, not video sources")
    return key


def missing_episode(ep_id: str) -> NotFound:
    return NotFound(f"episode {ep_id!r} does not exist; create it first (faceflow run VIDEO --episode {ep_id})")


class S3Records:
    """Reads and compare-and-swap writes of JSON records (protobuf messages) in the bucket."""

    def __init__(self, s3: S3Transport, keys: S3Keys, cas_attempts: int) -> None:
        self._s3 = s3
        self._keys = keys
        self._cas_attempts = cas_attempts

    def read(self, key: str, kind: type[R]) -> tuple[R, str] | None:
        """(record, ETag), or None if there is no such object."""
        found = self._stored(key, kind)
        return (found.record, found.etag) if found is not None else None

    def _stored(self, key: str, kind: type[R]) -> StoredRecord[R] | None:
        found = self._s3.read(key)
        if found is None:
            return None
        record = json_format.Parse(found.body.decode(), kind())
        return StoredRecord(record, found.etag, found.metadata.get(INCARNATION, ""))

    def episode(self, ep_id: str) -> tuple[storage_pb2.Episode, str]:
        """An episode's record and its ETag; NotFound if the episode does not exist."""
        found = self.read(self._keys.episode(ep_id, EPISODE_RECORD), storage_pb2.Episode)
        if found is None:
            raise missing_episode(ep_id)
        return found

    def update(
        self,
        key: str,
        kind: type[R],
        change: Callable[[R | None], tuple[R, bool]],
        conflict: str,
        guard: Callable[[], None] | None = None,
    ) -> R:
        """Compare-and-swap on one record: read it with its ETag, apply `change`, write the result back
        If-Match that ETag (If-None-Match: * when there was none); on a lost race back off and start
        over, up to record_cas_attempts times, then Unavailable(conflict).

        `change` gets the stored record (None: there is none; it may raise) and returns (record, write):
        write False returns the record as it is, without writing.

        `guard` checks (raising if it fails) a fact outside the record that only deleting the record can
        undo, such as a run's manifest existing. It runs after the first read of each incarnation of the
        record, not on every attempt: a check inside every read-to-write window made that window longer
        than a busy writer's, and the busy writer won every race.
        """
        guarded = None
        for attempt in range(self._cas_attempts):
            found = self._stored(key, kind)
            if guard is not None and found is not None and (not found.incarnation or found.incarnation != guarded):
                guard()
                guarded = found.incarnation
            record, write = change(found.record if found is not None else None)
            if not write:
                return record
            # A created record is a new incarnation; an updated one keeps its own (records from before
            # incarnations get one now).
            incarnation = (found.incarnation if found is not None else "") or uuid.uuid4().hex
            etag = found.etag if found is not None else None
            if self._s3.write_conditional(key, record_json(record), etag, {INCARNATION: incarnation}):
                return record
            # Short, jittered: the competing write is a single small PUT that finishes in milliseconds.
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise Unavailable(conflict)
