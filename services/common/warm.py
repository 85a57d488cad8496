"""A value that exists only after a service's warm-up; RPCs arriving earlier get UNAVAILABLE."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from services.common.errors import Unavailable

T = TypeVar("T")


class WarmValue(Generic[T]):
    def __init__(self, what: str) -> None:
        self._what = what
        self._value: T | None = None
        self._ready = threading.Event()

    def set(self, value: T) -> None:
        self._value = value
        self._ready.set()

    def get(self) -> T:
        if not self._ready.is_set() or self._value is None:
            raise Unavailable(f"{self._what} is still warming up; retry when health reports SERVING")
        return self._value
