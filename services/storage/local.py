"""Local filesystem backend. Layout under the data root (documented in docs/storage.md):

    episodes/<ep_id>/episode.json          episode record (video, current run, show, season, number)
    episodes/<ep_id>/video.<ext>           the stored video
    episodes/<ep_id>/runs/<run_id>/...     every run's artifacts, kept
    episodes/<ep_id>/<artifact>            the published (current) run's artifacts: the output contract
    facebank/<show_id>/<person_id>.json    a person and their exemplars (local_facebank.py)
    staging/<upload_id>/video.<ext>        an upload until CreateEpisode adopts it (local_staging.py)

Every file is written to a temporary name and renamed into place, so a crash never leaves a torn file.
Every path goes through one gate, local_root.DataRoot, which never follows a symlink out of the root.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from faceflow.v1 import common_pb2, storage_pb2
from google.protobuf import json_format

from services.common.errors import AlreadyExists, FaceflowError, FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.common.model_manifest import sha256_file
from services.storage.backend import (
    CHUNK_BYTES,
    EPISODE_RECORD,
    MANIFEST,
    MAX_REVIEW_RECORDS,
    FacebankCalls,
    ShowPlacement,
    UploadLimits,
    in_show,
    record_json,
    show_filter,
    utc_timestamp,
    validate_artifact_name,
    video_suffix,
)
from services.storage.file_server import UrlSigner
from services.storage.local_facebank import LocalFacebank
from services.storage.local_root import DataRoot, atomic_write_bytes, remove_episode_folder
from services.storage.local_staging import LocalStaging

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
REVIEW_DIR = "review"
URL_PREFIX = "/artifacts/"


class LocalStorage(FacebankCalls):
    """StorageBackend on a local data root; one storage replica per root (its lock is per process)."""

    def __init__(
        self, root: Path, signer: UrlSigner | None = None, base_url: str = "", limits: UploadLimits | None = None
    ) -> None:
        self._root = DataRoot(root)
        self.root = self._root.path
        self._signer = signer or UrlSigner()
        self.limits = limits or UploadLimits()
        # Set by the storage service once its file server is bound (artifact_url needs it).
        self.base_url = base_url
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        (self.root / "facebank").mkdir(parents=True, exist_ok=True)
        # Guards read-modify-write of records within this process (one storage replica per data root).
        self._lock = threading.RLock()
        self._staging = LocalStaging(self._root, self.limits)
        self._facebank = LocalFacebank(self._root, self._lock)

    # ---- episodes -------------------------------------------------------------------------------

    def _episode_dir(self, ep_id: str) -> Path:
        return self.root / "episodes" / validate_id("episode", ep_id)

    def _write_record(self, ep: storage_pb2.Episode) -> None:
        refusal = FailedPrecondition(f"episode {ep.ep_id!r} cannot be written: its folder leads out of the data root")
        self._root.write_file(self._episode_dir(ep.ep_id) / EPISODE_RECORD, [record_json(ep)], refusal)

    def _find_episode(self, ep_id: str) -> storage_pb2.Episode | None:
        try:
            body = self._root.read_bytes(self._episode_dir(ep_id) / EPISODE_RECORD, NotFound(""))
        except NotFound:
            return None
        return json_format.Parse(body, storage_pb2.Episode())

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        episode = self._find_episode(ep_id)
        if episode is None:
            raise NotFound(f"episode {ep_id!r} does not exist; create it first (faceflow run VIDEO --episode {ep_id})")
        return episode

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
        directory = self._root.inside(
            self._episode_dir(ep_id),
            FailedPrecondition(f"episode {ep_id!r} cannot be created: its folder leads out of the data root"),
        )
        placement = ShowPlacement.checked(show_id, season, episode_number)
        source = self._staging.staged(upload_id) if upload_id else Path(source_path)
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
                    created_at=existing.created_at if existing else utc_timestamp(),
                    current_run_id=existing.current_run_id if existing else "",
                )
                placement.replacing(existing, show_named=bool(show_id)).apply(episode)
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

    def update_episode(self, ep_id: str, show_id: str, season: int, episode_number: int) -> storage_pb2.Episode:
        """Under the lock publish_run and create_episode hold: a read-modify-write of the record that
        no other writer in this process can interleave with (one storage replica per data root)."""
        placement = ShowPlacement.checked(show_id, season, episode_number)
        with self._lock:
            episode = self.get_episode(ep_id)
            if placement.apply(episode):
                self._write_record(episode)
            return episode

    def list_episodes(self, show_id: str = "") -> list[storage_pb2.Episode]:
        show_id = show_filter(show_id)
        episodes = []
        for name in self._root.children(self.root / "episodes"):
            if name.startswith("."):  # .deleting-* folders on their way out
                continue
            try:
                found = self._find_episode(name)
            except InvalidArgument:  # not an episode id: not faceflow's
                continue
            if found is not None and in_show(found, show_id):
                episodes.append(found)
        return episodes

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        missing = NotFound(f"episode {ep_id!r} does not exist")
        directory = self._episode_dir(ep_id)
        with self._lock:
            episodes = self._root.inside(directory.parent, missing)
            entry = episodes / directory.name
            if entry.is_symlink():
                # Not a folder faceflow made: remove the link, never what it points at.
                entry.unlink()
                log.warning("an episode folder was a link; removed the link only", extra={"ep_id": ep_id})
                return 0, 0
            if not entry.is_dir():
                raise missing
            remove_episode_folder(entry, ep_id)
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
        size, sha = self._root.write_file(path, chunks, refusal)
        return storage_pb2.Artifact(
            ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name), size_bytes=size, sha256=sha
        )

    def _current_run(self, ep_id: str, run_id: str) -> str:
        """`run_id` of an existing episode, or its published run (FailedPrecondition if there is none yet)."""
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        return run_id

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        run_id = self._current_run(ep_id, run_id)
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        missing = NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        with self._root.open_read(path, missing) as stream:
            yield from iter(lambda: stream.read(CHUNK_BYTES), b"")

    def list_artifacts(
        self, ep_id: str, run_id: str, prefix: str, start_after: str = "", limit: int = 0
    ) -> list[storage_pb2.Artifact]:
        try:
            run_id = self._current_run(ep_id, run_id)
        except FailedPrecondition:
            return []  # no published run yet: nothing to list
        run_dir = self._run_dir(ep_id, run_id)
        # Walk only the folder the prefix names (crops of one track, say), not the whole run.
        under = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        found = {under + name: real for name, real in self._root.files(run_dir / under)}
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
        run_id = self._current_run(ep_id, run_id)
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        missing = NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        if not self._root.inside(path, missing).is_file():
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
            return self._root.open_read(path, NotFound(""))
        except NotFound:
            return None

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Make a run the current outputs: link its files into the episode folder, manifest.json last."""
        with self._lock:
            episode = self.get_episode(ep_id)
            run_dir = self._run_dir(ep_id, run_id)
            files = dict(self._root.files(run_dir))  # links out of the root are not part of the run
            if MANIFEST not in files:
                raise FailedPrecondition(f"run {run_id!r} of episode {ep_id!r} has no {MANIFEST}; it did not finish")
            directory = self._root.inside(self._episode_dir(ep_id), NotFound(f"episode {ep_id!r} does not exist"))
            published = set()
            # The manifest last: readers key on it.
            for name in sorted(files, key=lambda n: n.rsplit("/", 1)[-1] == MANIFEST):
                published.add(name.split("/")[0])
                folder = self._root.inside(
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
            keep |= {n for n in self._root.children(directory) if n.startswith("video.")}
            for stale in self._root.children(directory):  # outputs of the previous run that this run did not write
                if stale not in keep and not stale.startswith("."):
                    self._root.remove(directory / stale)
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
            removed = sum(1 for _ in self._root.files(target))
            self._root.remove(target)
            return removed

    # ---- review log -----------------------------------------------------------------------------

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        self.get_episode(ep_id)
        if not 1 <= seq <= MAX_REVIEW_RECORDS:
            raise InvalidArgument(f"review record seq must be between 1 and {MAX_REVIEW_RECORDS}, got {seq}")
        folder = self._root.inside(
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
        for name in self._root.children(folder):
            stem = name.removesuffix(".json")
            if name.endswith(".json") and stem.isdigit():
                try:
                    records.append((int(stem), self._root.read_bytes(folder / name, NotFound(""))))
                except NotFound:  # a link out of the root is no record
                    continue
        return records

    # ---- uploads (local_staging.py) -------------------------------------------------------------

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        return self._staging.stage_upload(filename, chunks)

    def check_upload_capacity(self, size_bytes: int) -> int:
        return self._staging.check_upload_capacity(size_bytes)

    def discard_upload(self, upload_id: str) -> None:
        self._staging.discard_upload(upload_id)

    def stage_object(self, source_uri: str) -> storage_pb2.StagedUpload:
        raise FailedPrecondition(
            "s3:// sources need the S3 storage backend (FACEFLOW_STORAGE_BACKEND=s3); upload the video instead"
        )

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        return self._staging.sweep_staging(older_than_s, now)
