"""Which videos the detector may open: only what the storage service handed out.

The detector decodes videos itself (it opens paths and fetches URLs with FFmpeg), so an unchecked
`video_uri` would let a caller read any file the process can read, or make it fetch any URL its
network reaches. It opens:
- local files under the data root (the local backend's episodes and staged uploads), or anywhere on
  this disk when allow_local_sources is on (the local stack, whose only callers are this machine's
  user through the orchestrator);
- URLs under the storage service's own object store (presigned S3 GETs of the configured bucket),
  compared by scheme, host and path prefix after parsing, never as plain strings.
The refusal is one sentence that names no path and does not tell a missing file from a forbidden one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from services.common.config import Settings
from services.common.errors import PermissionDenied

REFUSED = "the detector opens only videos handed out by the storage service (uploads and stored episodes)"


def is_url(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


@dataclass(frozen=True)
class UrlPrefix:
    scheme: str
    netloc: str
    path: str  # always ends with "/"

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        parts = urlsplit(text)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme.lower(), parts.netloc.lower(), path)

    def admits(self, url: str) -> bool:
        parts = urlsplit(url)
        segments = parts.path.split("/")
        if ".." in segments or "." in segments or "@" in parts.netloc:
            return False
        return (
            parts.scheme.lower() == self.scheme
            and parts.netloc.lower() == self.netloc
            and parts.path.startswith(self.path)
        )


def object_store_prefixes(settings: Settings) -> tuple[UrlPrefix, ...]:
    """URL prefixes of the configured bucket: path-style at the endpoint, and virtual-hosted style."""
    bucket = settings.s3_bucket
    if not bucket:
        return ()
    endpoint = settings.s3_endpoint_url.rstrip("/")
    region = settings.s3_region
    if endpoint:
        parts = urlsplit(endpoint)
        texts = [f"{endpoint}/{bucket}/", f"{parts.scheme}://{bucket}.{parts.netloc}{parts.path}/"]
    else:
        texts = [
            f"https://{bucket}.s3.amazonaws.com/",
            f"https://{bucket}.s3.{region}.amazonaws.com/",
            f"https://s3.{region}.amazonaws.com/{bucket}/",
            f"https://s3.amazonaws.com/{bucket}/",
        ]
    return tuple(UrlPrefix.parse(t) for t in texts)


@dataclass(frozen=True)
class VideoSources:
    data_root: Path
    allow_local: bool
    url_prefixes: tuple[UrlPrefix, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> VideoSources:
        return cls(
            Path(os.path.realpath(settings.data_root)),
            settings.allow_local_sources,
            object_store_prefixes(settings),
        )

    def check(self, uri: str) -> None:
        """Raise PermissionDenied unless the detector may open `uri`."""
        if is_url(uri):
            if not any(prefix.admits(uri) for prefix in self.url_prefixes):
                raise PermissionDenied(REFUSED)
            return
        path = local_path(uri)
        # Absolute paths only: FFmpeg reads "concat:", "subfile," and other protocol prefixes otherwise.
        if not path.startswith("/"):
            raise PermissionDenied(REFUSED)
        if self.allow_local:
            return
        real = Path(os.path.realpath(path))
        if real != self.data_root and self.data_root not in real.parents:
            raise PermissionDenied(REFUSED)
