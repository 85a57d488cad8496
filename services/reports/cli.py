"""The exit-code convention the report commands share with `faceflow`: bad input is one sentence and 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from services.common.errors import FaceflowError

# The same codes as services.cli.main: 2 = the user can fix the input, 0 = done.
EXIT_OK = 0
EXIT_USER_ERROR = 2


def run_main(action: Callable[[], None]) -> int:
    """Run a command; a domain error becomes its message on stderr and exit code 2, not a traceback."""
    try:
        action()
    except FaceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_OK
