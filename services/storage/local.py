"""Local filesystem backend. Layout under the data root (documented in docs/storage.md):

    episodes/<ep_id>/episode.json          episode record (video, current run)
    episodes/<ep_id>/video.<ext>           the stored video
    episodes/<ep_id>/runs/<run_id>/...     every run's artifacts, kept
    episodes/<ep_id>/<artifact>            the published (current) run's artifacts: the output contract
    facebank/<show_id>/<person_id>.json    a person and their exemplars (embeddings tagged with model id)

Every file is written to a temporary name and renamed into place, so a crash never leaves a torn file.

Nothing here follows a symlink out of the data root: every path is checked by one gate,
`LocalStorage._inside_root`, and files are read by opening each folder down from the root with
O_NOFOLLOW (`_open_read`). A link that leads out is treated as absent: never read, served, listed,
written or deleted through (docs/storage.md, "Symlinks"). Links that stay inside the root are followed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from faceflow.v1 import common_pb2, storage_pb2
from google.protobuf import json_format

from services.common.auth import audit_name
from services.common.errors import (
    AlreadyExists,
    FaceflowError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.common.ids import validate_id
from services.common.model_manifest import sha256_file
from services.storage.backend import (
    DEFAULT_SHOW,
    MAX_REVIEW_RECORDS,
    UploadLimits,
    gib,
    limited,
    person_id_for,
    person_with_exemplars,
    remove_exemplar_from,
    validate_artifact_name,
    video_suffix,
)
from services.storage.file_server import UrlSigner

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
EPISODE_RECORD = "episode.json"
RUNS_DIR = "runs"
REVIEW_DIR = "review"
STAGING_DIR = "staging"
MANIFEST = "manifest.json"
# While an upload streams in, free space is checked again after every this many bytes: often enough
# that a full disk stops it within one window of the headroom, rarely enough to cost nothing.
SPACE_CHECK_BYTES = 64 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the root must not hang the reader (no effect on files).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def atomic_write_bytes(path: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write chunks to a temp file beside `path`, fsync, rename; return (size, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


URL_PREFIX = "/artifacts/"


class LocalStorage:
    def __init__(
        self, root: Path, signer: UrlSigner | None = None, base_url: str = "", limits: UploadLimits | None = None
    ) -> None:
        self.root = root.resolve()  # the root itself may be a link: it is resolved once, here
        self._signer = signer or UrlSigner()
        self.limits = limits or UploadLimits()
        # Set by the storage service once its file server is bound (artifact_url needs it).
        self.base_url = base_url
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        (self.root / "facebank").mkdir(parents=True, exist_ok=True)
        # Guards read-modify-write of records within this process (one storage replica per data root).
        self._lock = threading.RLock()

    # ---- the data root: the one gate every path goes through ------------------------------------

    def _real(self, path: Path) -> Path | None:
        """`path` with every symlink resolved, if that is still under the data root; else None."""
        real = Path(os.path.realpath(path))
        if real.is_relative_to(self.root):
            return real
        # The path relative to the root only: where the link points is nobody's business.
        log.warning("refused a path that leads out of the data root", extra={"path": os.path.relpath(path, self.root)})
        return None

    def _inside_root(self, path: Path, refusal: FaceflowError) -> Path:
        """`path` resolved (see _real), or raise `refusal`: NotFound for reads, deletes and listings
        (a link out of the root is not there as far as faceflow is concerned), FailedPrecondition for
        writes. Its sentence names the episode/artifact/person, never the link's target."""
        real = self._real(path)
        if real is None:
            raise refusal
        return real

    def _open_read(self, path: Path, refusal: FaceflowError) -> BinaryIO:
        """Open a regular file for reading without following any link: the path is resolved and checked
        (_inside_root), then every folder is opened down from the root with O_NOFOLLOW, so a link
        swapped in after the check is refused too. Anything missing, a link or not a file: `refusal`."""
        parts = self._inside_root(path, refusal).relative_to(self.root).parts
        if not parts:
            raise refusal
        folder = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=folder)
                os.close(folder)
                folder = inner
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
        except OSError as error:
            if isinstance(error, (FileNotFoundError, NotADirectoryError)) or error.errno == errno.ELOOP:
                raise refusal from None
            raise
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise refusal
        return os.fdopen(fd, "rb")

    def _read_bytes(self, path: Path, refusal: FaceflowError) -> bytes:
        with self._open_read(path, refusal) as stream:
            return stream.read()

    def _write_file(self, path: Path, chunks: Iterable[bytes], refusal: FaceflowError) -> tuple[int, str]:
        """atomic_write_bytes into the resolved folder of `path`; a link in place of the file itself is
        replaced by the new file (rename does not follow it), never written through."""
        folder = self._inside_root(path.parent, refusal)
        return atomic_write_bytes(folder / path.name, chunks)

    def _remove(self, path: Path) -> bool:
        """Delete a file or folder tree inside the root; a link is unlinked, never what it points at
        (rmtree removes the links inside a tree, it does not descend them). False if nothing was there."""
        folder = self._real(path.parent)
        if folder is None:
            return False
        entry = folder / path.name
        if entry.is_symlink() or (entry.exists() and not entry.is_dir()):
            entry.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            return False
        return True

    def _files(self, folder: Path) -> Iterator[tuple[str, Path]]:
        """(name relative to folder, resolved path) of the files under folder, dot-files skipped: linked
        folders are never entered, linked files only kept when they resolve to a file inside the root."""
        top = self._real(folder)
        if top is None or not top.is_dir():
            return
        for current, _dirs, names in os.walk(top):  # followlinks=False: a linked folder is listed, not walked
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(current, name)
                real = path if not path.is_symlink() else self._real(path)
                if real is not None and real.is_file():
                    yield path.relative_to(top).as_posix(), real

    def _children(self, folder: Path) -> list[str]:
        """Sorted entry names of a folder inside the root (none if it is missing or leads out)."""
        real = self._real(folder)
        if real is None or not real.is_dir():
            return []
        return sorted(os.listdir(real))

    # ---- episodes -------------------------------------------------------------------------------

    def _episode_dir(self, ep_id: str) -> Path:
        return self.root / "episodes" / validate_id("episode", ep_id)

    def _write_record(self, ep: storage_pb2.Episode) -> None:
        text = json_format.MessageToJson(ep, preserving_proto_field_name=True)
        refusal = FailedPrecondition(f"episode {ep.ep_id!r} cannot be written: its folder leads out of the data root")
        self._write_file(self._episode_dir(ep.ep_id) / EPISODE_RECORD, [text.encode()], refusal)

    def _find_episode(self, ep_id: str) -> storage_pb2.Episode | None:
        try:
            body = self._read_bytes(self._episode_dir(ep_id) / EPISODE_RECORD, NotFound(""))
        except NotFound:
            return None
        return json_format.Parse(body, storage_pb2.Episode())

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        episode = self._find_episode(ep_id)
        if episode is None:
            raise NotFound(f"episode {ep_id!r} does not exist; create it first (faceflow run VIDEO --episode {ep_id})")
        return episode

    def _staged(self, upload_id: str) -> Path:
        """The staged video of an upload (in its own folder, which discard_upload removes)."""
        missing = NotFound(f"upload {upload_id!r} does not exist (discarded, used, or never staged)")
        folder = self.root / STAGING_DIR / validate_id("upload", upload_id)
        if folder.is_symlink():  # stage_upload makes folders; a link here is not an upload
            raise missing
        for name in self._children(folder):
            if name.startswith("video."):
                real = self._real(folder / name)
                if real is not None and real.is_file():
                    return folder / name
        raise missing

    def _staging_bytes(self) -> int:
        """Bytes in staging now: uploads streaming in, and staged ones that CreateEpisode will copy."""
        return sum(real.stat().st_size for _name, real in self._files(self.root / STAGING_DIR))

    def upload_capacity(self) -> tuple[int, int, int]:
        """(largest upload taken now, free bytes of the data root's filesystem, bytes in staging)."""
        free = shutil.disk_usage(self.root).free
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
                free = shutil.disk_usage(self.root).free
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
        staging = self._inside_root(
            self.root / STAGING_DIR,
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
        self._remove(self._staged(upload_id).parent)

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        """Removes stale upload folders (and stale links in their place: the link, not its target)."""
        cutoff = (time.time() if now is None else now) - older_than_s
        staging = self.root / STAGING_DIR
        swept = 0
        for name in self._children(staging):
            entry = staging / name
            if not name.startswith("up-"):
                continue
            # lstat everywhere: the age of a link is its own, and a linked folder is never walked.
            times = [entry.lstat().st_mtime]
            if not entry.is_symlink():
                for current, _dirs, files in os.walk(entry):
                    times += [Path(current, f).lstat().st_mtime for f in files]
            if max(times) < cutoff and self._remove(entry):
                swept += 1
        return swept

    def create_episode(
        self,
        ep_id: str,
        source_path: str,
        video: common_pb2.VideoInfo,
        show_id: str,
        replace_video: bool,
        upload_id: str = "",
    ) -> storage_pb2.Episode:
        directory = self._inside_root(
            self._episode_dir(ep_id),
            FailedPrecondition(f"episode {ep_id!r} cannot be created: its folder leads out of the data root"),
        )
        show_id = validate_id("show", show_id or DEFAULT_SHOW)
        source = self._staged(upload_id) if upload_id else Path(source_path)
        if not source.is_file():
            raise NotFound(f"video file {source_path} does not exist")
        with self._lock:
            existing = self._find_episode(ep_id)
            sha = sha256_file(source)
            if existing is not None:
                if existing.video_sha256 == sha:
                    if upload_id:
                        self.discard_upload(upload_id)
                    return existing  # same video again: idempotent
                if not replace_video:
                    raise AlreadyExists(
                        f"episode {ep_id!r} already exists with a different video; delete it or replace its video"
                    )
            created_dir = not directory.exists()
            try:
                target = directory / f"video{video_suffix(source.name)}"
                with source.open("rb") as stream:
                    atomic_write_bytes(target, iter(lambda: stream.read(CHUNK_BYTES), b""))
                episode = storage_pb2.Episode(
                    ep_id=ep_id,
                    video_uri=str(target),
                    video=video,
                    video_sha256=sha,
                    created_at=existing.created_at if existing else _now(),
                    current_run_id=existing.current_run_id if existing else "",
                    show_id=show_id,
                )
                episode.video.uri = str(target)
                self._write_record(episode)
                for older in directory.glob("video.*"):  # a replaced video of another container
                    if older != target:
                        older.unlink()
                if upload_id:
                    self.discard_upload(upload_id)
            except BaseException:
                if created_dir:
                    shutil.rmtree(directory, ignore_errors=True)
                raise
            return episode

    def list_episodes(self) -> list[storage_pb2.Episode]:
        episodes = []
        for name in self._children(self.root / "episodes"):
            if name.startswith("."):  # .deleting-* folders on their way out
                continue
            try:
                found = self._find_episode(name)
            except InvalidArgument:  # not an episode id: not faceflow's
                continue
            if found is not None:
                episodes.append(found)
        return episodes

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        missing = NotFound(f"episode {ep_id!r} does not exist")
        directory = self._episode_dir(ep_id)
        with self._lock:
            episodes = self._inside_root(directory.parent, missing)
            entry = episodes / directory.name
            if entry.is_symlink():
                # Not a folder faceflow made: remove the link, never what it points at.
                entry.unlink()
                log.warning("an episode folder was a link; removed the link only", extra={"ep_id": ep_id})
                return 0, 0
            if not entry.is_dir():
                raise missing
            # Rename first so a crash mid-delete never leaves a half-deleted episode that still lists.
            doomed = entry.with_name(f".deleting-{ep_id}-{uuid.uuid4().hex[:8]}")
            entry.rename(doomed)
            shutil.rmtree(doomed)  # removes links inside the tree, never descends them
        return 1, 0  # the local backend has no remote objects

    # ---- artifacts ------------------------------------------------------------------------------

    def _run_dir(self, ep_id: str, run_id: str) -> Path:
        return self._episode_dir(ep_id) / RUNS_DIR / validate_id("run", run_id)

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact:
        self.get_episode(ep_id)
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        refusal = FailedPrecondition(
            f"artifact {name!r} of run {run_id!r} of episode {ep_id!r} cannot be written: "
            "a folder on its path leads out of the data root"
        )
        size, sha = self._write_file(path, chunks, refusal)
        return storage_pb2.Artifact(
            ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name), size_bytes=size, sha256=sha
        )

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        missing = NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        with self._open_read(path, missing) as stream:
            yield from iter(lambda: stream.read(CHUNK_BYTES), b"")

    def list_artifacts(
        self, ep_id: str, run_id: str, prefix: str, start_after: str = "", limit: int = 0
    ) -> list[storage_pb2.Artifact]:
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            return []
        run_dir = self._run_dir(ep_id, run_id)
        # Walk only the folder the prefix names (crops of one track, say), not the whole run.
        under = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        found = {under + name: real for name, real in self._files(run_dir / under)}
        names = sorted(n for n in found if n.startswith(prefix) and n > start_after)
        if limit > 0:
            names = names[:limit]
        return [
            storage_pb2.Artifact(
                ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name),
                size_bytes=found[name].stat().st_size,
            )
            for name in names
        ]

    def artifact_url(self, ep_id: str, run_id: str, name: str, expires_s: int) -> str:
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        missing = NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        if not self._inside_root(path, missing).is_file():
            raise missing
        if not self.base_url:
            raise FailedPrecondition("this storage service serves no artifact URLs (its file server is off)")
        return self._signer.sign(self.base_url, f"{URL_PREFIX}{ep_id}/{run_id}/{name}", expires_s)

    def resolve_url_path(self, url_path: str) -> Path | None:
        """The file a signed URL path names, or None for anything malformed (never outside the root)."""
        if not url_path.startswith(URL_PREFIX):
            return None
        try:
            ep_id, run_id, name = url_path.removeprefix(URL_PREFIX).split("/", 2)
            return self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        except (ValueError, FaceflowError):
            return None

    def open_url_path(self, url_path: str) -> BinaryIO | None:
        """The file a signed URL names, open for reading, or None (malformed, missing, or a link out of
        the root): what the file server serves, opened with the same gate as GetArtifact."""
        path = self.resolve_url_path(url_path)
        if path is None:
            return None
        try:
            return self._open_read(path, NotFound(""))
        except NotFound:
            return None

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Make a run the current outputs: link its files into the episode folder, manifest.json last."""
        with self._lock:
            episode = self.get_episode(ep_id)
            run_dir = self._run_dir(ep_id, run_id)
            files = dict(self._files(run_dir))  # links out of the root are not part of the run
            if MANIFEST not in files:
                raise FailedPrecondition(f"run {run_id!r} of episode {ep_id!r} has no {MANIFEST}; it did not finish")
            directory = self._inside_root(self._episode_dir(ep_id), NotFound(f"episode {ep_id!r} does not exist"))
            published = set()
            # The manifest last: readers key on it.
            for name in sorted(files, key=lambda n: n.rsplit("/", 1)[-1] == MANIFEST):
                published.add(name.split("/")[0])
                folder = self._inside_root(
                    (directory / name).parent,
                    FailedPrecondition(
                        f"run {run_id!r} of episode {ep_id!r} cannot be published: the folder of {name!r} in "
                        "the episode leads out of the data root; remove that link"
                    ),
                )
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / name.rsplit("/", 1)[-1]
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
                try:
                    # Run files are immutable once written: a hard link is a free copy. Of the resolved
                    # file, never of a link (os.link would otherwise link whatever it points at).
                    os.link(files[name], tmp, follow_symlinks=False)
                except OSError:
                    shutil.copy2(files[name], tmp, follow_symlinks=False)
                os.replace(tmp, target)
            keep = published | {EPISODE_RECORD, RUNS_DIR, REVIEW_DIR}
            keep |= {n for n in self._children(directory) if n.startswith("video.")}
            for stale in self._children(directory):  # outputs of the previous run that this run did not write
                if stale not in keep and not stale.startswith("."):
                    self._remove(directory / stale)
            episode.current_run_id = run_id
            self._write_record(episode)
            return episode

    def delete_run(self, ep_id: str, run_id: str, prefix: str) -> int:
        with self._lock:
            episode = self.get_episode(ep_id)
            if not prefix and run_id == episode.current_run_id:
                raise FailedPrecondition(f"run {run_id!r} is the current run of episode {ep_id!r}; it is kept")
            run_dir = self._run_dir(ep_id, run_id)
            target = run_dir / validate_artifact_name(prefix.strip("/")) if prefix else run_dir
            removed = sum(1 for _ in self._files(target))
            self._remove(target)
            return removed

    # ---- review log -----------------------------------------------------------------------------

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        self.get_episode(ep_id)
        if not 1 <= seq <= MAX_REVIEW_RECORDS:
            raise InvalidArgument(f"review record seq must be between 1 and {MAX_REVIEW_RECORDS}, got {seq}")
        folder = self._inside_root(
            self._episode_dir(ep_id) / REVIEW_DIR,
            FailedPrecondition(f"the review log of episode {ep_id!r} leads out of the data root; remove that link"),
        )
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".record.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(record)
                out.flush()
                os.fsync(out.fileno())
            # link() fails if the name exists: exactly one writer gets each seq, and the record
            # appears whole or not at all.
            os.link(tmp, folder / f"{seq:06d}.json")
        except FileExistsError:
            raise AlreadyExists(
                f"review record {seq} of episode {ep_id!r} exists; reload the review and retry"
            ) from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return seq

    def list_review_records(self, ep_id: str) -> list[tuple[int, bytes]]:
        self.get_episode(ep_id)
        folder = self._episode_dir(ep_id) / REVIEW_DIR
        records = []
        for name in self._children(folder):
            stem = name.removesuffix(".json")
            if name.endswith(".json") and stem.isdigit():
                try:
                    records.append((int(stem), self._read_bytes(folder / name, NotFound(""))))
                except NotFound:  # a link out of the root is no record
                    continue
        return records

    # ---- facebank -------------------------------------------------------------------------------

    def _show_dir(self, show_id: str) -> Path:
        return self.root / "facebank" / validate_id("show", show_id or DEFAULT_SHOW)

    def _write_person(self, person: storage_pb2.Person) -> None:
        text = json_format.MessageToJson(person, preserving_proto_field_name=True)
        refusal = FailedPrecondition(
            f"the facebank of show {person.show_id!r} leads out of the data root; {person.name!r} was not saved"
        )
        self._write_file(self._show_dir(person.show_id) / f"{person.person_id}.json", [text.encode()], refusal)

    def _find_person(self, show_id: str, person_id: str) -> storage_pb2.Person | None:
        path = self._show_dir(show_id) / f"{validate_id('person', person_id)}.json"
        try:
            return json_format.Parse(self._read_bytes(path, NotFound("")), storage_pb2.Person())
        except NotFound:
            return None

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        if not name.strip():
            raise InvalidArgument("person name is empty")
        if not exemplars:
            raise InvalidArgument(f"no usable exemplar for {name!r}: give at least one image with one clear face")
        person_id = person_id_for(name)
        by = by or audit_name()
        with self._lock:
            existing = self._find_person(show_id, person_id)
            person = person_with_exemplars(existing, person_id, name, show_id, exemplars, append, by, _now())
            self._write_person(person)
            return person

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        people = []
        for name in self._children(self._show_dir(show_id)):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    found = self._find_person(show_id, name.removesuffix(".json"))
                except InvalidArgument:  # not a person id: not faceflow's
                    continue
                if found is not None:
                    people.append(found)
        return people

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        person = self._find_person(show_id, person_id)
        if person is None:
            raise NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")
        return person

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        with self._lock:
            person = remove_exemplar_from(self.get_person(show_id, person_id), exemplar_id)
            self._write_person(person)
            return person

    def remove_person(self, show_id: str, person_id: str) -> int:
        with self._lock:
            person = self.get_person(show_id, person_id)
            self._remove(self._show_dir(show_id) / f"{person_id}.json")
            return len(person.exemplars)
