"""Reading the contract files of a run folder, with errors that name the file at fault.

A report is often made from a copied or half-synced folder; "KeyError: 'identities'" would not tell
anyone what to fix, so every failure here says which file of which folder is missing or broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition, NotFound

MANIFEST = "manifest.json"
IDENTITIES = "identities.json"
SCREENTIME = "screentime.json"
DETECTIONS = "detections.jsonl"
TRACKS = "tracks.jsonl"
CROPS_DIR = "crops"
CROP_INDEX = "index.json"


def reviewed(run_dir: Path, name: str) -> str:
    """The reviewed version of a contract file when reviewers have corrected the run, else the file."""
    candidate = name.replace(".json", ".reviewed.json")
    return candidate if (run_dir / candidate).is_file() else name


def require_run_dir(run_dir: Path) -> Path:
    """The run folder itself must exist; a missing folder is a wrong path, not a broken run."""
    if not run_dir.is_dir():
        raise NotFound(f"run folder {str(run_dir)!r} does not exist")
    return run_dir


def require_file(run_dir: Path, name: str) -> Path:
    """A contract file of the run; its absence means the run is incomplete or not a run at all."""
    path = require_run_dir(run_dir) / name
    if not path.is_file():
        raise FailedPrecondition(
            f"run folder {str(run_dir)!r} has no {name}: not a complete faceflow run (see docs/output-contract.md)"
        )
    return path


def read_json(run_dir: Path, name: str) -> dict[str, Any]:
    """One JSON object from the run folder."""
    path = require_file(run_dir, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FailedPrecondition(f"{name} in {str(run_dir)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FailedPrecondition(f"{name} in {str(run_dir)!r} must hold a JSON object, not {type(data).__name__}")
    return data


def iter_jsonl(run_dir: Path, name: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a .jsonl file, one a line; streamed because detections.jsonl grows with the video."""
    path = require_file(run_dir, name)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise FailedPrecondition(
                    f"{name} in {str(run_dir)!r}, line {number}, is not valid JSON: {exc}"
                ) from exc
