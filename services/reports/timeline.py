"""The screen-time timeline of a run as rows: one per on-screen interval, per identity and per person.

Spreadsheets and edit-decision tools want flat rows, not nested JSON. The rows are built so that
their `seconds` add up exactly (after rounding) to the totals a reader sums from them, and agree
with screentime.json's totals to within the 4-decimal rounding of its interval ends:

* identity rows are screentime.json's intervals of that identity (already the union of its faces'
  coverage, overlapping tracks counted once, short gaps bridged except across shot cuts);
* person rows are the union over every identity carrying the person's name, recomputed here from
  the identity rows, never the sum (two identities of one person on screen together count once);
* every time is rounded to `DECIMALS` decimals, `seconds` = round(end_s - start_s), and totals are
  sums of the rounded rows; so totals computed from the exported rows are reproducible exactly.

Usage: python -m services.reports.timeline RUN_DIR --csv timeline.csv --json timeline.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from services.common.errors import FailedPrecondition
from services.reports import run_files
from services.reports.cli import run_main

Kind = Literal["identity", "person"]
IDENTITY: Kind = "identity"
PERSON: Kind = "person"

# Decimals kept for every time in the export: 0.1 ms, far below a frame (33-40 ms at TV rates),
# and the precision screentime.json itself is written with.
DECIMALS = 4
# Seconds: one rounding step. Each interval length computed from rounded ends is within one step
# of the true length, which bounds how far our totals may drift from screentime.json's.
ROUNDING_STEP_S = 10.0**-DECIMALS
# Seconds: slack for float noise when comparing sums of rounded values.
FLOAT_SLACK_S = 1e-6

SEMANTICS = (
    "one row per on-screen interval [start_s, end_s) in seconds from the episode start; "
    "kind=identity rows: the union of the on-screen coverage of the identity's faces (overlapping tracks "
    "counted once; gaps up to gap_bridge_s bridged except across shot cuts); "
    "kind=person rows: the union over all identities carrying that label, never the sum; "
    f"times rounded to {DECIMALS} decimals, seconds = end_s - start_s, totals = sums of the rows"
)
CSV_COLUMNS = ("kind", "identity_id", "label", "start_s", "end_s", "seconds")
_CSV_COMMENT = "#"


@dataclass(frozen=True)
class TimelineRow:
    """One on-screen interval. Person rows have no identity_id: they span identities."""

    kind: Kind
    identity_id: str | None
    label: str | None
    start_s: float
    end_s: float
    seconds: float


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted disjoint union of [start, end) intervals; touching intervals merge (one appearance)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _rounded_intervals(raw: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise FailedPrecondition(f"screentime.json: {where} has no list of intervals")
    pairs: list[tuple[float, float]] = []
    for pair in raw:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise FailedPrecondition(f"screentime.json: {where} has a malformed interval {pair!r}")
        start, end = _round(pair[0]), _round(pair[1])
        if end < start:
            raise FailedPrecondition(f"screentime.json: {where} has an interval that ends before it starts: {pair!r}")
        pairs.append((start, end))
    return _union(pairs)


def _rows(
    kind: Kind, identity_id: str | None, label: str | None, intervals: list[tuple[float, float]]
) -> list[TimelineRow]:
    return [TimelineRow(kind, identity_id, label, s, e, _round(e - s)) for s, e in intervals]


def _check_total(where: str, rows: Sequence[TimelineRow], stated: object) -> None:
    """Refuse a screentime.json whose stated total does not match its own intervals.

    The tolerance is the rounding of the interval ends (one step per row, one more for the stated
    total) and nothing more, so a hand-edited or truncated file is caught rather than exported
    with totals that disagree.
    """
    if stated is None:
        return
    if isinstance(stated, bool) or not isinstance(stated, int | float):
        raise FailedPrecondition(f"screentime.json: {where} has a non-numeric seconds {stated!r}")
    ours = float(sum(row.seconds for row in rows))
    tolerance = ROUNDING_STEP_S * (len(rows) + 1) + FLOAT_SLACK_S  # one step per row, one for the total
    if abs(ours - stated) > tolerance:
        raise FailedPrecondition(
            f"screentime.json is inconsistent: {where}'s intervals add up to {ours:.4f} s but its seconds say {stated}"
        )


def timeline_rows(screentime: Mapping[str, Any], identities: Mapping[str, Any] | None = None) -> list[TimelineRow]:
    """Identity rows (in screentime.json's order, longest screen time first), then person rows by label.

    `identities` (identities.json), when given, is the naming authority: each identity's label is
    taken from it, and an identity it does not know makes the pair inconsistent (files from two
    different runs), which is refused rather than silently reported.
    """
    entries = screentime.get("identities")
    if not isinstance(entries, list):
        raise FailedPrecondition("screentime.json has no 'identities' list")
    names: dict[str, str | None] | None = None
    if identities is not None:
        names = {str(i["identity_id"]): i.get("label") for i in identities.get("identities", [])}
    identity_rows: list[TimelineRow] = []
    by_label: dict[str, list[tuple[float, float]]] = {}
    for entry in entries:
        identity_id = str(entry.get("identity_id"))
        label = entry.get("label")
        if names is not None:
            if identity_id not in names:
                raise FailedPrecondition(
                    f"identity {identity_id!r} is in screentime.json but not in identities.json: files of two runs?"
                )
            label = names[identity_id]
        intervals = _rounded_intervals(entry.get("intervals"), f"identity {identity_id!r}")
        rows = _rows(IDENTITY, identity_id, label, intervals)
        _check_total(f"identity {identity_id!r}", rows, entry.get("seconds"))
        identity_rows += rows
        if label is not None:
            by_label.setdefault(str(label), []).extend(intervals)
    stated_people = {str(p.get("label")): p.get("seconds") for p in screentime.get("people") or []}
    person_rows: list[TimelineRow] = []
    for label in sorted(by_label):
        rows = _rows(PERSON, None, label, _union(by_label[label]))
        _check_total(f"person {label!r}", rows, stated_people.get(label))
        person_rows += rows
    return identity_rows + person_rows


@dataclass(frozen=True)
class Totals:
    """Seconds on screen per identity id and per person label, summed from rounded rows."""

    identities: dict[str, float]
    people: dict[str, float]


def totals(rows: Iterable[TimelineRow]) -> Totals:
    """Totals as a reader of the export would compute them; an identity without rows is absent (0 s)."""
    identities: dict[str, float] = {}
    people: dict[str, float] = {}
    for row in rows:
        if row.kind == IDENTITY:
            key = str(row.identity_id)
            identities[key] = identities.get(key, 0.0) + row.seconds
        else:
            key = str(row.label)
            people[key] = people.get(key, 0.0) + row.seconds
    return Totals({k: _round(v) for k, v in identities.items()}, {k: _round(v) for k, v in people.items()})


# ---- CSV -------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def write_csv(rows: Iterable[TimelineRow], path: Path, ep_id: str | None = None) -> Path:
    """Rows as CSV, preceded by '#' comment lines stating the semantics (read_csv skips them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(f"{_CSV_COMMENT} faceflow screen-time timeline{f' of episode {ep_id}' if ep_id else ''}\n")
        out.write(f"{_CSV_COMMENT} semantics: {SEMANTICS}\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.kind,
                    row.identity_id or "",
                    row.label or "",
                    _fmt(row.start_s),
                    _fmt(row.end_s),
                    _fmt(row.seconds),
                ]
            )
    return path


def read_csv(path: Path) -> list[TimelineRow]:
    """Rows from write_csv's output (empty identity_id / label read back as None)."""
    with path.open(encoding="utf-8", newline="") as source:
        lines = [line for line in source if not line.startswith(_CSV_COMMENT)]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise FailedPrecondition(f"{path} is not a timeline CSV: columns {reader.fieldnames}, expected {CSV_COLUMNS}")
    return [
        TimelineRow(
            kind=PERSON if r["kind"] == PERSON else IDENTITY,
            identity_id=r["identity_id"] or None,
            label=r["label"] or None,
            start_s=float(r["start_s"]),
            end_s=float(r["end_s"]),
            seconds=float(r["seconds"]),
        )
        for r in reader
    ]


# ---- JSON ------------------------------------------------------------------------------------------


def write_json(rows: Sequence[TimelineRow], path: Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Rows, their totals and the semantics as one JSON object; `meta` (ep_id, fps, ...) is copied in."""
    summed = totals(rows)
    document = {
        **(meta or {}),
        "semantics": SEMANTICS,
        "decimals": DECIMALS,
        "rows": [asdict(row) for row in rows],
        "totals": {"identities": summed.identities, "people": summed.people},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> list[TimelineRow]:
    """Rows from write_json's output."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return [TimelineRow(**row) for row in document["rows"]]


# ---- run folder and command line -------------------------------------------------------------------


def load_rows(run_dir: Path) -> tuple[list[TimelineRow], dict[str, Any]]:
    """Rows of a run folder and the metadata worth copying into an export."""
    screentime = run_files.read_json(run_dir, run_files.reviewed(run_dir, run_files.SCREENTIME))
    identities = run_files.read_json(run_dir, run_files.reviewed(run_dir, run_files.IDENTITIES))
    meta = {key: screentime.get(key) for key in ("ep_id", "fps", "duration_s", "gap_bridge_s")}
    return timeline_rows(screentime, identities), meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.reports.timeline", description="Export a run's screen-time timeline."
    )
    parser.add_argument("run_dir", type=Path, help="a run folder: DATA_ROOT/episodes/EP_ID[/runs/RUN_ID]")
    parser.add_argument("--csv", type=Path, help="write the rows as CSV here")
    parser.add_argument("--json", type=Path, help="write the rows, totals and semantics as JSON here")
    args = parser.parse_args(argv)
    if args.csv is None and args.json is None:
        parser.error("give --csv FILE and/or --json FILE")

    def export() -> None:
        rows, meta = load_rows(args.run_dir)
        if args.csv is not None:
            print(write_csv(rows, args.csv, meta.get("ep_id")))
        if args.json is not None:
            print(write_json(rows, args.json, meta))

    return run_main(export)


if __name__ == "__main__":
    sys.exit(main())
