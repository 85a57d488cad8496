"""Uploads of the local backend: videos streamed into staging/<upload_id>/ until CreateEpisode adopts
them, admitted against the data root's free space (UploadLimits.headroom_bytes stays free)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceflow.v1 import storage_pb2

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from services.common.ids import validate_id
from services.storage.backend import UploadLimits, gib, limited, video_suffix
from services.storage.local_root import DataRoot, atomic_write_bytes

STAGING_DIR = "staging"
# While an upload streams in, free space is checked again after every this many bytes: often enough
# that a full disk stops it within one window of the headroom, rarely enough to cost nothing.
SPACE_CHECK_BYTES = 64 * 1024 * 1024


class LocalStaging:
    """The staging half of the StorageBackend on a local data root (LocalStorage hands these calls here)."""

    def __init__(self, root: DataRoot, limits: UploadLimits) -> None:
        self._root = root
        self.limits = limits

    def staged(self, upload_id: str) -> Path:
        """The staged video of an upload (in its own folder, which discard_upload removes)."""
        missing = NotFound(f"upload {upload_id!r} does not exist (discarded, used, or never staged)")
        folder = self._root.path / STAGING_DIR / validate_id("upload", upload_id)
        if folder.is_symlink():  # stage_upload makes folders; a link here is not an upload
            raise missing
        for name in self._root.children(folder):
            if name.startswith("video."):
                real = self._root.real(folder / name)
                if real is not None and real.is_file():
                    return folder / name
        raise missing

    def _staging_bytes(self) -> int:
        """Bytes in staging now: uploads streaming in, and staged ones that CreateEpisode will copy."""
        return sum(real.stat().st_size for _name, real in self._root.files(self._root.path / STAGING_DIR))

    def upload_capacity(self) -> tuple[int, int, int]:
        """(largest upload taken now, free bytes of the data root's filesystem, bytes in staging)."""
        free = shutil.disk_usage(self._root.path).free
        staging = self._staging_bytes()
        room = free - staging - self.limits.headroom_bytes
        return max(0, min(self.limits.max_bytes, room)), free, staging

    def check_upload_capacity(self, size_bytes: int) -> int:
        self.limits.check_size(size_bytes)
        fits, free, staging = self.upload_capacity()
        if size_bytes > fits:
            held = f" ({gib(staging)} more is held by uploads in staging)" if staging else ""
            raise ResourceExhausted(
                f"the store has {gib(max(0, free - staging))} free{held}; an upload of {gib(size_bytes)} "
                f"would leave less than the {gib(self.limits.headroom_bytes)} headroom"
            )
        return fits

    def _within_headroom(self, filename: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass chunks through, stopping (ResourceExhausted) when a chunk would take the disk below the
        headroom; checked on the first chunk and then every SPACE_CHECK_BYTES."""
        received, next_check = 0, 0
        for chunk in chunks:
            if received >= next_check:
                free = shutil.disk_usage(self._root.path).free
                if free - len(chunk) < self.limits.headroom_bytes:
                    raise ResourceExhausted(
                        f"the store ran out of room while receiving {filename!r}: {gib(free)} is free and "
                        f"{gib(self.limits.headroom_bytes)} must stay free; the upload was dropped, retry later"
                    )
                next_check = received + SPACE_CHECK_BYTES
            received += len(chunk)
            yield chunk

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        upload_id = "up-" + uuid.uuid4().hex[:16]
        staging = self._root.inside(
            self._root.path / STAGING_DIR,
            FailedPrecondition("the staging folder leads out of the data root; uploads are off"),
        )
        target = staging / upload_id / f"video{video_suffix(filename)}"
        try:
            received = self._within_headroom(filename, limited(chunks, self.limits.max_bytes))
            size, sha = atomic_write_bytes(target, received)
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        if size == 0:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise InvalidArgument(f"the upload of {filename!r} is empty (0 bytes)")
        return storage_pb2.StagedUpload(upload_id=upload_id, uri=str(target), size_bytes=size, sha256=sha)

    def discard_upload(self, upload_id: str) -> None:
        self._root.remove(self.staged(upload_id).parent)

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        """Removes stale upload folders (and stale links in their place: the link, not its target)."""
        cutoff = (time.time() if now is None else now) - older_than_s
        staging = self._root.path / STAGING_DIR
        swept = 0
        for name in self._root.children(staging):
            entry = staging / name
            if not name.startswith("up-"):
                continue
            # lstat everywhere: the age of a link is its own, and a linked folder is never walked.
            times = [entry.lstat().st_mtime]
            if not entry.is_symlink():
                for current, _dirs, files in os.walk(entry):
                    times += [Path(current, f).lstat().st_mtime for f in files]
            if max(times) < cutoff and self._root.remove(entry):
                swept += 1
        return swept
