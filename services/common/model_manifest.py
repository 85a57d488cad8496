"""Typed, read-only view of CACHE/models/manifest.json (written by tools.assets).

Services read model facts (input shape, preprocessing, priors, output size) from here instead of
hard-coding them, and stamp every stored embedding with `ModelSpec.model_id` so embeddings made
by different model files are never compared with each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from services.common.errors import FailedPrecondition, NotFound

SUPPORTED_VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output; -1 in `shape` is a dynamic dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str | None = None
    layout: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in data["shape"]),
            dtype=data.get("dtype"),
            layout=data.get("layout"),
        )


def _frozen(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Read-only mapping, so a spec shared across threads cannot be altered by one of them."""
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True)
class ModelSpec:
    """One model of the manifest: its file, its digest, and how to feed it."""

    name: str
    task: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Mapping[str, Any]
    output_dim: int | None
    source: Mapping[str, Any]
    priors: Mapping[str, Any] | None = None
    normalize: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        output_dim = data.get("output_dim")
        priors = data.get("priors")
        return cls(
            name=str(data["name"]),
            task=str(data["task"]),
            file=str(data["file"]),
            sha256=str(data["sha256"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            preprocessing=_frozen(data.get("preprocessing")),
            output_dim=None if output_dim is None else int(output_dim),
            source=_frozen(data.get("source")),
            priors=None if priors is None else _frozen(priors),
            normalize=data.get("normalize"),
        )

    def fact(self, section: str, key: str) -> Any:
        """`preprocessing[key]` or `priors[key]`; FailedPrecondition naming the manifest key when absent."""
        facts: Mapping[str, Any] = getattr(self, section) or {}
        if key not in facts:
            raise FailedPrecondition(
                f"model manifest entry {self.name} has no {section}.{key}; run `make models` to regenerate it."
            )
        return facts[key]

    @property
    def model_id(self) -> str:
        """The id every stored embedding carries: name plus a digest prefix of the exact file."""
        return f"{self.name}@{self.sha256[:12]}"

    def path(self, model_dir: Path) -> Path:
        return Path(model_dir) / self.file

    def verify(self, model_dir: Path) -> Path:
        """Re-hash the file so a swapped or damaged model is refused before it produces bad results."""
        path = self.path(model_dir)
        if not path.is_file():
            raise FailedPrecondition(f"model file {path} for {self.name} is missing; run `make models`.")
        actual = sha256_file(path)
        if actual != self.sha256:
            raise FailedPrecondition(
                f"model file {path} has sha256 {actual}, but the manifest expects {self.sha256}; "
                "it was modified or is incomplete: delete it and run `make models` again."
            )
        return path


@dataclass(frozen=True)
class ModelManifest:
    """All models of one manifest file, looked up by name."""

    version: int
    models: tuple[ModelSpec, ...]

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        """Parse and validate a manifest; every failure says which file and what to do."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"model manifest {path} does not exist; run `make models`.") from exc
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(
                f"model manifest {path} is unreadable ({exc}); delete it and run `make models`."
            ) from exc
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<dict>") -> ModelManifest:
        if not isinstance(data, dict) or data.get("version") != SUPPORTED_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise FailedPrecondition(
                f"model manifest {origin} has version {found!r}, this code reads version "
                f"{SUPPORTED_VERSION}; run `make models` to regenerate it."
            )
        try:
            models = tuple(ModelSpec.from_dict(m) for m in data["models"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FailedPrecondition(
                f"model manifest {origin} has a malformed model entry ({exc!r}); run `make models` to regenerate it."
            ) from exc
        return cls(version=SUPPORTED_VERSION, models=models)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        known = ", ".join(self.names) or "none"
        raise NotFound(f"model {name!r} is not in the manifest; known models: {known}.")


def sha256_file(path: Path) -> str:
    """Hash in chunks so large files never have to sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
