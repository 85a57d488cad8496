"""`python -m tools.assets models|media|all [--cache DIR]`: what `make models` and `make media` run."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.common.config import ENV_PREFIX, Settings
from services.common.errors import FaceflowError
from tools.assets.download import stderr_progress
from tools.assets.fetch import fetch_media, fetch_models

CACHE_ENV = ENV_PREFIX + "CACHE_DIR"  # Settings.cache_dir


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Settings.cache_dir: $FACEFLOW_CACHE_DIR wins, so CI and several checkouts can share one download;
    else <repo root>/.cache/faceflow, where the services look too. Only that setting is read."""
    env = os.environ if environ is None else environ
    return Settings.from_env({CACHE_ENV: env[CACHE_ENV]} if CACHE_ENV in env else {}).cache_dir


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.assets", description="Fetch faceflow's ONNX models and test media into a cache."
    )
    parser.add_argument("what", choices=["models", "media", "all"], help="which assets to fetch")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache dir (default: $FACEFLOW_CACHE_DIR, else <repo root>/.cache/faceflow)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-paragraph reason on any faceflow error."""
    args = _parse_args(argv)
    started = time.monotonic()
    try:
        cache_dir = args.cache or default_cache_dir()
        if args.what in ("models", "all"):
            fetch_models(cache_dir)
        if args.what in ("media", "all"):
            fetch_media(cache_dir)
    except FaceflowError as exc:
        stderr_progress(f"error: {exc}")
        return 1
    stderr_progress(f"done in {time.monotonic() - started:.1f} s ({cache_dir})")
    return 0
