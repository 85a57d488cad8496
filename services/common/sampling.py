"""The one rule for frame strides, shared by every API that takes one."""

from __future__ import annotations

from services.common.errors import InvalidArgument

# Upper bound on a stride: beyond ~2 s between processed frames (60 at 30 fps) tracking by box
# overlap and motion is meaningless.
MAX_STRIDE = 60


def check_stride(stride: int, zero_means: str) -> int:
    """`stride` if it is 0..MAX_STRIDE; InvalidArgument naming the range otherwise. What 0 means
    differs by API (the orchestrator picks one from the frame rate, a detector reads every frame)."""
    if not 0 <= stride <= MAX_STRIDE:
        raise InvalidArgument(f"stride must be between 1 and {MAX_STRIDE} frames (0: {zero_means}), got {stride}")
    return stride
