"""Local filesystem backend. Layout under the data root (documented in docs/storage.md):

    episodes/<ep_id>/episode.json          episode record (video, current run)
    episodes/<ep_id>/video.<ext>           the stored video
    episodes/<ep_id>/runs/<run_id>/...     every run's artifacts, kept
    episodes/<ep_id>/<artifact>            the published (current) run's artifacts: the output contract
    facebank/<show_id>/<person_id>.json    a person and their exemplars (embeddings tagged with model id)

Every file is written to a temporary name and renamed into place, so a crash never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceflow.v1 import common_pb2, storage_pb2
from google.protobuf import json_format

from services.common.errors import AlreadyExists, FaceflowError, FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.common.model_manifest import sha256_file
from services.storage.backend import (
    DEFAULT_SHOW,
    MAX_REVIEW_RECORDS,
    limited,
    person_id_for,
    remove_exemplar_from,
    validate_artifact_name,
    video_suffix,
)
from services.storage.file_server import UrlSigner

CHUNK_BYTES = 1024 * 1024
EPISODE_RECORD = "episode.json"
RUNS_DIR = "runs"
REVIEW_DIR = "review"
MANIFEST = "manifest.json"


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
    def __init__(self, root: Path, signer: UrlSigner | None = None, base_url: str = "") -> None:
        self.root = root.resolve()
        self._signer = signer or UrlSigner()
        # Set by the storage service once its file server is bound (artifact_url needs it).
        self.base_url = base_url
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        (self.root / "facebank").mkdir(parents=True, exist_ok=True)
        # Guards read-modify-write of records within this process (one storage replica per data root).
        self._lock = threading.RLock()

    # ---- episodes -------------------------------------------------------------------------------

    def _episode_dir(self, ep_id: str) -> Path:
        return self.root / "episodes" / validate_id("episode", ep_id)

    def _write_record(self, ep: storage_pb2.Episode) -> None:
        text = json_format.MessageToJson(ep, preserving_proto_field_name=True)
        atomic_write_bytes(self._episode_dir(ep.ep_id) / EPISODE_RECORD, [text.encode()])

    def get_episode(self, ep_id: str) -> storage_pb2.Episode:
        record = self._episode_dir(ep_id) / EPISODE_RECORD
        if not record.is_file():
            raise NotFound(f"episode {ep_id!r} does not exist; create it first (faceflow run VIDEO --episode {ep_id})")
        return json_format.Parse(record.read_text(), storage_pb2.Episode())

    def _staged(self, upload_id: str) -> Path:
        folder = self.root / "staging" / validate_id("upload", upload_id)
        found = sorted(folder.glob("video.*")) if folder.is_dir() else []
        if not found:
            raise NotFound(f"upload {upload_id!r} does not exist (discarded, used, or never staged)")
        return found[0]

    def stage_upload(self, filename: str, chunks: Iterable[bytes]) -> storage_pb2.StagedUpload:
        upload_id = "up-" + uuid.uuid4().hex[:16]
        target = self.root / "staging" / upload_id / f"video{video_suffix(filename)}"
        try:
            size, sha = atomic_write_bytes(target, limited(chunks))
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        if size == 0:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise InvalidArgument(f"the upload of {filename!r} is empty (0 bytes)")
        return storage_pb2.StagedUpload(upload_id=upload_id, uri=str(target), size_bytes=size, sha256=sha)

    def discard_upload(self, upload_id: str) -> None:
        shutil.rmtree(self._staged(upload_id).parent, ignore_errors=True)

    def sweep_staging(self, older_than_s: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than_s
        swept = 0
        for folder in (self.root / "staging").glob("up-*"):
            files = [f for f in folder.rglob("*") if f.is_file()]
            if all(f.stat().st_mtime < cutoff for f in files) and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
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
        directory = self._episode_dir(ep_id)
        show_id = validate_id("show", show_id or DEFAULT_SHOW)
        source = self._staged(upload_id) if upload_id else Path(source_path)
        if not source.is_file():
            raise NotFound(f"video file {source_path} does not exist")
        with self._lock:
            existing = self.get_episode(ep_id) if (directory / EPISODE_RECORD).is_file() else None
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
        for record in sorted((self.root / "episodes").glob(f"*/{EPISODE_RECORD}")):
            episodes.append(json_format.Parse(record.read_text(), storage_pb2.Episode()))
        return episodes

    def delete_episode(self, ep_id: str, include_s3: bool) -> tuple[int, int]:
        directory = self._episode_dir(ep_id)
        with self._lock:
            if not directory.exists():
                raise NotFound(f"episode {ep_id!r} does not exist")
            # Rename first so a crash mid-delete never leaves a half-deleted episode that still lists.
            doomed = directory.with_name(f".deleting-{ep_id}-{uuid.uuid4().hex[:8]}")
            directory.rename(doomed)
            shutil.rmtree(doomed)
        return 1, 0  # the local backend has no remote objects

    # ---- artifacts ------------------------------------------------------------------------------

    def _run_dir(self, ep_id: str, run_id: str) -> Path:
        return self._episode_dir(ep_id) / RUNS_DIR / validate_id("run", run_id)

    def put_artifact(self, ep_id: str, run_id: str, name: str, chunks: Iterable[bytes]) -> storage_pb2.Artifact:
        self.get_episode(ep_id)
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        size, sha = atomic_write_bytes(path, chunks)
        return storage_pb2.Artifact(
            ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name), size_bytes=size, sha256=sha
        )

    def get_artifact(self, ep_id: str, run_id: str, name: str) -> Iterator[bytes]:
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        if not path.is_file():
            raise NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
        with path.open("rb") as stream:
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
        folder = run_dir / prefix.rsplit("/", 1)[0] if "/" in prefix else run_dir
        names = sorted(
            path.relative_to(run_dir).as_posix()
            for path in (folder.rglob("*") if folder.is_dir() else [])
            if path.is_file() and not path.name.startswith(".")
        )
        names = [n for n in names if n.startswith(prefix) and n > start_after]
        if limit > 0:
            names = names[:limit]
        return [
            storage_pb2.Artifact(
                ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name),
                size_bytes=(run_dir / name).stat().st_size,
            )
            for name in names
        ]

    def artifact_url(self, ep_id: str, run_id: str, name: str, expires_s: int) -> str:
        episode = self.get_episode(ep_id)
        run_id = run_id or episode.current_run_id
        if not run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run yet; run it first")
        path = self._run_dir(ep_id, run_id) / validate_artifact_name(name)
        if not path.is_file():
            raise NotFound(f"artifact {name!r} does not exist in run {run_id!r} of episode {ep_id!r}")
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

    def publish_run(self, ep_id: str, run_id: str) -> storage_pb2.Episode:
        """Make a run the current outputs: link its files into the episode folder, manifest.json last."""
        with self._lock:
            episode = self.get_episode(ep_id)
            run_dir = self._run_dir(ep_id, run_id)
            if not (run_dir / MANIFEST).is_file():
                raise FailedPrecondition(f"run {run_id!r} of episode {ep_id!r} has no {MANIFEST}; it did not finish")
            directory = self._episode_dir(ep_id)
            files = [p for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
            files.sort(key=lambda p: p.name == MANIFEST)  # manifest last: readers key on it
            published = set()
            for path in files:
                name = path.relative_to(run_dir).as_posix()
                published.add(name.split("/")[0])
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
                try:
                    os.link(path, tmp)  # run files are immutable once written: a hard link is a free copy
                except OSError:
                    shutil.copy2(path, tmp)
                os.replace(tmp, target)
            keep = published | {EPISODE_RECORD, RUNS_DIR, REVIEW_DIR} | {p.name for p in directory.glob("video.*")}
            for stale in directory.iterdir():  # outputs of the previous run that this run did not write
                if stale.name not in keep and not stale.name.startswith("."):
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            episode.current_run_id = run_id
            self._write_record(episode)
            return episode

    # ---- review log -----------------------------------------------------------------------------

    def append_review_record(self, ep_id: str, seq: int, record: bytes) -> int:
        self.get_episode(ep_id)
        if not 1 <= seq <= MAX_REVIEW_RECORDS:
            raise InvalidArgument(f"review record seq must be between 1 and {MAX_REVIEW_RECORDS}, got {seq}")
        folder = self._episode_dir(ep_id) / REVIEW_DIR
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
        return [(int(p.stem), p.read_bytes()) for p in sorted(folder.glob("[0-9]*.json"))]

    # ---- facebank -------------------------------------------------------------------------------

    def _show_dir(self, show_id: str) -> Path:
        return self.root / "facebank" / validate_id("show", show_id or DEFAULT_SHOW)

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool
    ) -> storage_pb2.Person:
        if not name.strip():
            raise InvalidArgument("person name is empty")
        if not exemplars:
            raise InvalidArgument(f"no usable exemplar for {name!r}: give at least one image with one clear face")
        person_id = person_id_for(name)
        path = self._show_dir(show_id) / f"{person_id}.json"
        with self._lock:
            if path.is_file():
                if not append:
                    raise AlreadyExists(f"{name!r} is already in the facebank of show {show_id or DEFAULT_SHOW!r}")
                person = json_format.Parse(path.read_text(), storage_pb2.Person())
            else:
                person = storage_pb2.Person(
                    person_id=person_id, name=name.strip(), show_id=show_id or DEFAULT_SHOW, created_at=_now()
                )
            for exemplar in exemplars:
                added = person.exemplars.add()
                added.CopyFrom(exemplar)
                added.exemplar_id = added.exemplar_id or uuid.uuid4().hex[:12]
            text = json_format.MessageToJson(person, preserving_proto_field_name=True)
            atomic_write_bytes(path, [text.encode()])
            return person

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        directory = self._show_dir(show_id)
        return [json_format.Parse(p.read_text(), storage_pb2.Person()) for p in sorted(directory.glob("*.json"))]

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        path = self._show_dir(show_id) / f"{validate_id('person', person_id)}.json"
        if not path.is_file():
            raise NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")
        return json_format.Parse(path.read_text(), storage_pb2.Person())

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        with self._lock:
            person = remove_exemplar_from(self.get_person(show_id, person_id), exemplar_id)
            text = json_format.MessageToJson(person, preserving_proto_field_name=True)
            atomic_write_bytes(self._show_dir(show_id) / f"{person_id}.json", [text.encode()])
            return person

    def remove_person(self, show_id: str, person_id: str) -> int:
        with self._lock:
            person = self.get_person(show_id, person_id)
            (self._show_dir(show_id) / f"{person_id}.json").unlink()
            return len(person.exemplars)
