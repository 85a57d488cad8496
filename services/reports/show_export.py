"""A show's season roll-up (a ShowScreenTime message) as tables and files: CSV, JSON and Parquet.

Two shapes of the same figures, both built by pure functions of the message:

* the long table: one row per person x episode (every pair, 0 s included), the shape for analysis
  tools (pandas, Polars, DuckDB, a pivot table);
* the wide table: one row per person, one column per episode, then total_s, share and
  episodes_appeared, the shape a person reads (and the terminal table of `faceflow show`).

Seconds are rounded to `DECIMALS` decimals (0.1 ms, far below a frame) once, in the tables; every
total is the sum of the rounded per-episode figures, so a reader summing the exported rows gets the
exported total. Files are written atomically (a temporary file in the target folder, then a rename):
a failed export leaves neither a half-written file nor the temporary one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceflow.v1 import orchestrator_pb2

from services.common.errors import FailedPrecondition, InvalidArgument

DECIMALS = 4
SHARE_DECIMALS = 6
SEMANTICS = (
    "seconds on screen per person and episode, from each episode's current run after review (what the "
    "episode's own screen time shows); named people by name (the union of their identities' intervals), "
    "unnamed identities linked across episodes into 'unknown person #N' rows; "
    f"seconds rounded to {DECIMALS} decimals, total_s = the sum of a person's per-episode seconds, "
    "share = total_s over the summed duration of the episodes counted (those with a run)"
)
LONG_COLUMNS = (
    "show",
    "season",
    "ep_id",
    "episode_number",
    "person",
    "label",
    "row_id",
    "seconds",
    "episode_duration_s",
)
WIDE_LEADING = ("person", "label", "row_id")
WIDE_TRAILING = ("total_s", "share", "episodes_appeared")


def _seconds(value: float) -> float:
    return round(float(value), DECIMALS)


@dataclass(frozen=True)
class LongRow:
    """One person in one episode."""

    show: str
    season: int  # the episode's season (0: not set)
    ep_id: str
    episode_number: int  # 0: not set
    person: str  # the display name: the person's name or "unknown person #N"
    label: str | None  # the name; None for an unknown person
    row_id: str
    seconds: float
    episode_duration_s: float


@dataclass(frozen=True)
class WideTable:
    """One row per person; `columns` are the keys of every row, in order."""

    columns: list[str]
    episode_columns: list[str]  # the per-episode columns, in the order of the message's episodes
    rows: list[dict[str, Any]]


def episode_label(episode: orchestrator_pb2.ShowEpisode) -> str:
    """S1E2 when the episode has a season and a number, else its id."""
    if episode.season and episode.episode_number:
        return f"S{episode.season}E{episode.episode_number}"
    return episode.ep_id


def episode_columns(episodes: Sequence[orchestrator_pb2.ShowEpisode]) -> list[str]:
    """One distinct column name per episode: its label (S1E2, else its id); its id where two labels
    collide; "episode:ID" where the id itself is a fixed column's name."""
    labels = [episode_label(e) for e in episodes]
    reserved = set(WIDE_LEADING + WIDE_TRAILING)
    names = []
    for episode, label in zip(episodes, labels, strict=True):
        name = label if labels.count(label) == 1 else episode.ep_id
        names.append(f"episode:{name}" if name in reserved else name)
    return names


def _person_seconds(person: orchestrator_pb2.ShowPersonRow, count: int) -> list[float]:
    if len(person.seconds) != count:
        raise InvalidArgument(
            f"row {person.row_id!r} has {len(person.seconds)} per-episode figures for {count} episodes"
        )
    return [_seconds(s) for s in person.seconds]


def _total(seconds: Sequence[float]) -> float:
    return _seconds(sum(seconds))


def long_rows(show: orchestrator_pb2.ShowScreenTime) -> list[LongRow]:
    """Every person x episode, people in the message's order (named first, longest first), episodes in
    season order within each person."""
    rows = []
    for person in show.people:
        seconds = _person_seconds(person, len(show.episodes))
        for episode, value in zip(show.episodes, seconds, strict=True):
            rows.append(
                LongRow(
                    show=show.show_id,
                    season=episode.season,
                    ep_id=episode.ep_id,
                    episode_number=episode.episode_number,
                    person=person.display_name,
                    label=person.label or None,
                    row_id=person.row_id,
                    seconds=value,
                    episode_duration_s=_seconds(episode.duration_s),
                )
            )
    return rows


def wide_table(show: orchestrator_pb2.ShowScreenTime) -> WideTable:
    """One row per person: person, label (None when unknown), row_id, seconds per episode, total_s,
    share, episodes_appeared."""
    names = episode_columns(show.episodes)
    rows = []
    for person in show.people:
        seconds = _person_seconds(person, len(show.episodes))
        row: dict[str, Any] = {"person": person.display_name, "label": person.label or None, "row_id": person.row_id}
        row.update(zip(names, seconds, strict=True))
        row["total_s"] = _total(seconds)
        row["share"] = round(person.share, SHARE_DECIMALS)
        row["episodes_appeared"] = person.episodes_appeared
        rows.append(row)
    return WideTable([*WIDE_LEADING, *names, *WIDE_TRAILING], names, rows)


