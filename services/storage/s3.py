"""S3 backend: episodes, run artifacts and the facebank as objects in one bucket.

The key layout and the records are in s3_records.py, the bucket's client in s3_transport.py, settings
in s3_settings.py, people in s3_facebank.py; this module is the StorageBackend that ties them together.

Unlike the local backend, publishing copies nothing: a run's artifacts stay under runs/{run_id}/ and
episode.json's current_run_id says which run is current. Every write of a record (episode or person)
is a conditional PUT, so concurrent writers cannot lose each other's updates and a publish can never
resurrect a deleted episode.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
from faceflow.v1 import common_pb2, storage_pb2

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.common.model_manifest import sha256_file
from services.storage.backend import (
    EPISODE_RECORD,
    MANIFEST,
    MAX_REVIEW_RECORDS,
    FacebankCalls,
    ShowPlacement,
    UploadLimits,
    in_show,
    limited,
    show_filter,
    utc_timestamp,
    validate_artifact_name,
    video_suffix,
)
from services.storage.local_root import atomic_write_bytes, remove_episode_folder
from services.storage.s3_facebank import S3Facebank
from services.storage.s3_records import UPLOAD_RECORD, S3Keys, S3Records, key_of, missing_episode, source_key
from services.storage.s3_settings import S3Settings
from services.storage.s3_transport import S3Transport

__all__ = ["S3Settings", "S3Storage"]


class S3Storage(FacebankCalls):
    """StorageBackend on S3 (AWS, SeaweedFS, MinIO). Thread-safe: one boto3 client, no mutable state."""

    def __init__(
        self, settings: S3Settings, session: boto3.session.Session | None = None, limits: UploadLimits | None = None
    ) -> None:
        """`session` defaults to boto3's standard credential chain; tests pass one with explicit keys.
        `limits`: only max_bytes applies (a bucket has no free space to keep)."""
        self.settings = settings
        self.limits = limits or UploadLimits()
        self._s3 = S3Transport(settings, session)
        self._keys = S3Keys(settings.prefix)
        self._records = S3Records(self._s3, self._keys, settings.record_cas_attempts)
        self._facebank = S3Facebank(self._s3, self._keys, self._records)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (start-up of the storage service); fail clearly otherwise."""
        self._s3.ensure_bucket()

    # ---- episodes -------------------------------------------------------------------------------

    def _presented(self, stored: storage_pb2.Episode) -> storage_pb2.Episode:
        """The record as callers see it: the stored s3:// video location replaced by a presigned GET URL."""
        episode = storage_pb2.Episode()
        episode.CopyFrom(stored)
        key = key_of(stored.video_uri, self.settings.bucket)
        if key:
            url = self._s3.presign(key)
            episode.video_uri = url
            episode.video.uri = url
        return episode

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        return self._presented(self._records.episode(ep_id)[0])

    def list_episodes(self, show_id: str = "") -> list[storage_pb2.Episode]:
        show_id = show_filter(show_id)
        episodes = []
        for folder in self._s3.list_folders("list episodes", self._keys.key("episodes") + "/"):
            found = self._records.read(f"{folder}{EPISODE_RECORD}", storage_pb2.Episode)
            # A prefix without a record is a leftover of a delete, not an episode.
            if found is not None and in_show(found[0], show_id):
                episodes.append(self._presented(found[0]))
        return sorted(episodes, key=lambda e: e.ep_id)

    def update_episode(self, ep_id: str, show_id: str, season: int, episode_number: int) -> storage_pb2.Episode:
        """The compare-and-swap loop publish_run uses: a publish that lands between the read and the write
        makes the write fail its If-Match, and the change is applied again to the record it wrote."""
        record_key = self._keys.episode(ep_id, EPISODE_RECORD)
        placement = ShowPlacement.checked(show_id, season, episode_number)

        def place(episode: storage_pb2.Episode | None) -> tuple[storage_pb2.Episode, bool]:
            if episode is None:
                raise missing_episode(ep_id)
            return episode, placement.apply(episode)

        conflict = (
            f"episode {ep_id!r} is being changed by other writers; setting its show lost "
            f"{self.settings.record_cas_attempts} races in a row, retry it"
        )
        return self._presented(self._records.update(record_key, storage_pb2.Episode, place, conflict))

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        """Stream a video into staging (refused past limits.max_bytes); upload.json last marks it complete."""
        upload_id = "up-" + uuid.uuid4().hex[:16]
        video_key = self._keys.key("staging", upload_id, f"video{video_suffix(filename)}")
        record_key = self._keys.key("staging", upload_id, UPLOAD_RECORD)
        try:
            reader = self._s3.upload(f"stage {filename}", video_key, limited(chunks, self.limits.max_bytes))
            if reader.size == 0:
                raise InvalidArgument(f"the upload of {filename!r} is empty (0 bytes)")
            sha256 = reader.digest.hexdigest()
            record = {"video_key": video_key, "size_bytes": reader.size, "sha256": sha256}
            self._s3.put(f"record upload {upload_id}", record_key, json.dumps(record).encode())
        except BaseException:
            self._s3.delete_quietly([video_key, record_key])
            raise
        return storage_pb2.StagedUpload(
            upload_id=upload_id, uri=self._s3.presign(video_key), size_bytes=reader.size, sha256=sha256
        )

    def stage_object(self, source_uri: str) -> storage_pb2.StagedUpload:
        """Streams the object through stage_upload: the same size limit, checksum and record."""
        key = source_key(source_uri, self._s3.bucket, self._keys.prefix)
        chunks = self._s3.download(key, NotFound(f"{source_uri} does not exist"))
        return self.stage_upload(key.rsplit("/", 1)[-1], chunks)

    def check_upload_capacity(self, size_bytes: int) -> int:
        """Only the size limit: a bucket has no free space to run out of (its quota is the operator's)."""
        self.limits.check_size(size_bytes)
        return self.limits.max_bytes

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than_s
        newest: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        for item in self._s3.list_keys(self._keys.key("staging") + "/"):
            upload = item["Key"].rsplit("/", 2)[-2]
            keys.setdefault(upload, []).append(item["Key"])
            newest[upload] = max(newest.get(upload, 0.0), item["LastModified"].timestamp())
        stale = [upload for upload, seen in newest.items() if seen < cutoff]
        self._s3.delete_keys([key for upload in stale for key in keys[upload]])
        return len(stale)

    def _staged(self, upload_id: str) -> dict[str, Any]:
        found = self._s3.read(self._keys.key("staging", validate_id("upload", upload_id), UPLOAD_RECORD))
        if found is None:
            raise NotFound(f"upload {upload_id!r} does not exist (discarded, used, or never staged)")
        record: dict[str, Any] = json.loads(found[0])
        return record

    def discard_upload(self, upload_id: str) -> None:
        record = self._staged(upload_id)
        self._s3.delete_keys([self._keys.key("staging", upload_id, UPLOAD_RECORD), str(record["video_key"])])

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
        """Upload a local file (or adopt a staged upload with a server-side copy), then write the record
        with If-None-Match/If-Match (the compare-and-swap loop: a concurrent publish or show change is
        kept); a new episode whose record cannot be written leaves no video behind."""
        record_key = self._keys.episode(ep_id, EPISODE_RECORD)
        placement = ShowPlacement.checked(show_id, season, episode_number)
        staged = self._staged(upload_id) if upload_id else None
        source = Path(source_path)
        if staged is None and not source.is_file():
            raise NotFound(f"video file {source_path} does not exist")
        sha = str(staged["sha256"]) if staged else sha256_file(source)
        found = self._records.read(record_key, storage_pb2.Episode)
        existing = found[0] if found is not None else None
        if existing is not None:
            if existing.video_sha256 == sha:
                if upload_id:
                    self.discard_upload(upload_id)
                return self._presented(existing)  # same video again: idempotent
            if not replace_video:
                raise AlreadyExists(
                    f"episode {ep_id!r} already exists with a different video; delete it or replace its video"
                )
        name = str(staged["video_key"]) if staged else source.name
        video_key = self._keys.episode(ep_id, f"video{video_suffix(name)}")
        what = f"store the video of episode {ep_id} at {video_key}"
        try:
            # Multipart above the threshold; s3transfer aborts the multipart upload if a part fails.
            if staged:
                extra = {"Metadata": {"sha256": sha}, "MetadataDirective": "REPLACE"}
                self._s3.copy(what, str(staged["video_key"]), video_key, extra)
            else:
                self._s3.upload_file(what, source, video_key, {"Metadata": {"sha256": sha}})
        except BaseException:
            if existing is None:
                self._s3.delete_quietly([video_key])
            raise
        video_uri = f"s3://{self.settings.bucket}/{video_key}"

        def with_video(current: storage_pb2.Episode | None) -> tuple[storage_pb2.Episode, bool]:
            # A publish or a show change since the first read is kept (the record is rebuilt on top
            # of it); another video, or the episode created or deleted meanwhile, is the caller's to retry.
            if (current.video_sha256 if current else None) != (existing.video_sha256 if existing else None):
                raise AlreadyExists(f"episode {ep_id!r} was created or changed concurrently; retry the request")
            episode = storage_pb2.Episode(
                ep_id=ep_id,
                video_uri=video_uri,
                video=video,
                video_sha256=sha,
                created_at=current.created_at if current else utc_timestamp(),
                current_run_id=current.current_run_id if current else "",
            )
            placement.replacing(current, show_named=bool(show_id)).apply(episode)
            episode.video.uri = video_uri
            return episode, True

        conflict = (
            f"episode {ep_id!r} is being changed by other writers; storing its video lost "
            f"{self.settings.record_cas_attempts} races in a row, retry it"
        )
        try:
            episode = self._records.update(record_key, storage_pb2.Episode, with_video, conflict)
        except BaseException:
            if existing is None:
                self._s3.delete_quietly([video_key])
            raise
        if existing is not None:
            old_key = key_of(existing.video_uri, self.settings.bucket)
            if old_key and old_key != video_key:
                self._s3.delete_quietly([old_key])
        if staged is not None:  # adopted: the staged copy is no longer needed
            self._s3.delete_quietly([self._keys.key("staging", upload_id, UPLOAD_RECORD), str(staged["video_key"])])
        return self._presented(episode)

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        """Local cache always; S3 objects if include_s3: the record first, so the episode stops listing and
        any publish still in flight fails its If-Match instead of re-creating it."""
        record_key = self._keys.episode(ep_id, EPISODE_RECORD)
        if not self._s3.exists(record_key):
            raise NotFound(f"episode {ep_id!r} does not exist")
        local_removed = 0
        cache = self._cache_dir(ep_id)
        if cache.is_symlink():  # not a cache this backend made: remove the link, never what it points at
            cache.unlink()
        elif cache.exists():
            remove_episode_folder(cache, ep_id)
            local_removed = 1
        if not include_s3:
            return local_removed, 0
        removed = self._s3.delete_keys([record_key])
        return local_removed, removed + self._s3.delete_prefix(self._keys.episode(ep_id) + "/")

    # ---- artifacts ------------------------------------------------------------------------------

    def _current_run(self, ep_id: str, run_id: str) -> str:
        """An explicit run id (validated), or the episode's published run."""
        if run_id:
            validate_id("run", run_id)
            self._records.episode(ep_id)
            return run_id
        current = self._records.episode(ep_id)[0].current_run_id
        if not current:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        return current

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact:
        key = self._keys.run(ep_id, run_id, validate_artifact_name(name))
        self._records.episode(ep_id)
        reader = self._s3.upload(f"upload {key}", key, chunks)
        return storage_pb2.Artifact(
            ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name),
            size_bytes=reader.size,
            sha256=reader.digest.hexdigest(),
        )

    def delete_run(self, ep_id: str, run_id: str, prefix: str) -> int:
        episode, _etag = self._records.episode(ep_id)
        if not prefix and run_id == episode.current_run_id:
            raise FailedPrecondition(f"run {run_id!r} is the current run of episode {ep_id!r}; it is kept")
        folder = self._keys.run(ep_id, run_id, validate_artifact_name(prefix.strip("/")) if prefix else "")
        return self._s3.delete_prefix(folder.rstrip("/") + "/")

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        """Validates and opens the object now (errors surface at the call), then streams it lazily."""
        validate_id("episode", ep_id)
        validate_artifact_name(name)
        run_id = self._current_run(ep_id, run_id)
        missing = NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        return self._s3.download(self._keys.run(ep_id, run_id, name), missing)

    def list_artifacts(
        self, ep_id: str, run_id: str, prefix: str, start_after: str = "", limit: int = 0
    ) -> list[storage_pb2.Artifact]:
        validate_id("episode", ep_id)
        if prefix:
            validate_artifact_name(prefix.rstrip("/"))
        if start_after:
            validate_artifact_name(start_after)
        if limit < 0:
            raise InvalidArgument(f"limit must be >= 0, got {limit}")
        try:
            run_id = self._current_run(ep_id, run_id)
        except FailedPrecondition:
            return []  # no published run yet: nothing to list, as in the local backend
        run_prefix = self._keys.run(ep_id, run_id) + "/"
        after = run_prefix + start_after if start_after else ""
        return [
            storage_pb2.Artifact(
                ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=item["Key"][len(run_prefix) :]),
                size_bytes=int(item["Size"]),
            )
            for item in self._s3.list_keys(run_prefix + prefix, after, limit)
        ]

    def artifact_url(self, ep_id: str, run_id: str, name: str, expires_s: int) -> str:
        validate_id("episode", ep_id)
        validate_artifact_name(name)
        run_id = self._current_run(ep_id, run_id)
        key = self._keys.run(ep_id, run_id, name)
        if not self._s3.exists(key):
            raise NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        return self._s3.presign(key, expires_s)

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Point episode.json at the run, as the only and last write, with compare-and-swap on its ETag.

        The manifest is checked after reading the record and before writing it, again for each new
        incarnation of the record: runs are immutable and only delete_episode removes manifests (record
        first), so a successful If-Match write can never point at a run without a manifest, even when
        the episode was deleted and created again under the same id meanwhile.
        """
        record_key = self._keys.episode(ep_id, EPISODE_RECORD)
        manifest_key = self._keys.run(ep_id, run_id, MANIFEST)

        def manifest_exists() -> None:
            if not self._s3.exists(manifest_key):
                raise FailedPrecondition(f"run {run_id!r} of episode {ep_id!r} has no {MANIFEST}; it did not finish")

        def point_at_run(episode: storage_pb2.Episode | None) -> tuple[storage_pb2.Episode, bool]:
            if episode is None:
                raise missing_episode(ep_id)
            if episode.current_run_id == run_id:
                return episode, False
            episode.current_run_id = run_id
            return episode, True

        conflict = (
            f"episode {ep_id!r} is being changed by other writers; publishing run {run_id!r} lost "
            f"{self.settings.record_cas_attempts} races in a row, retry it"
        )
        return self._presented(
            self._records.update(record_key, storage_pb2.Episode, point_at_run, conflict, guard=manifest_exists)
        )

    # ---- review log -----------------------------------------------------------------------------

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        """If-None-Match: * makes S3 the arbiter: exactly one writer creates each seq, whole or not at all."""
        validate_id("episode", ep_id)
        if not 1 <= seq <= MAX_REVIEW_RECORDS:
            raise InvalidArgument(f"review record seq must be between 1 and {MAX_REVIEW_RECORDS}, got {seq}")
        self._records.episode(ep_id)
        if not self._s3.write_conditional(self._keys.review(ep_id, seq), record, None):
            raise AlreadyExists(f"review record {seq} of episode {ep_id!r} exists; reload the review and retry")
        return seq

    def list_review_records(self, ep_id: str) -> list[tuple[int, bytes]]:
        self._records.episode(ep_id)
        records = []
        prefix = self._keys.episode(ep_id, "review") + "/"
        for item in self._s3.list_keys(prefix):
            stem = item["Key"][len(prefix) :].removesuffix(".json")
            found = self._s3.read(item["Key"]) if stem.isdigit() else None
            if found is not None:
                records.append((int(stem), found[0]))
        return records

    # ---- local cache ----------------------------------------------------------------------------

    def _cache_dir(self, ep_id: str) -> Path:
        return self.settings.local_cache_dir / "episodes" / validate_id("episode", ep_id)

    def cached_artifact(self, ep_id: str, run_id: str, name: str) -> Path:
        """A local copy of an artifact (for code that needs a file, e.g. np.load of faces.npy).

        Downloaded once per (run, name) into local_cache_dir/episodes/{ep_id}/runs/{run_id}/; run
        artifacts are immutable once the run is published, so the copy stays valid.
        """
        run_id = self._current_run(ep_id, run_id)
        path = self._cache_dir(ep_id) / "runs" / run_id / validate_artifact_name(name)
        if not path.is_file():
            atomic_write_bytes(path, self.get_artifact(ep_id, run_id, name))
        return path
