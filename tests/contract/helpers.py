from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest


def expect_status(code: grpc.StatusCode, call: Callable[[], Any], *fragments: str) -> str:
    """Run `call`, require a gRPC error with `code` whose message contains every fragment."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            list(result)  # server streams fail on first read
    error = caught.value
    assert error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}"
    for fragment in fragments:
        assert fragment in error.details(), f"{fragment!r} not in {error.details()!r}"
    return error.details()