def document(show: orchestrator_pb2.ShowScreenTime) -> dict[str, Any]:
    """The whole roll-up as one JSON-able object: episodes, people (per-episode seconds keyed by ep_id,
    their linked identities and suggestions) and totals."""
    names = episode_columns(show.episodes)
    episodes = [
        {
            "ep_id": e.ep_id,
            "column": name,
            "season": e.season,
            "episode_number": e.episode_number,
            "run_id": e.run_id,
            "counted": bool(e.run_id),
            "duration_s": _seconds(e.duration_s),
            "reviewed": e.reviewed,
            "embedding_model": e.embedding_model,
        }
        for e, name in zip(show.episodes, names, strict=True)
    ]
    people = []
    for person in show.people:
        seconds = _person_seconds(person, len(show.episodes))
        people.append(
            {
                "row_id": person.row_id,
                "person": person.display_name,
                "label": person.label or None,
                "seconds": {e.ep_id: value for e, value in zip(show.episodes, seconds, strict=True)},
                "total_s": _total(seconds),
                "share": round(person.share, SHARE_DECIMALS),
                "episodes_appeared": person.episodes_appeared,
                "identities": [
                    {
                        "ep_id": i.identity.ep_id,
                        "identity_id": i.identity.identity_id,
                        "seconds": _seconds(i.seconds),
                        "link": i.link,
                        "similarity": round(i.similarity, SHARE_DECIMALS),
                    }
                    for i in person.identities
                ],
                "suggestions": [
                    {"row_id": s.row_id, "person": s.display_name, "similarity": round(s.similarity, SHARE_DECIMALS)}
                    for s in person.suggestions
                ],
            }
        )
    return {
        "show_id": show.show_id,
        "season": show.season,
        "semantics": SEMANTICS,
        "decimals": DECIMALS,
        "episodes": episodes,
        "people": people,
        "totals": {
            "duration_s": _seconds(show.total_duration_s),
            "episodes_counted": sum(1 for e in show.episodes if e.run_id),
            "people": {p["row_id"]: p["total_s"] for p in people},
        },
        "unlinked_episodes": list(show.unlinked_episodes),
    }


# ---- writing ----------------------------------------------------------------------------------------


def write_atomically(path: Path, write: Callable[[Path], object], what: str) -> Path:
    """`write(temp)` then rename the temporary file onto `path`; on any failure the temporary file is
    removed and an OS error becomes InvalidArgument naming the file and the reason."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temp)
        os.replace(temp, path)
    except OSError as error:
        raise InvalidArgument(f"cannot write the {what} to {path}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # gone already after the rename
            temp.unlink()
    return path


def _write_text(path: Path, text: str, what: str) -> Path:
    return write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8", newline=""), what)


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def csv_text(show: orchestrator_pb2.ShowScreenTime, long: bool = False) -> str:
    """The wide table as CSV (a header, then one line per person), or the long table with `long`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if long:
        writer.writerow(LONG_COLUMNS)
        for row in long_rows(show):
            writer.writerow([_csv_value(getattr(row, c)) for c in LONG_COLUMNS])
    else:
        table = wide_table(show)
        writer.writerow(table.columns)
        for wide in table.rows:
            writer.writerow([_csv_value(wide[c]) for c in table.columns])
    return out.getvalue()


def write_csv(show: orchestrator_pb2.ShowScreenTime, path: Path, long: bool = False) -> Path:
    return _write_text(path, csv_text(show, long), "CSV")


def json_text(show: orchestrator_pb2.ShowScreenTime) -> str:
    return json.dumps(document(show), indent=1, ensure_ascii=False) + "\n"


def write_json(show: orchestrator_pb2.ShowScreenTime, path: Path) -> Path:
    return _write_text(path, json_text(show), "JSON")


def _pyarrow() -> Any:
    """pyarrow, an optional dependency of the CLI (the services' image does without it)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the writer)
    except ImportError as error:
        raise FailedPrecondition(
            "Parquet export needs pyarrow: pip install 'faceflow[parquet]' (or export --csv / --json)"
        ) from error
    return pyarrow


def parquet_schema(metadata: Mapping[str, str] | None = None) -> Any:
    pa = _pyarrow()

    return pa.schema(
        [
            pa.field("show", pa.string(), nullable=False),
            pa.field("season", pa.int32(), nullable=False),
            pa.field("ep_id", pa.string(), nullable=False),
            pa.field("episode_number", pa.int32(), nullable=False),
            pa.field("person", pa.string(), nullable=False),
            pa.field("label", pa.string(), nullable=True),
            pa.field("row_id", pa.string(), nullable=False),
            pa.field("seconds", pa.float64(), nullable=False),
            pa.field("episode_duration_s", pa.float64(), nullable=False),
        ],
        metadata=dict(metadata or {}),
    )


def parquet_table(show: orchestrator_pb2.ShowScreenTime) -> Any:
    """The long table as a pyarrow Table (typed columns; the semantics in the schema's metadata)."""
    pa = _pyarrow()

    rows = long_rows(show)
    metadata = {"faceflow.show_id": show.show_id, "faceflow.season": str(show.season), "faceflow.semantics": SEMANTICS}
    schema = parquet_schema(metadata)
    columns = {name: [getattr(row, name) for row in rows] for name in LONG_COLUMNS}
    return pa.Table.from_pydict(columns, schema=schema)


def write_parquet(show: orchestrator_pb2.ShowScreenTime, path: Path) -> Path:
    table = parquet_table(show)
    return write_atomically(path, lambda temp: _pyarrow().parquet.write_table(table, temp), "Parquet file")
