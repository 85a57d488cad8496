"""The local backend's data root: the one gate every path goes through, and atomic file writes.

Nothing here follows a symlink out of the data root: every path is checked by `DataRoot.inside`, and
files are read by opening each folder down from the root with O_NOFOLLOW (`DataRoot.open_read`). A
link that leads out is treated as absent: never read, served, listed, written or deleted through
(docs/storage.md, "Symlinks"). Links that stay inside the root are followed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from services.common.errors import FaceflowError

# The backend's logger: what it logs about refused paths is the local backend's to say.
log = logging.getLogger("services.storage.local")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the root must not hang the reader (no effect on files).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


def remove_episode_folder(folder: Path, ep_id: str) -> None:
    """Rename first so a crash mid-delete never leaves a half-deleted episode folder that still lists;
    rmtree then removes the links inside the tree, never descending them."""
    doomed = folder.with_name(f".deleting-{ep_id}-{uuid.uuid4().hex[:8]}")
    folder.rename(doomed)
    shutil.rmtree(doomed)


class DataRoot:
    """File operations confined to one folder tree (the data root), symlinks included."""

    def __init__(self, root: Path) -> None:
        self.path = root.resolve()  # the root itself may be a link: it is resolved once, here

    def real(self, path: Path) -> Path | None:
        """`path` with every symlink resolved, if that is still under the data root; else None."""
        real = Path(os.path.realpath(path))
        if real.is_relative_to(self.path):
            return real
        # The path relative to the root only: where the link points is nobody's business.
        log.warning("refused a path that leads out of the data root", extra={"path": os.path.relpath(path, self.path)})
        return None

    def inside(self, path: Path, refusal: FaceflowError) -> Path:
        """`path` resolved (see real), or raise `refusal`: NotFound for reads, deletes and listings
        (a link out of the root is not there as far as faceflow is concerned), FailedPrecondition for
        writes. Its sentence names the episode/artifact/person, never the link's target."""
        real = self.real(path)
        if real is None:
            raise refusal
        return real

    def open_read(self, path: Path, refusal: FaceflowError) -> BinaryIO:
        """Open a regular file for reading without following any link: the path is resolved and checked
        (inside), then every folder is opened down from the root with O_NOFOLLOW, so a link swapped
        in after the check is refused too. Anything missing, a link or not a file: `refusal`."""
        parts = self.inside(path, refusal).relative_to(self.path).parts
        if not parts:
            raise refusal
        folder = os.open(self.path, _DIR_FLAGS)
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

    def read_bytes(self, path: Path, refusal: FaceflowError) -> bytes:
        with self.open_read(path, refusal) as stream:
            return stream.read()

    def write_file(self, path: Path, chunks: Iterable[bytes], refusal: FaceflowError) -> tuple[int, str]:
        """atomic_write_bytes into the resolved folder of `path`; a link in place of the file itself is
        replaced by the new file (rename does not follow it), never written through."""
        folder = self.inside(path.parent, refusal)
        return atomic_write_bytes(folder / path.name, chunks)

    def remove(self, path: Path) -> bool:
        """Delete a file or folder tree inside the root; a link is unlinked, never what it points at
        (rmtree removes the links inside a tree, it does not descend them). False if nothing was there."""
        folder = self.real(path.parent)
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

    def files(self, folder: Path) -> Iterator[tuple[str, Path]]:
        """(name relative to folder, resolved path) of the files under folder, dot-files skipped: linked
        folders are never entered, linked files only kept when they resolve to a file inside the root."""
        top = self.real(folder)
        if top is None or not top.is_dir():
            return
        for current, _dirs, names in os.walk(top):  # followlinks=False: a linked folder is listed, not walked
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(current, name)
                real = path if not path.is_symlink() else self.real(path)
                if real is not None and real.is_file():
                    yield path.relative_to(top).as_posix(), real

    def children(self, folder: Path) -> list[str]:
        """Sorted entry names of a folder inside the root (none if it is missing or leads out)."""
        real = self.real(folder)
        if real is None or not real.is_dir():
            return []
        return sorted(os.listdir(real))
