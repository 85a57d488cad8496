"""release_freed_memory (services/common/memory.py): the pages of freed frame buffers leave the process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from services.common.memory import release_freed_memory

FRAME_BYTES = 1280 * 720 * 3


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
@pytest.mark.skipif("MALLOC_MMAP_THRESHOLD_" in os.environ, reason="a fixed mmap threshold never keeps frames")
def test_freed_frame_buffers_held_in_the_heap_are_given_back() -> None:
    # One frame freed raises glibc's mmap threshold past a frame: later frames come from the heap,
    # and live allocations between them (too big for any hole, so each lands after its frame) keep
    # the heap from shrinking by itself, as the detector's other buffers do.
    release_freed_memory()  # what earlier tests freed is not counted
    start = _rss_mb()
    first = np.ones(FRAME_BYTES, np.uint8)
    del first
    frames, pins = [], []
    for _ in range(40):
        frames.append(np.ones(FRAME_BYTES, np.uint8))
        pins.append(np.ones(200_000, np.uint8))
    held = _rss_mb()
    frames_mb = 40 * FRAME_BYTES / 2**20
    assert held - start >= 0.9 * frames_mb
    del frames
    freed = _rss_mb()  # glibc may give back some by itself (the heap's top), not the holes
    assert release_freed_memory()
    after = _rss_mb()
    pins_mb = 40 * 200_000 / 2**20
    assert after - start <= 0.25 * frames_mb + pins_mb, (start, held, freed, after)
    assert len(pins) == 40
