"""The season roll-up's exports (services/reports/show_export.py) on a constructed ShowScreenTime."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faceflow.v1 import orchestrator_pb2 as pb

from services.common.errors import FailedPrecondition, InvalidArgument
from services.reports import show_export


def _show() -> pb.ShowScreenTime:
    """Three episodes of season 1 (the third without a run), a named person, two unknown people."""
    episodes = [
        pb.ShowEpisode(ep_id="s1e01", season=1, episode_number=1, run_id="run-a", duration_s=1320.5, reviewed=True),
        pb.ShowEpisode(ep_id="s1e02", season=1, episode_number=2, run_id="run-b", duration_s=1290.25),
        pb.ShowEpisode(ep_id="s1e03", season=1, episode_number=3, run_id="", duration_s=1300.0),
    ]
    counted = 1320.5 + 1290.25

    def ref(ep: str, identity: str, seconds: float, link: str, similarity: float = 0.0) -> pb.LinkedIdentity:
        return pb.LinkedIdentity(
            identity=pb.IdentityRef(ep_id=ep, identity_id=identity), seconds=seconds, link=link, similarity=similarity
        )

    def person(row_id: str, label: str, name: str, seconds: list[float], identities: list) -> pb.ShowPersonRow:
        total = float(sum(seconds))
        return pb.ShowPersonRow(
            row_id=row_id,
            label=label,
            display_name=name,
            seconds=seconds,
            total_s=total,
            share=total / counted,
            episodes_appeared=sum(1 for s in seconds if s > 0),
            identities=identities,
        )

    alice = person(
        "person:Alice",
        "Alice",
        "Alice",
        [301.123456, 250.1, 0.0],
        [ref("s1e01", "id_0001", 301.123456, "named"), ref("s1e02", "id_0004", 250.1, "named")],
    )
    first = person(
        "link:lnk-abc",
        "",
        "unknown person #1",
        [12.30000000001, 7.25, 0.0],
        [ref("s1e01", "id_0002", 12.3, "confirmed"), ref("s1e02", "id_0001", 7.25, "confirmed")],
    )
    first.suggestions.append(pb.LinkSuggestion(row_id="unknown:s1e02/id_0003", display_name="unknown person #2"))
    second = person(
        "unknown:s1e02/id_0003", "", "unknown person #2", [0.0, 3.5, 0.0], [ref("s1e02", "id_0003", 3.5, "single")]
    )
    return pb.ShowScreenTime(
        show_id="cli-show",
        season=1,
        episodes=episodes,
        people=[alice, first, second],
        total_duration_s=counted,
    )


def test_long_rows_are_every_person_by_every_episode() -> None:
    show = _show()
    rows = show_export.long_rows(show)
    assert len(rows) == 3 * 3
    assert [(r.person, r.ep_id) for r in rows[:3]] == [("Alice", "s1e01"), ("Alice", "s1e02"), ("Alice", "s1e03")]
    alice = rows[0]
    assert (alice.show, alice.season, alice.episode_number, alice.label, alice.row_id) == (
        "cli-show",
        1,
        1,
        "Alice",
        "person:Alice",
    )
    assert alice.seconds == 301.1235 and alice.episode_duration_s == 1320.5  # rounded to DECIMALS
    unknown = [r for r in rows if r.row_id == "link:lnk-abc"]
    assert [r.seconds for r in unknown] == [12.3, 7.25, 0.0] and {r.label for r in unknown} == {None}


def test_wide_totals_are_the_sums_of_the_long_rows() -> None:
    show = _show()
    wide = show_export.wide_table(show)
    assert wide.episode_columns == ["S1E1", "S1E2", "S1E3"]
    assert wide.columns == [
        "person",
        "label",
        "row_id",
        "S1E1",
        "S1E2",
        "S1E3",
        "total_s",
        "share",
        "episodes_appeared",
    ]
    long = show_export.long_rows(show)
    for row in wide.rows:
        mine = [r for r in long if r.row_id == row["row_id"]]
        assert row["total_s"] == pytest.approx(sum(r.seconds for r in mine), abs=1e-9)
        assert [row[c] for c in wide.episode_columns] == [r.seconds for r in mine]
        assert row["episodes_appeared"] == sum(1 for r in mine if r.seconds > 0)
    alice = wide.rows[0]
    assert alice["person"] == "Alice" and alice["total_s"] == pytest.approx(551.2235)
    assert alice["share"] == pytest.approx(round((301.123456 + 250.1) / (1320.5 + 1290.25), 6))
    assert wide.rows[1]["label"] is None and wide.rows[1]["person"] == "unknown person #1"


def test_episode_columns_stay_distinct() -> None:
    episodes = [
        pb.ShowEpisode(ep_id="a", season=1, episode_number=1),
        pb.ShowEpisode(ep_id="b", season=1, episode_number=1),  # the same S1E1 twice: ids instead
        pb.ShowEpisode(ep_id="pilot"),  # no number: its id
        pb.ShowEpisode(ep_id="total_s"),  # an id that is a fixed column's name
    ]
    assert show_export.episode_columns(episodes) == ["a", "b", "pilot", "episode:total_s"]


def test_misaligned_seconds_are_refused() -> None:
    show = _show()
    show.people[0].seconds.append(1.0)
    with pytest.raises(InvalidArgument, match="4 per-episode figures for 3 episodes"):
        show_export.long_rows(show)


def test_csv_round_trips_wide_and_long(tmp_path: Path) -> None:
    show = _show()
    wide = show_export.wide_table(show)
    path = show_export.write_csv(show, tmp_path / "out" / "season.csv")
    with path.open(newline="", encoding="utf-8") as source:
        read = list(csv.DictReader(source))
    assert list(read[0]) == wide.columns
    for got, want in zip(read, wide.rows, strict=True):
        assert got["person"] == want["person"] and got["row_id"] == want["row_id"]
        assert got["label"] == (want["label"] or "")
        for column in [*wide.episode_columns, "total_s", "share"]:
            assert float(got[column]) == want[column]
        assert int(got["episodes_appeared"]) == want["episodes_appeared"]
        assert float(got["total_s"]) == pytest.approx(sum(float(got[c]) for c in wide.episode_columns), abs=1e-9)

    long_path = show_export.write_csv(show, tmp_path / "long.csv", long=True)
    with long_path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        assert tuple(reader.fieldnames or ()) == show_export.LONG_COLUMNS
        rows = list(reader)
    want_long = show_export.long_rows(show)
    assert len(rows) == len(want_long)
    for got, row in zip(rows, want_long, strict=True):
        assert (got["show"], int(got["season"]), got["ep_id"], int(got["episode_number"])) == (
            row.show,
            row.season,
            row.ep_id,
            row.episode_number,
        )
        assert (got["person"], got["label"] or None, got["row_id"]) == (row.person, row.label, row.row_id)
        assert float(got["seconds"]) == row.seconds and float(got["episode_duration_s"]) == row.episode_duration_s


def test_parquet_round_trips_schema_and_values(tmp_path: Path) -> None:
    show = _show()
    path = show_export.write_parquet(show, tmp_path / "season.parquet")
    table = pq.read_table(path)
    assert table.schema.names == list(show_export.LONG_COLUMNS)
    types = {f.name: f.type for f in table.schema}
    assert types["season"] == pa.int32() and types["episode_number"] == pa.int32()
    assert types["seconds"] == pa.float64() and types["episode_duration_s"] == pa.float64()
    assert types["show"] == pa.string() and types["label"] == pa.string()
    assert table.schema.metadata[b"faceflow.show_id"] == b"cli-show"
    assert table.to_pylist() == [
        {c: getattr(row, c) for c in show_export.LONG_COLUMNS} for row in show_export.long_rows(show)
    ]
    assert table.column("label").null_count == 6  # the two unknown people, in three episodes


def test_json_structure(tmp_path: Path) -> None:
    show = _show()
    document = json.loads(show_export.write_json(show, tmp_path / "season.json").read_text(encoding="utf-8"))
    assert document == json.loads(show_export.json_text(show))
    assert (document["show_id"], document["season"], document["decimals"]) == ("cli-show", 1, show_export.DECIMALS)
    assert [e["ep_id"] for e in document["episodes"]] == ["s1e01", "s1e02", "s1e03"]
    assert [e["column"] for e in document["episodes"]] == ["S1E1", "S1E2", "S1E3"]
    assert [e["counted"] for e in document["episodes"]] == [True, True, False]
    unknown = document["people"][1]
    assert unknown["person"] == "unknown person #1" and unknown["label"] is None
    assert unknown["seconds"] == {"s1e01": 12.3, "s1e02": 7.25, "s1e03": 0.0}
    assert unknown["total_s"] == pytest.approx(19.55)
    assert unknown["identities"][0] == {
        "ep_id": "s1e01",
        "identity_id": "id_0002",
        "seconds": 12.3,
        "link": "confirmed",
        "similarity": 0.0,
    }
    assert unknown["suggestions"] == [
        {"row_id": "unknown:s1e02/id_0003", "person": "unknown person #2", "similarity": 0.0}
    ]
    for person in document["people"]:
        assert person["total_s"] == pytest.approx(sum(person["seconds"].values()), abs=1e-9)
        assert document["totals"]["people"][person["row_id"]] == person["total_s"]
    assert document["totals"]["duration_s"] == 2610.75 and document["totals"]["episodes_counted"] == 2


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("kind", ["csv", "json", "parquet"])
def test_an_unwritable_path_is_a_clear_error_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    show = _show()
    write = {
        "csv": show_export.write_csv,
        "json": show_export.write_json,
        "parquet": show_export.write_parquet,
    }[kind]
    # The target is a folder: the temporary file is written, the rename onto it fails.
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(InvalidArgument, match=f"cannot write the .* to {folder}"):
        write(show, folder)
    assert folder.is_dir() and not any(folder.iterdir())
    assert _leftovers(tmp_path) == []
    # Its folder is a file: nothing can be created there.
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(InvalidArgument, match="cannot write the .* to .*a-file/out"):
        write(show, blocker / f"out.{kind}")
    assert blocker.read_text() == "keep me" and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    show = _show()
    path = show_export.write_parquet(show, tmp_path / "season.parquet")
    before = path.read_bytes()

    def broken(table: object, where: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(InvalidArgument, match="No space left on device"):
        show_export.write_parquet(show, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_parquet_without_pyarrow_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pyarrow is the CLI's optional extra (the service image does without it): a clear error, no file."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    target = tmp_path / "season.parquet"
    with pytest.raises(FailedPrecondition, match=r"faceflow\[parquet\]"):
        show_export.write_parquet(_show(), target)
    assert list(tmp_path.iterdir()) == []
