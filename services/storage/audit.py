"""Audit lines of the storage service: one structured log line per destructive call (docs/storage.md).

    {"msg": "audit", "logger": "services.storage.audit", "principal": "alice (admin)",
     "action": "delete_episode", "ep_id": "ep-1", "include_s3": false,
     "local_dirs_removed": 1, "s3_objects_removed": 0, "outcome": "ok"}

`principal` is services.common.auth.audit_name(): the verified caller, or the person a service called
for, or "system" (the staging sweep). A call that fails is logged too, with outcome "failed", the
error's sentence and the counts of what it removed before failing (DeleteAllEpisodes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from services.common.auth import audit_name

log = logging.getLogger(__name__)


def audit_line(action: str, **fields: Any) -> None:
    log.info("audit", extra={"principal": audit_name(), "action": action, **fields})


@contextmanager
def audited(action: str, **ids: Any) -> Iterator[dict[str, Any]]:
    """Log one audit line when the block ends; the block adds the counts of what it removed to the dict."""
    fields: dict[str, Any] = dict(ids)
    try:
        yield fields
    except BaseException as error:
        audit_line(action, **fields, outcome="failed", error=str(error))
        raise
    audit_line(action, **fields, outcome="ok")
