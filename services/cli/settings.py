"""The settings the command line itself reads, through services.common.config.Settings (FACEFLOW_<FIELD>)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from services.common.config import ENV_PREFIX, Settings

# Only these are read (and so validated) here: a bad service setting (FACEFLOW_MODEL_THREADS=-1) is for
# the service that reads it to refuse, naming itself in its log, not for every `faceflow` command.
CLI_FIELDS = ("data_root", "orchestrator_addr", "storage_addr", "cli_storage", "envoy_bin")


def cli_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """--data-root's default, a running stack's addresses, --storage's default and the Envoy binary."""
    env = os.environ if environ is None else environ
    names = {ENV_PREFIX + field.upper() for field in CLI_FIELDS}
    return Settings.from_env({name: value for name, value in env.items() if name in names})
