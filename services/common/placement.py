"""Where an episode belongs: a show, a season of it and a number in that season (docs/shows.md).

One rule for storage (which keeps it in the episode record), the orchestrator (which checks a caller's
request before an upload starts) and the show roll-ups (which take a season).
"""

from __future__ import annotations

from services.common.errors import InvalidArgument
from services.common.ids import validate_id

DEFAULT_SHOW = "default"
# The largest season and episode number (0: not set). Beyond any real show (soaps run to a few dozen
# seasons, ~15,000 episodes in all, a few hundred a season), and small enough that a year or a timestamp
# typed by mistake is refused.
MAX_SEASON = 1000
MAX_EPISODE_NUMBER = 10_000


def check_range(field: str, value: int, largest: int) -> int:
    """`value` when 0 (not set) to `largest`, else InvalidArgument naming the field and the value."""
    if not 0 <= value <= largest:
        raise InvalidArgument(f"{field} must be 0 (not set) to {largest}, got {value}")
    return value


def check_placement(show_id: str, season: int, episode_number: int) -> str:
    """The show id an episode is stored under ("default" for none); InvalidArgument for a malformed show
    id or an out-of-range season or episode number."""
    check_range("season", season, MAX_SEASON)
    check_range("episode_number", episode_number, MAX_EPISODE_NUMBER)
    return validate_id("show", show_id or DEFAULT_SHOW)
