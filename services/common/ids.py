"""Validation of the ids that become path components and object keys (episode, run, job, person, show)."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

# Letters, digits, '.', '_' and '-', starting with a letter or digit: safe as one path component and
# as an S3 key segment, so "../x", "a/b", "" or a 500-character id can never escape its folder.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_id(kind: str, value: str) -> str:
    """Return `value` when it is a well-formed id, else raise InvalidArgument naming the problem."""
    if not value:
        raise InvalidArgument(f"{kind} id is empty; give 1-64 letters, digits, '.', '_' or '-'")
    if not _ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            f"{kind} id {shown!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def person_id_for(name: str) -> str:
    """The id a person's name becomes in a facebank: the same in every storage backend (a facebank can move
    between them), and known to the orchestrator before storage is asked (facebank/promotion.py)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    if not slug:
        raise InvalidArgument(f"person name {name!r} must contain at least one letter or digit")
    return slug
