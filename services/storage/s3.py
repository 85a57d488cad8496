"""S3 backend: episodes, run artifacts and the facebank as objects in one bucket.

Key layout (also in docs/storage.md, the one place a reader should need):

    {prefix}/episodes/{ep_id}/episode.json              the record (video probe, sha256, current run)
    {prefix}/episodes/{ep_id}/video{ext}                the stored video
    {prefix}/episodes/{ep_id}/runs/{run_id}/{artifact}  every run's artifacts, kept
    {prefix}/episodes/{ep_id}/review/{seq:06d}.json     the review log, one immutable object per record
    {prefix}/facebank/{show_id}/{person_id}.json        a person and their exemplars
    {prefix}/staging/{upload_id}/video{ext}, upload.json a received video before CreateEpisode adopts it

Unlike the local backend, publishing copies nothing: a run's artifacts stay under runs/{run_id}/ and
episode.json's current_run_id says which run is current. Every write of a record (episode or person)
is a conditional PUT (If-None-Match: * to create, If-Match: <etag> to update), so concurrent writers
cannot lose each other's updates and a publish can never resurrect a deleted episode.

Credentials come only from the standard AWS chain (environment, shared config, instance or pod role);
nothing here reads them from repository files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from faceflow.v1 import common_pb2, storage_pb2
from google.protobuf import json_format

from services.common.auth import audit_name
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.ids import validate_id
from services.common.model_manifest import sha256_file
from services.storage.backend import (
    DEFAULT_SHOW,
    MAX_REVIEW_RECORDS,
    UploadLimits,
    limited,
    person_id_for,
    person_with_exemplars,
    remove_exemplar_from,
    validate_artifact_name,
    video_suffix,
)
from services.storage.local import atomic_write_bytes

MIB = 1024 * 1024
# Streaming unit for reads and hashing: large enough to amortise per-call overhead, small enough to keep
# a gRPC message (4 MiB default limit) and memory per stream bounded.
CHUNK_BYTES = 1 * MIB
# S3 rejects multipart parts below 5 MiB (except the last one).
MIN_PART_BYTES = 5 * MIB
# One ListObjectsV2/DeleteObjects call handles at most 1000 keys.
S3_PAGE_KEYS = 1000
# SigV4 presigned URLs are valid for at most 7 days.
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600
EPISODE_RECORD = "episode.json"
MANIFEST = "manifest.json"
# Written after a staged video is complete: its presence is what makes an upload id valid.
UPLOAD_RECORD = "upload.json"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Error codes that mean "the credentials or permissions are wrong": retrying cannot help.
_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}
_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.ResponseStreamingError,  # connection lost mid-download
)

T = TypeVar("T")


@dataclass(frozen=True)
class S3Settings:
    """Where and how the S3 backend stores things. Field defaults suit AWS S3; tests shrink the sizes."""

    bucket: str
    # Every key starts with this, so one bucket can hold several deployments (e.g. "faceflow-staging").
    prefix: str = "faceflow"
    # Empty: the AWS default endpoint for the region; set it for SeaweedFS/MinIO ("http://127.0.0.1:8333").
    endpoint_url: str = ""
    region: str = "us-east-1"
    # Path-style (http://host/bucket/key) works with any endpoint and bucket name; virtual-host style needs DNS.
    path_style: bool = True
    # Default lifetime of presigned GET URLs (video for the detector, artifact URLs): one hour covers a
    # long episode's decode without leaving links valid for days.
    presign_expiry_s: int = 3600
    # Attempts per request (first try included) with botocore's standard exponential backoff (base 1 s,
    # capped at 20 s, jittered) on throttling, 5xx and connection errors: 8 rides out a gateway restart.
    max_attempts: int = 8
    # Bodies at or above this size go up as multipart (parallel parts, resumable per part); smaller ones
    # in a single PUT, which is one request and cheaper.
    multipart_threshold_bytes: int = 64 * MIB
    # Size of each multipart part (S3 minimum 5 MiB); 16 MiB keeps a 10 GB video under 1000 parts.
    multipart_part_bytes: int = 16 * MIB
    # TCP connect timeout: a healthy endpoint on the same network answers in milliseconds.
    connect_timeout_s: float = 3.0
    # Per-read socket timeout: generous, because a large part upload on a slow link is still progress.
    read_timeout_s: float = 60.0
    # Attempts of the compare-and-swap loop on a record (episode.json, person) before giving up.
    record_cas_attempts: int = 32
    # Cache directory on this machine (downloaded artifacts under episodes/{ep_id}/), removed per
    # episode on delete; the storage service passes its data root, like the local backend's.
    local_cache_dir: Path = Path("data")

    def __post_init__(self) -> None:
        if not self.bucket:
            raise InvalidArgument("S3 bucket is empty: set FACEFLOW_S3_BUCKET to the bucket faceflow should use")
        if len(self.bucket) < 3:
            raise InvalidArgument(f"S3 bucket name {self.bucket!r} is too short: bucket names have 3-63 characters")
        if self.prefix:
            for part in self.prefix.split("/"):
                validate_id("S3 prefix segment", part)
        if not 1 <= self.presign_expiry_s <= MAX_PRESIGN_EXPIRY_S:
            raise InvalidArgument(f"presign_expiry_s must be 1..{MAX_PRESIGN_EXPIRY_S}, got {self.presign_expiry_s}")
        if self.max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.multipart_part_bytes < MIN_PART_BYTES:
            raise InvalidArgument(f"multipart_part_bytes must be >= {MIN_PART_BYTES} (S3's minimum part size)")
        if self.multipart_threshold_bytes < 1:
            raise InvalidArgument("multipart_threshold_bytes must be >= 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> S3Settings:
        """FACEFLOW_S3_{BUCKET,PREFIX,ENDPOINT_URL,REGION,PATH_STYLE,MAX_ATTEMPTS}; credentials: boto3's chain."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"bucket": env.get("FACEFLOW_S3_BUCKET", "")}
        for name in ("prefix", "endpoint_url", "region"):
            raw = env.get(f"FACEFLOW_S3_{name.upper()}")
            if raw is not None:
                values[name] = raw.strip()
        attempts = env.get("FACEFLOW_S3_MAX_ATTEMPTS")
        if attempts:
            try:
                values["max_attempts"] = int(attempts)
            except ValueError:
                raise InvalidArgument(f"FACEFLOW_S3_MAX_ATTEMPTS must be a whole number, got {attempts!r}") from None
        path_style = env.get("FACEFLOW_S3_PATH_STYLE")
        if path_style is not None and path_style.strip():
            flag = path_style.strip().lower()
            if flag not in _TRUE | _FALSE:
                raise InvalidArgument(f"FACEFLOW_S3_PATH_STYLE must be true or false, got {path_style!r}")
            values["path_style"] = flag in _TRUE
        if env.get("FACEFLOW_DATA_ROOT"):
            values["local_cache_dir"] = Path(env["FACEFLOW_DATA_ROOT"]).expanduser()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class _HashingReader(io.RawIOBase):
    """A file-like view of a chunk iterator that hashes and counts what boto3 reads from it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes unless the stream ends: s3transfer takes a short read for the end of the
        body, so returning one chunk at a time would silently turn every multipart upload into one PUT."""
        if size is None or size < 0:
            return self.readall()
        parts, wanted = [], size
        while wanted > 0:
            chunk = super().read(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = bytes(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self.digest.update(self._pending[:count])
        self.size += count
        self._pending = self._pending[count:]
        return count


class S3Storage:
    """StorageBackend on S3 (AWS, SeaweedFS, MinIO). Thread-safe: one boto3 client, no mutable state."""

    def __init__(
        self, settings: S3Settings, session: boto3.session.Session | None = None, limits: UploadLimits | None = None
    ) -> None:
        """`session` defaults to boto3's standard credential chain; tests pass one with explicit keys.
        `limits`: only max_bytes applies (a bucket has no free space to keep)."""
        self.settings = settings
        self.limits = limits or UploadLimits()
        session = session or boto3.session.Session()
        config = Config(
            region_name=settings.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.path_style else "virtual"},
            retries={"mode": "standard", "max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            # Enough for multipart parts in parallel plus concurrent RPCs of the storage service.
            max_pool_connections=32,
        )
        self._s3 = session.client("s3", endpoint_url=settings.endpoint_url or None, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold_bytes,
            multipart_chunksize=settings.multipart_part_bytes,
            max_concurrency=4,
        )
        self._where = f"S3 endpoint {settings.endpoint_url or 'AWS ' + settings.region} (bucket {settings.bucket!r})"

    # ---- plumbing -------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one S3 operation and translate transport/auth failures into faceflow errors.

        Retries already happened inside botocore; what is left is either permanent or an outage.
        """
        try:
            return fn()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, S3UploadFailedError) as exc:
            translated = self._translate(what, exc)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, what: str, exc: BaseException) -> Exception | None:
        """The faceflow error for a boto3/botocore failure, or None to let the caller handle it."""
        if isinstance(exc, S3UploadFailedError):  # upload_file wraps the real cause
            cause = exc.__cause__ or exc.__context__
            return self._translate(what, cause) if cause is not None else Unavailable(f"{self._where}: {exc}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return FailedPrecondition(
                f"no S3 credentials found for {self._where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a shared AWS profile, or an instance/pod role"
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return Unavailable(
                f"{self._where} cannot be reached while trying to {what} after {self.settings.max_attempts} "
                f"attempts ({type(exc).__name__}); check that the S3 server is running and FACEFLOW_S3_ENDPOINT_URL"
            )
        if not isinstance(exc, botocore.exceptions.ClientError):
            return None
        code, status = _code(exc), _status(exc)
        if code in _AUTH_CODES or status == 403:
            return FailedPrecondition(
                f"{self._where} rejected the request to {what} ({code or status}): check AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY and that this identity may read and write the bucket"
            )
        if code == "NoSuchBucket":
            return FailedPrecondition(
                f"{self._where} has no such bucket; create it (the storage service does at start-up)"
            )
        if status >= 500 or code in {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"}:
            return Unavailable(
                f"{self._where} kept failing to {what} ({code}, HTTP {status}) after "
                f"{self.settings.max_attempts} attempts; retry later"
            )
        return None

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.settings.prefix, *parts) if p)

    def _episode_key(self, ep_id: str, *rest: str) -> str:
        return self._key("episodes", validate_id("episode", ep_id), *rest)

    def _run_key(self, ep_id: str, run_id: str, name: str = "") -> str:
        return self._episode_key(ep_id, "runs", validate_id("run", run_id), name)

    def _person_key(self, show_id: str, person_id: str) -> str:
        return self._key("facebank", validate_id("show", show_id or DEFAULT_SHOW), f"{person_id}.json")

    def _presign(self, key: str, expires_s: int = 0) -> str:
        expires = expires_s or self.settings.presign_expiry_s
        if not 1 <= expires <= MAX_PRESIGN_EXPIRY_S:
            raise InvalidArgument(f"URL lifetime must be 1..{MAX_PRESIGN_EXPIRY_S} s, got {expires}")
        return str(
            self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.settings.bucket, "Key": key}, ExpiresIn=expires
            )
        )

    def _exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self._s3.head_object(Bucket=self.settings.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if _status(exc) == 404 or _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                    return False
                raise
            return True

        return self._call(f"check {key}", head)

    def _read_json(self, key: str) -> tuple[bytes, str] | None:
        """(body, ETag) of a small object, or None if it does not exist."""

        def get() -> tuple[bytes, str] | None:
            try:
                response = self._s3.get_object(Bucket=self.settings.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in {"NoSuchKey", "404"} or _status(exc) == 404:
                    return None
                raise
            return response["Body"].read(), str(response["ETag"])

        return self._call(f"read {key}", get)

    def _write_conditional(self, key: str, body: bytes, etag: str | None) -> bool:
        """PUT `body` if the object still has `etag` (None: only if it does not exist). False on a lost race."""
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}

        def put() -> bool:
            try:
                self._s3.put_object(
                    Bucket=self.settings.bucket, Key=key, Body=body, ContentType="application/json", **condition
                )
            except botocore.exceptions.ClientError as exc:
                # 412: the precondition failed; 409: a concurrent conditional write is in flight (AWS).
                if _status(exc) in {409, 412} or _code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                    return False
                raise
            return True

        return self._call(f"write {key}", put)

    def _cas_backoff(self, attempt: int) -> None:
        # Short, jittered: the competing write is a single small PUT that finishes in milliseconds.
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))

    def _delete_keys(self, keys: list[str]) -> int:
        """Batch DeleteObjects (1000 keys a call); raise if S3 refused any key."""
        removed = 0
        for start in range(0, len(keys), S3_PAGE_KEYS):
            batch = [{"Key": k} for k in keys[start : start + S3_PAGE_KEYS]]
            request = {"Bucket": self.settings.bucket, "Delete": {"Objects": batch, "Quiet": True}}
            response = self._call(f"delete {len(batch)} objects", partial(self._s3.delete_objects, **request))
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise Unavailable(
                    f"{self._where} refused to delete {len(errors)} objects (first: {first.get('Key')}: "
                    f"{first.get('Code')}); retry the delete"
                )
            removed += len(batch)
        return removed

    def _list_keys(self, prefix: str, start_after: str = "", limit: int = 0) -> Iterator[dict[str, Any]]:
        """Objects under prefix in key order, after start_after, at most limit (0: all), page by page."""
        params: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        yielded = 0
        while True:
            if limit:
                params["MaxKeys"] = min(S3_PAGE_KEYS, limit - yielded)
            page = self._call(f"list {prefix}", lambda: self._s3.list_objects_v2(**params))
            for item in page.get("Contents", []):
                yield item
                yielded += 1
                if limit and yielded >= limit:
                    return
            if not page.get("IsTruncated"):
                return
            params.pop("StartAfter", None)
            params["ContinuationToken"] = page["NextContinuationToken"]

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (start-up of the storage service); fail clearly otherwise."""
        bucket = self.settings.bucket

        def ensure() -> None:
            try:
                self._s3.head_bucket(Bucket=bucket)
                return
            except botocore.exceptions.ClientError as exc:
                if _status(exc) != 404 and _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            params: dict[str, Any] = {"Bucket": bucket}
            if self.settings.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
            try:
                self._s3.create_bucket(**params)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        self._call(f"create bucket {bucket}", ensure)

    # ---- episodes -------------------------------------------------------------------------------

    def _read_episode(self, ep_id: str) -> tuple[storage_pb2.Episode, str]:
        found = self._read_json(self._episode_key(ep_id, EPISODE_RECORD))
        if found is None:
            raise NotFound(f"episode {ep_id!r} does not exist; create it first (faceflow run VIDEO --episode {ep_id})")
        body, etag = found
        return json_format.Parse(body.decode(), storage_pb2.Episode()), etag

    def _presented(self, stored: storage_pb2.Episode) -> storage_pb2.Episode:
        """The record as callers see it: the stored s3:// video location replaced by a presigned GET URL."""
        episode = storage_pb2.Episode()
        episode.CopyFrom(stored)
        key = _key_of(stored.video_uri, self.settings.bucket)
        if key:
            url = self._presign(key)
            episode.video_uri = url
            episode.video.uri = url
        return episode

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        return self._presented(self._read_episode(ep_id)[0])

    def list_episodes(self) -> list[storage_pb2.Episode]:
        root = self._key("episodes") + "/"
        params: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": root, "Delimiter": "/"}
        episodes = []
        while True:
            page = self._call("list episodes", lambda: self._s3.list_objects_v2(**params))
            for common in page.get("CommonPrefixes", []):
                found = self._read_json(f"{common['Prefix']}{EPISODE_RECORD}")
                if found is not None:  # a prefix without a record is a leftover of a delete, not an episode
                    episodes.append(self._presented(json_format.Parse(found[0].decode(), storage_pb2.Episode())))
            if not page.get("IsTruncated"):
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
        return sorted(episodes, key=lambda e: e.ep_id)

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        """Stream a video into staging (refused past limits.max_bytes); upload.json last marks it complete."""
        upload_id = "up-" + uuid.uuid4().hex[:16]
        video_key = self._key("staging", upload_id, f"video{video_suffix(filename)}")
        reader = _HashingReader(limited(chunks, self.limits.max_bytes))
        try:
            self._call(
                f"stage {filename}",
                partial(self._s3.upload_fileobj, reader, self.settings.bucket, video_key, Config=self._transfer),
            )
            if reader.size == 0:
                raise InvalidArgument(f"the upload of {filename!r} is empty (0 bytes)")
            record = {"video_key": video_key, "size_bytes": reader.size, "sha256": reader.digest.hexdigest()}
            self._call(
                f"record upload {upload_id}",
                partial(
                    self._s3.put_object,
                    Bucket=self.settings.bucket,
                    Key=self._key("staging", upload_id, UPLOAD_RECORD),
                    Body=json.dumps(record).encode(),
                ),
            )
        except BaseException:
            self._delete_quietly([video_key, self._key("staging", upload_id, UPLOAD_RECORD)])
            raise
        return storage_pb2.StagedUpload(
            upload_id=upload_id, uri=self._presign(video_key), size_bytes=reader.size, sha256=record["sha256"]
        )

    def check_upload_capacity(self, size_bytes: int) -> int:
        """Only the size limit: a bucket has no free space to run out of (its quota is the operator's)."""
        self.limits.check_size(size_bytes)
        return self.limits.max_bytes

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than_s
        newest: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        for item in self._list_keys(self._key("staging") + "/"):
            upload = item["Key"].rsplit("/", 2)[-2]
            keys.setdefault(upload, []).append(item["Key"])
            newest[upload] = max(newest.get(upload, 0.0), item["LastModified"].timestamp())
        stale = [upload for upload, seen in newest.items() if seen < cutoff]
        self._delete_keys([key for upload in stale for key in keys[upload]])
        return len(stale)

    def _staged(self, upload_id: str) -> dict[str, Any]:
        found = self._read_json(self._key("staging", validate_id("upload", upload_id), UPLOAD_RECORD))
        if found is None:
            raise NotFound(f"upload {upload_id!r} does not exist (discarded, used, or never staged)")
        record: dict[str, Any] = json.loads(found[0])
        return record

    def discard_upload(self, upload_id: str) -> None:
        record = self._staged(upload_id)
        self._delete_keys([self._key("staging", upload_id, UPLOAD_RECORD), str(record["video_key"])])

    def create_episode(
        self,
        ep_id: str,
        source_path: str,
        video: common_pb2.VideoInfo,
        show_id: str,
        replace_video: bool,
        upload_id: str = "",
    ) -> storage_pb2.Episode:
        """Upload a local file (or adopt a staged upload with a server-side copy), then write the record
        with If-None-Match/If-Match; a new episode whose record cannot be written leaves no video behind."""
        record_key = self._episode_key(ep_id, EPISODE_RECORD)
        show_id = validate_id("show", show_id or DEFAULT_SHOW)
        staged = self._staged(upload_id) if upload_id else None
        source = Path(source_path)
        if staged is None and not source.is_file():
            raise NotFound(f"video file {source_path} does not exist")
        sha = str(staged["sha256"]) if staged else sha256_file(source)
        found = self._read_json(record_key)
        existing, etag = (None, None) if found is None else (_parse_episode(found[0]), found[1])
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
        video_key = self._episode_key(ep_id, f"video{video_suffix(name)}")
        extra = {"Metadata": {"sha256": sha}, "MetadataDirective": "REPLACE"}
        if staged:
            source_object = {"Bucket": self.settings.bucket, "Key": str(staged["video_key"])}
            # Managed copy: one CopyObject, or UploadPartCopy parts above the threshold (S3 caps copy at 5 GB).
            upload = partial(
                self._s3.copy, source_object, self.settings.bucket, video_key, ExtraArgs=extra, Config=self._transfer
            )
        else:
            upload = partial(
                self._s3.upload_file,
                str(source),
                self.settings.bucket,
                video_key,
                Config=self._transfer,
                ExtraArgs={"Metadata": {"sha256": sha}},
            )
        try:
            # Multipart above the threshold; s3transfer aborts the multipart upload if a part fails.
            self._call(f"store the video of episode {ep_id} at {video_key}", upload)
        except BaseException:
            if existing is None:
                self._delete_quietly([video_key])
            raise
        episode = storage_pb2.Episode(
            ep_id=ep_id,
            video_uri=f"s3://{self.settings.bucket}/{video_key}",
            video=video,
            video_sha256=sha,
            created_at=existing.created_at if existing else _now(),
            current_run_id=existing.current_run_id if existing else "",
            show_id=show_id,
        )
        episode.video.uri = episode.video_uri
        try:
            written = self._write_conditional(record_key, _episode_json(episode), etag)
        except BaseException:
            if existing is None:
                self._delete_quietly([video_key])
            raise
        if not written:
            if existing is None:
                self._delete_quietly([video_key])
            raise AlreadyExists(f"episode {ep_id!r} was created or changed concurrently; retry the request")
        if existing is not None:
            old_key = _key_of(existing.video_uri, self.settings.bucket)
            if old_key and old_key != video_key:
                self._delete_quietly([old_key])
        if staged is not None:  # adopted: the staged copy is no longer needed
            self._delete_quietly([self._key("staging", upload_id, UPLOAD_RECORD), str(staged["video_key"])])
        return self._presented(episode)

    def _delete_quietly(self, keys: list[str]) -> None:
        """Best-effort clean-up on a failure path: the original error matters more than this one."""
        with contextlib.suppress(Exception):
            self._delete_keys(keys)

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        """Local cache always; S3 objects if include_s3: the record first, so the episode stops listing and
        any publish still in flight fails its If-Match instead of re-creating it."""
        record_key = self._episode_key(ep_id, EPISODE_RECORD)
        if not self._exists(record_key):
            raise NotFound(f"episode {ep_id!r} does not exist")
        local_removed = 0
        cache = self._cache_dir(ep_id)
        if cache.is_symlink():  # not a cache this backend made: remove the link, never what it points at
            cache.unlink()
        elif cache.exists():
            doomed = cache.with_name(f".deleting-{ep_id}-{uuid.uuid4().hex[:8]}")
            cache.rename(doomed)
            shutil.rmtree(doomed)
            local_removed = 1
        if not include_s3:
            return local_removed, 0
        removed = self._delete_keys([record_key])
        episode_prefix = self._episode_key(ep_id) + "/"
        # A second pass catches objects a concurrent writer added after the first listing.
        for _ in range(3):
            keys = [item["Key"] for item in self._list_keys(episode_prefix)]
            if not keys:
                break
            removed += self._delete_keys(keys)
        return local_removed, removed

    # ---- artifacts ------------------------------------------------------------------------------

    def _current_run(self, ep_id: str, run_id: str) -> str:
        """An explicit run id (validated), or the episode's published run."""
        if run_id:
            validate_id("run", run_id)
            self._read_episode(ep_id)
            return run_id
        current = self._read_episode(ep_id)[0].current_run_id
        if not current:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        return current

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact:
        key = self._run_key(ep_id, run_id, validate_artifact_name(name))
        self._read_episode(ep_id)
        reader = _HashingReader(chunks)
        # upload_fileobj does one PUT below the threshold and a multipart upload above it, aborting the
        # multipart upload if anything fails, so a torn object never becomes visible.
        self._call(
            f"upload {key}",
            lambda: self._s3.upload_fileobj(reader, self.settings.bucket, key, Config=self._transfer),
        )
        return storage_pb2.Artifact(
            ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name),
            size_bytes=reader.size,
            sha256=reader.digest.hexdigest(),
        )

    def delete_run(self, ep_id: str, run_id: str, prefix: str) -> int:
        episode, _etag = self._read_episode(ep_id)
        if not prefix and run_id == episode.current_run_id:
            raise FailedPrecondition(f"run {run_id!r} is the current run of episode {ep_id!r}; it is kept")
        folder = self._run_key(ep_id, run_id, validate_artifact_name(prefix.strip("/")) if prefix else "")
        removed = 0
        for _ in range(3):  # a second pass catches objects a concurrent writer added after the first listing
            keys = [item["Key"] for item in self._list_keys(folder.rstrip("/") + "/")]
            if not keys:
                break
            removed += self._delete_keys(keys)
        return removed

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        """Validates and opens the object now (errors surface at the call), then streams it lazily."""
        validate_id("episode", ep_id)
        validate_artifact_name(name)
        run_id = self._current_run(ep_id, run_id)
        key = self._run_key(ep_id, run_id, name)

        def get() -> Any:
            try:
                return self._s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in {"NoSuchKey", "404"} or _status(exc) == 404:
                    raise NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}") from None
                raise

        body = self._call(f"read {key}", get)
        return self._stream(body, key)

    def _stream(self, body: Any, key: str) -> Iterator[bytes]:
        try:
            while chunk := self._call(f"read {key}", partial(body.read, CHUNK_BYTES)):
                yield chunk
        finally:
            body.close()

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
        run_prefix = self._run_key(ep_id, run_id) + "/"
        after = run_prefix + start_after if start_after else ""
        return [
            storage_pb2.Artifact(
                ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=item["Key"][len(run_prefix) :]),
                size_bytes=int(item["Size"]),
            )
            for item in self._list_keys(run_prefix + prefix, after, limit)
        ]

    def artifact_url(self, ep_id: str, run_id: str, name: str, expires_s: int) -> str:
        validate_id("episode", ep_id)
        validate_artifact_name(name)
        run_id = self._current_run(ep_id, run_id)
        key = self._run_key(ep_id, run_id, name)
        if not self._exists(key):
            raise NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        return self._presign(key, expires_s)

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Point episode.json at the run, as the only and last write, with compare-and-swap on its ETag.

        The manifest is checked inside the loop, immediately before each conditional write; runs are
        immutable and only delete_episode removes manifests (record first), so a successful If-Match
        write can never point at a run without a manifest.
        """
        record_key = self._episode_key(ep_id, EPISODE_RECORD)
        manifest_key = self._run_key(ep_id, run_id, MANIFEST)
        for attempt in range(self.settings.record_cas_attempts):
            episode, etag = self._read_episode(ep_id)
            if not self._exists(manifest_key):
                raise FailedPrecondition(f"run {run_id!r} of episode {ep_id!r} has no {MANIFEST}; it did not finish")
            if episode.current_run_id == run_id:
                return self._presented(episode)
            episode.current_run_id = run_id
            if self._write_conditional(record_key, _episode_json(episode), etag):
                return self._presented(episode)
            self._cas_backoff(attempt)
        raise Unavailable(
            f"episode {ep_id!r} is being changed by other writers; publishing run {run_id!r} lost "
            f"{self.settings.record_cas_attempts} races in a row, retry it"
        )

    # ---- review log -----------------------------------------------------------------------------

    def _review_key(self, ep_id: str, seq: int) -> str:
        return self._episode_key(ep_id, "review", f"{seq:06d}.json")

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        """If-None-Match: * makes S3 the arbiter: exactly one writer creates each seq, whole or not at all."""
        validate_id("episode", ep_id)
        if not 1 <= seq <= MAX_REVIEW_RECORDS:
            raise InvalidArgument(f"review record seq must be between 1 and {MAX_REVIEW_RECORDS}, got {seq}")
        self._read_episode(ep_id)
        if not self._write_conditional(self._review_key(ep_id, seq), record, None):
            raise AlreadyExists(f"review record {seq} of episode {ep_id!r} exists; reload the review and retry")
        return seq

    def list_review_records(self, ep_id: str) -> list[tuple[int, bytes]]:
        self._read_episode(ep_id)
        records = []
        prefix = self._episode_key(ep_id, "review") + "/"
        for item in self._list_keys(prefix):
            stem = item["Key"][len(prefix) :].removesuffix(".json")
            found = self._read_json(item["Key"]) if stem.isdigit() else None
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

    # ---- facebank -------------------------------------------------------------------------------

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        validate_id("show", show_id or DEFAULT_SHOW)
        by = by or audit_name()
        if not name.strip():
            raise InvalidArgument("person name is empty")
        if not exemplars:
            raise InvalidArgument(f"no usable exemplar for {name!r}: give at least one image with one clear face")
        person_id = person_id_for(name)
        key = self._person_key(show_id, person_id)
        for attempt in range(self.settings.record_cas_attempts):
            found = self._read_json(key)
            existing = json_format.Parse(found[0].decode(), storage_pb2.Person()) if found is not None else None
            person = person_with_exemplars(existing, person_id, name, show_id, exemplars, append, by, _now())
            text = json_format.MessageToJson(person, preserving_proto_field_name=True)
            if self._write_conditional(key, text.encode(), found[1] if found else None):
                return person
            self._cas_backoff(attempt)
        raise Unavailable(f"person {person_id!r} is being changed by other writers; retry adding {name!r}")

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        prefix = self._key("facebank", validate_id("show", show_id or DEFAULT_SHOW)) + "/"
        people = []
        for item in self._list_keys(prefix):
            if "/" in item["Key"][len(prefix) :] or not item["Key"].endswith(".json"):
                continue
            found = self._read_json(item["Key"])
            if found is not None:  # removed between listing and reading
                people.append(json_format.Parse(found[0].decode(), storage_pb2.Person()))
        return people

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        found = self._read_json(self._person_key(show_id, validate_id("person", person_id)))
        if found is None:
            raise NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")
        return json_format.Parse(found[0].decode(), storage_pb2.Person())

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        key = self._person_key(show_id, validate_id("person", person_id))
        for attempt in range(self.settings.record_cas_attempts):
            found = self._read_json(key)
            if found is None:
                raise NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")
            person = remove_exemplar_from(json_format.Parse(found[0].decode(), storage_pb2.Person()), exemplar_id)
            text = json_format.MessageToJson(person, preserving_proto_field_name=True)
            if self._write_conditional(key, text.encode(), found[1]):
                return person
            self._cas_backoff(attempt)
        raise Unavailable(f"person {person_id!r} is being changed by other writers; retry")

    def remove_person(self, show_id: str, person_id: str) -> int:
        person = self.get_person(show_id, person_id)
        self._delete_keys([self._person_key(show_id, person_id)])
        return len(person.exemplars)


# ---- helpers ------------------------------------------------------------------------------------


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _key_of(uri: str, bucket: str) -> str:
    """The object key of an s3://bucket/key URI stored in a record ('' for anything else)."""
    head = f"s3://{bucket}/"
    return uri[len(head) :] if uri.startswith(head) else ""


def _parse_episode(body: bytes) -> storage_pb2.Episode:
    return json_format.Parse(body.decode(), storage_pb2.Episode())


def _episode_json(episode: storage_pb2.Episode) -> bytes:
    return json_format.MessageToJson(episode, preserving_proto_field_name=True).encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
