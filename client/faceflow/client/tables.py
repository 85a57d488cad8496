"""Collections of results: immutable sequences of frozen dataclasses with `to_pandas()`."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Literal, TypeVar

from faceflow.client.models import Episode, Interval, Job
from faceflow.v1 import orchestrator_pb2

RowT = TypeVar("RowT")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_pandas() needs pandas, which faceflow-client does not install by itself: "
            "pip install 'faceflow-client[pandas]'"
        ) from None
    return pandas


def _columns(row_type: type[Any]) -> list[str]:
    """A dataclass's field names, nested dataclasses flattened as "outer.inner"."""
    hints = typing.get_type_hints(row_type)
    names: list[str] = []
    for field in dataclasses.fields(row_type):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            names += [f"{field.name}.{inner}" for inner in _columns(kind)]
        else:
            names.append(field.name)
    return names


def _record(row: Any) -> dict[str, Any]:
    """One row as a flat dict: nested dataclasses as "outer.inner", enums as their string value."""
    record: dict[str, Any] = {}
    for field in dataclasses.fields(row):
        value = getattr(row, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            record.update({f"{field.name}.{k}": v for k, v in _record(value).items()})
        else:
            record[field.name] = value.value if isinstance(value, Enum) else value
    return record


@dataclass(frozen=True)
class Table(Generic[RowT]):
    """An immutable sequence of rows (frozen dataclasses); `to_pandas()` makes a DataFrame of them."""

    rows: tuple[RowT, ...]
    row_type: ClassVar[type[Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RowT]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> RowT:
        return self.rows[index]

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per item (needs the `faceflow-client[pandas]` extra)."""
        pandas = _pandas()
        return pandas.DataFrame([_record(row) for row in self.rows], columns=_columns(self.row_type))


@dataclass(frozen=True)
class ScreenTimeRow:
    """One identity's (kind "identity") or one person's (kind "person": every identity carrying that
    name, their intervals united, never summed) time on screen; `share` is of the episode's duration."""

    kind: Literal["identity", "person"]
    identity_id: str  # empty on a person row
    label: str  # the name; empty for an unnamed identity
    seconds: float
    share: float
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class ScreenTime(Table[ScreenTimeRow]):
    """Screen time of an episode's current run after review: identity rows (longest first), then person rows."""

    row_type = ScreenTimeRow
    ep_id: str = ""
    run_id: str = ""
    duration_s: float = 0.0

    @property
    def identities(self) -> tuple[ScreenTimeRow, ...]:
        return tuple(r for r in self.rows if r.kind == "identity")

    @property
    def people(self) -> tuple[ScreenTimeRow, ...]:
        return tuple(r for r in self.rows if r.kind == "person")

    def seconds_by_label(self) -> dict[str, float]:
        """{name: seconds} of the person rows."""
        return {r.label: r.seconds for r in self.people}

    @classmethod
    def from_proto(cls, message: orchestrator_pb2.ScreenTime) -> ScreenTime:
        duration = message.duration_s

        def row(kind: Literal["identity", "person"], r: orchestrator_pb2.ScreenTimeRow) -> ScreenTimeRow:
            share = r.seconds / duration if duration > 0 else 0.0
            spans = tuple((i.start_s, i.end_s) for i in r.intervals)
            return ScreenTimeRow(kind, r.identity_id, r.label, r.seconds, share, spans)

        rows = [row("identity", r) for r in message.identities] + [row("person", r) for r in message.people]
        return cls(tuple(rows), ep_id=message.ep_id, run_id=message.run_id, duration_s=duration)


@dataclass(frozen=True)
class Span:
    """One on-screen interval [start_s, end_s) of an identity or a person."""

    kind: Literal["identity", "person"]
    identity_id: str
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Timeline(Table[Span]):
    """Every on-screen interval of the screen time, flattened and ordered by start."""

    row_type = Span
    ep_id: str = ""
    run_id: str = ""

    @classmethod
    def from_screen_time(cls, screen_time: ScreenTime) -> Timeline:
        spans = [Span(r.kind, r.identity_id, r.label, s, e) for r in screen_time.rows for s, e in r.intervals]
        spans.sort(key=lambda s: (s.start_s, s.end_s, s.kind, s.label, s.identity_id))
        return cls(tuple(spans), ep_id=screen_time.ep_id, run_id=screen_time.run_id)


@dataclass(frozen=True)
class Identity:
    """An identity of the current run as review left it."""

    identity_id: str
    label: str
    seconds: float
    track_ids: tuple[int, ...]
    label_source: str  # "facebank" (auto-assigned), "review" (named by a reviewer) or "" (unknown)


@dataclass(frozen=True)
class Identities(Table[Identity]):
    """The identities of an episode's current run after review."""

    row_type = Identity
    ep_id: str = ""
    run_id: str = ""
    unassigned_track_ids: tuple[int, ...] = ()
    deleted_track_ids: tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, message: orchestrator_pb2.ReviewState) -> Identities:
        rows = tuple(
            Identity(i.identity_id, i.label, i.seconds, tuple(i.track_ids), i.label_source) for i in message.identities
        )
        return cls(
            rows,
            ep_id=message.ep_id,
            run_id=message.run_id,
            unassigned_track_ids=tuple(message.unassigned_track_ids),
            deleted_track_ids=tuple(message.deleted_track_ids),
        )


@dataclass(frozen=True)
class Track:
    """One track of a run (a line of tracks.jsonl; docs/output-contract.md). Boxes are x1, y1, x2, y2 pixels."""

    track_id: int
    identity_id: str | None  # None: no identity took the track
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    num_faces: int
    mean_quality: float
    frames: tuple[int, ...]
    boxes: tuple[tuple[float, ...], ...]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Track:
        return cls(
            track_id=int(item["track_id"]),
            identity_id=item.get("identity_id") or None,
            start_frame=int(item["start_frame"]),
            end_frame=int(item["end_frame"]),
            start_s=float(item["start_s"]),
            end_s=float(item["end_s"]),
            num_faces=int(item.get("num_faces", 0)),
            mean_quality=float(item.get("mean_quality", 0.0)),
            frames=tuple(int(f) for f in item.get("frames", ())),
            boxes=tuple(tuple(float(v) for v in box) for box in item.get("boxes", ())),
        )


@dataclass(frozen=True)
class Tracks(Table[Track]):
    """The tracks of an episode's current run, as the run wrote them (before review)."""

    row_type = Track
    ep_id: str = ""


@dataclass(frozen=True)
class Jobs(Table[Job]):
    """Jobs, oldest first."""

    row_type = Job


@dataclass(frozen=True)
class Episodes(Table[Episode]):
    """Stored episodes."""

    row_type = Episode


def parse_tracks(ep_id: str, data: bytes) -> Tracks:
    """tracks.jsonl (one JSON object per line) as Tracks."""
    rows = tuple(Track.from_json(json.loads(line)) for line in data.splitlines() if line.strip())
    return Tracks(rows, ep_id=ep_id)
