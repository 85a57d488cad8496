"""Service wiring in one validated place. Precedence: command-line flag > environment > default.

Algorithm thresholds are not here: each lives, named and explained, in the settings dataclass of the
code that uses it (RetinaFaceSettings, ByteTrackSettings, ClusteringSettings, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from services.common.errors import InvalidArgument

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "FACEFLOW_"
DEVICES = ("cpu", "cuda")
STORAGE_BACKENDS = ("local", "s3")


@dataclass(frozen=True)
class Settings:
    # Where storage keeps episodes, runs and the facebank (local backend).
    data_root: Path = Path("data")
    # Where `make models` / `make media` put model files, the model manifest and test media.
    cache_dir: Path = REPO_ROOT / ".cache" / "faceflow"
    device: str = "cpu"
    host: str = "127.0.0.1"
    detector_addr: str = ""
    embedder_addr: str = ""
    tracker_addr: str = ""
    storage_addr: str = ""
    orchestrator_addr: str = ""
    log_level: str = "info"
    # Where storage keeps things: "local" (data_root) or "s3" (FACEFLOW_S3_* settings, AWS credential chain).
    storage_backend: str = "local"
    # Intra-op threads per model session; 0 = all cores.
    model_threads: int = 0

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def manifest_path(self) -> Path:
        return self.model_dir / "manifest.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read FACEFLOW_<FIELD> variables, then apply non-None overrides (flags); fail fast on bad values."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls()
        converted: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            raw_value = values[f.name]
            default = getattr(settings, f.name)
            try:
                if isinstance(default, Path):
                    converted[f.name] = Path(str(raw_value)).expanduser()
                elif isinstance(default, int):
                    converted[f.name] = int(str(raw_value))
                else:
                    converted[f.name] = str(raw_value)
            except ValueError:
                raise InvalidArgument(
                    f"setting {f.name} ({ENV_PREFIX}{f.name.upper()}) must be {type(default).__name__}, "
                    f"got {raw_value!r}"
                ) from None
        settings = replace(settings, **converted)  # type: ignore[arg-type]
        if settings.device not in DEVICES:
            raise InvalidArgument(f"device must be one of {', '.join(DEVICES)}, got {settings.device!r}")
        if settings.storage_backend not in STORAGE_BACKENDS:
            raise InvalidArgument(
                f"storage_backend must be one of {', '.join(STORAGE_BACKENDS)}, got {settings.storage_backend!r}"
            )
        if settings.model_threads < 0:
            raise InvalidArgument(f"model_threads must be >= 0, got {settings.model_threads}")
        return settings
