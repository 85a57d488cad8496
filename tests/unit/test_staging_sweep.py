"""The storage service sweeps stale staged uploads at start and then periodically; a failed sweep is retried."""

from __future__ import annotations

import threading
from typing import Any

from services.storage.__main__ import STAGED_UPLOAD_TTL_S, sweep_staging_forever


class _Backend:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.done = threading.Event()

    def sweep_staging(self, older_than_s: float, now: Any = None) -> int:
        self.calls.append(older_than_s)
        if len(self.calls) == 1:
            raise OSError("S3 is down")  # the loop must survive this
        if len(self.calls) >= 3:
            self.done.set()
        return 1


def test_sweeps_repeat_with_the_ttl_and_survive_a_failure() -> None:
    backend = _Backend()
    thread = sweep_staging_forever(backend, interval_s=0.01)  # type: ignore[arg-type]
    assert backend.done.wait(5), backend.calls
    assert thread.daemon and thread.is_alive()
    assert set(backend.calls) == {STAGED_UPLOAD_TTL_S}
