"""The bucket as the S3 backend talks to it: one boto3 client with botocore's retries, every failure
turned into a faceflow error, and the object operations the backend is built from (conditional
writes, paged listing and deleting, streamed uploads and downloads, presigned URLs).

Credentials come only from the standard AWS chain (environment, shared config, instance or pod role);
nothing here reads them from repository files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.storage.backend import CHUNK_BYTES
from services.storage.s3_settings import MAX_PRESIGN_EXPIRY_S, S3Settings

# One ListObjectsV2/DeleteObjects call handles at most 1000 keys.
S3_PAGE_KEYS = 1000
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


class SmallObject(NamedTuple):
    """A small object as read: its bytes, ETag and user metadata (x-amz-meta-*)."""

    body: bytes
    etag: str
    metadata: dict[str, str]


class HashingReader(io.RawIOBase):
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


class S3Transport:
    """The objects of one bucket through one boto3 client. Thread-safe: no mutable state."""

    def __init__(self, settings: S3Settings, session: boto3.session.Session | None = None) -> None:
        """`session` defaults to boto3's standard credential chain; tests pass one with explicit keys."""
        self.settings = settings
        self.bucket = settings.bucket
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
        self.client = session.client("s3", endpoint_url=settings.endpoint_url or None, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold_bytes,
            multipart_chunksize=settings.multipart_part_bytes,
            max_concurrency=4,
        )
        self.where = f"S3 endpoint {settings.endpoint_url or 'AWS ' + settings.region} (bucket {settings.bucket!r})"

    # ---- errors ---------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
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
            return self._translate(what, cause) if cause is not None else Unavailable(f"{self.where}: {exc}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return FailedPrecondition(
                f"no S3 credentials found for {self.where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a shared AWS profile, or an instance/pod role"
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return Unavailable(
                f"{self.where} cannot be reached while trying to {what} after {self.settings.max_attempts} "
                f"attempts ({type(exc).__name__}); check that the S3 server is running and FACEFLOW_S3_ENDPOINT_URL"
            )
        if not isinstance(exc, botocore.exceptions.ClientError):
            return None
        code, status = _code(exc), _status(exc)
        if code in _AUTH_CODES or status == 403:
            return FailedPrecondition(
                f"{self.where} rejected the request to {what} ({code or status}): check AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY and that this identity may read and write the bucket"
            )
        if code == "NoSuchBucket":
            return FailedPrecondition(
                f"{self.where} has no such bucket; create it (the storage service does at start-up)"
            )
        if status >= 500 or code in {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"}:
            return Unavailable(
                f"{self.where} kept failing to {what} ({code}, HTTP {status}) after "
                f"{self.settings.max_attempts} attempts; retry later"
            )
        return None

    # ---- single objects -------------------------------------------------------------------------

    def presign(self, key: str, expires_s: int = 0) -> str:
        expires = expires_s or self.settings.presign_expiry_s
        if not 1 <= expires <= MAX_PRESIGN_EXPIRY_S:
            raise InvalidArgument(f"URL lifetime must be 1..{MAX_PRESIGN_EXPIRY_S} s, got {expires}")
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
            )
        )

    def exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if _status(exc) == 404 or _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                    return False
                raise
            return True

        return self.call(f"check {key}", head)

    def read(self, key: str) -> SmallObject | None:
        """A small object, or None if it does not exist."""

        def get() -> SmallObject | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in {"NoSuchKey", "404"} or _status(exc) == 404:
                    return None
                raise
            return SmallObject(response["Body"].read(), str(response["ETag"]), dict(response.get("Metadata") or {}))

        return self.call(f"read {key}", get)

    def put(self, what: str, key: str, body: bytes) -> None:
        """An unconditional PUT of a small object."""
        self.call(what, partial(self.client.put_object, Bucket=self.bucket, Key=key, Body=body))

    def write_conditional(
        self, key: str, body: bytes, etag: str | None, metadata: dict[str, str] | None = None
    ) -> bool:
        """PUT `body` (with user `metadata`) if the object still has `etag` (None: only if it does not
        exist). False on a lost race."""
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        if metadata:
            condition["Metadata"] = metadata

        def put() -> bool:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **condition
                )
            except botocore.exceptions.ClientError as exc:
                # 412: the precondition failed; 409: a concurrent conditional write is in flight (AWS).
                if _status(exc) in {409, 412} or _code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                    return False
                raise
            return True

        return self.call(f"write {key}", put)

    def upload(self, what: str, key: str, chunks: Iterable[bytes]) -> HashingReader:
        """Stream chunks into `key`; the reader returned has their size and sha256. upload_fileobj does one
        PUT below the threshold and a multipart upload above it, aborting the multipart upload if anything
        fails, so a torn object never becomes visible."""
        reader = HashingReader(chunks)
        self.call(what, partial(self.client.upload_fileobj, reader, self.bucket, key, Config=self._transfer))
        return reader

    def upload_file(self, what: str, path: Path, key: str, extra: dict[str, Any]) -> None:
        """A local file into `key`, multipart above the threshold."""
        self.call(
            what, partial(self.client.upload_file, str(path), self.bucket, key, Config=self._transfer, ExtraArgs=extra)
        )

    def copy(self, what: str, source_key: str, key: str, extra: dict[str, Any]) -> None:
        """Managed server-side copy: one CopyObject, or UploadPartCopy parts above the threshold (S3 caps
        CopyObject at 5 GB)."""
        source = {"Bucket": self.bucket, "Key": source_key}
        self.call(what, partial(self.client.copy, source, self.bucket, key, ExtraArgs=extra, Config=self._transfer))

    def download(self, key: str, missing: Exception) -> Iterator[bytes]:
        """Opens the object now (`missing` if it does not exist: errors surface at the call), then
        streams it lazily in CHUNK_BYTES pieces."""

        def get() -> Any:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in {"NoSuchKey", "404"} or _status(exc) == 404:
                    raise missing from None
                raise

        return self._stream(self.call(f"read {key}", get), key)

    def _stream(self, body: Any, key: str) -> Iterator[bytes]:
        try:
            while chunk := self.call(f"read {key}", partial(body.read, CHUNK_BYTES)):
                yield chunk
        finally:
            body.close()

    # ---- many objects ---------------------------------------------------------------------------

    def delete_keys(self, keys: list[str]) -> int:
        """Batch DeleteObjects (1000 keys a call); raise if S3 refused any key."""
        removed = 0
        for start in range(0, len(keys), S3_PAGE_KEYS):
            batch = [{"Key": k} for k in keys[start : start + S3_PAGE_KEYS]]
            request = {"Bucket": self.bucket, "Delete": {"Objects": batch, "Quiet": True}}
            response = self.call(f"delete {len(batch)} objects", partial(self.client.delete_objects, **request))
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise Unavailable(
                    f"{self.where} refused to delete {len(errors)} objects (first: {first.get('Key')}: "
                    f"{first.get('Code')}); retry the delete"
                )
            removed += len(batch)
        return removed

    def delete_quietly(self, keys: list[str]) -> None:
        """Best-effort clean-up on a failure path: the original error matters more than this one."""
        with contextlib.suppress(Exception):
            self.delete_keys(keys)

    def delete_prefix(self, prefix: str) -> int:
        """Every object under prefix; a second pass catches objects a concurrent writer added after the
        first listing. The count removed."""
        removed = 0
        for _ in range(3):
            keys = [item["Key"] for item in self.list_keys(prefix)]
            if not keys:
                break
            removed += self.delete_keys(keys)
        return removed

    def list_keys(self, prefix: str, start_after: str = "", limit: int = 0) -> Iterator[dict[str, Any]]:
        """Objects under prefix in key order, after start_after, at most limit (0: all), page by page."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        yielded = 0
        while True:
            if limit:
                params["MaxKeys"] = min(S3_PAGE_KEYS, limit - yielded)
            page = self.call(f"list {prefix}", lambda: self.client.list_objects_v2(**params))
            for item in page.get("Contents", []):
                yield item
                yielded += 1
                if limit and yielded >= limit:
                    return
            if not page.get("IsTruncated"):
                return
            params.pop("StartAfter", None)
            params["ContinuationToken"] = page["NextContinuationToken"]

    def list_folders(self, what: str, prefix: str) -> Iterator[str]:
        """The "folders" right under prefix (common prefixes at the next "/"), page by page."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self.call(what, lambda: self.client.list_objects_v2(**params))
            for common in page.get("CommonPrefixes", []):
                yield str(common["Prefix"])
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (start-up of the storage service); fail clearly otherwise."""
        bucket = self.bucket

        def ensure() -> None:
            try:
                self.client.head_bucket(Bucket=bucket)
                return
            except botocore.exceptions.ClientError as exc:
                if _status(exc) != 404 and _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            params: dict[str, Any] = {"Bucket": bucket}
            if self.settings.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
            try:
                self.client.create_bucket(**params)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        self.call(f"create bucket {bucket}", ensure)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
