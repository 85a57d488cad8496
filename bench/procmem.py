"""Peak memory of processes from /proc (no psutil in the venv): VmHWM plus sampled VmRSS.

VmHWM is the kernel's own high-water mark of resident memory, so it cannot miss a short peak
between samples; sampling VmRSS as well keeps a value if the process exits before we read it.
"""

from __future__ import annotations

import threading
from pathlib import Path

SAMPLE_INTERVAL_S = 0.25


def status_kb(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM...), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_status_kb(text, field)


def parse_status_kb(text: str, field: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class PeakRss:
    """Samples VmRSS of some processes on a thread; peak_mb() = max(sampled, VmHWM) per process."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._peak_kb = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample("VmHWM")

    def _sample(self, field: str) -> None:
        for name, pid in self._pids.items():
            kb = status_kb(pid, field)
            if kb is not None:
                self._peak_kb[name] = max(self._peak_kb[name], kb)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample("VmRSS")

    def peak_mb(self) -> dict[str, float]:
        return {name: round(kb / 1024, 1) for name, kb in self._peak_kb.items()}
