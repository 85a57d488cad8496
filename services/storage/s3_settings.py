"""Settings of the S3 backend: where it stores things (from the service Settings, FACEFLOW_S3_*) and
how (sizes, timeouts, attempts), validated once when they are made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.ids import validate_id

MIB = 1024 * 1024
# S3 rejects multipart parts below 5 MiB (except the last one).
MIN_PART_BYTES = 5 * MIB
# SigV4 presigned URLs are valid for at most 7 days.
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class S3Settings:
    """Where and how the S3 backend stores things. Field defaults suit AWS S3; tests shrink the sizes.
    bucket, prefix, endpoint_url, region, path_style and max_attempts default (and are documented) as
    the s3_* fields of services.common.config.Settings."""

    bucket: str
    # Every key starts with this, so one bucket can hold several deployments (e.g. "faceflow-staging").
    prefix: str = Settings.s3_prefix
    # Empty: the AWS default endpoint for the region; set it for SeaweedFS/MinIO ("http://127.0.0.1:8333").
    endpoint_url: str = Settings.s3_endpoint_url
    region: str = Settings.s3_region
    path_style: bool = Settings.s3_path_style
    # Default lifetime of presigned GET URLs (video for the detector, artifact URLs): one hour covers a
    # long episode's decode without leaving links valid for days.
    presign_expiry_s: int = 3600
    # Attempts per request (first try included) with botocore's standard exponential backoff (base 1 s,
    # capped at 20 s, jittered) on throttling, 5xx and connection errors: 8 rides out a gateway restart.
    max_attempts: int = Settings.s3_max_attempts
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
    local_cache_dir: Path = Settings.data_root

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
    def from_settings(cls, settings: Settings, **overrides: Any) -> S3Settings:
        """The s3_* fields of the service settings, the data root as cache; then non-None overrides."""
        values: dict[str, Any] = {
            "bucket": settings.s3_bucket,
            "prefix": settings.s3_prefix.strip(),
            "endpoint_url": settings.s3_endpoint_url.strip(),
            "region": settings.s3_region.strip(),
            "path_style": settings.s3_path_style,
            "max_attempts": settings.s3_max_attempts,
            "local_cache_dir": settings.data_root,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> S3Settings:
        """FACEFLOW_S3_{BUCKET,PREFIX,ENDPOINT_URL,REGION,PATH_STYLE,MAX_ATTEMPTS} and FACEFLOW_DATA_ROOT,
        read by Settings.from_env; credentials: boto3's chain."""
        return cls.from_settings(Settings.from_env(env), **overrides)
