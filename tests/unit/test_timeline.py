"""The screen-time timeline export: unions not sums, rows that add up to the totals, lossless files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import FailedPrecondition, NotFound
from services.reports import timeline
from services.reports.timeline import IDENTITY, PERSON, TimelineRow, timeline_rows, totals

TOLERANCE_S = 1e-6


def _identity(identity_id: str, label: str | None, intervals: list[list[float]]) -> dict[str, Any]:
    return {
        "identity_id": identity_id,
        "label": label,
        "seconds": round(sum(e - s for s, e in intervals), 4),
        "intervals": intervals,
    }


def _screentime(*identities: dict[str, Any], people: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"ep_id": "ep", "fps": 25.0, "duration_s": 30.0, "gap_bridge_s": 0.5, "identities": list(identities)}


def _person_rows(rows: list[TimelineRow], label: str) -> list[tuple[float, float]]:
    return [(r.start_s, r.end_s) for r in rows if r.kind == PERSON and r.label == label]


def test_two_identities_of_one_person_overlap_and_the_person_gets_their_union() -> None:
    screentime = _screentime(
        _identity("id_a", "Ann", [[0.0, 4.0], [10.0, 12.0]]),
        _identity("id_b", "Ann", [[3.0, 6.0], [11.5, 13.0]]),
        _identity("id_c", "Bob", [[2.0, 5.0]]),
    )
    rows = timeline_rows(screentime)
    assert _person_rows(rows, "Ann") == [(0.0, 6.0), (10.0, 13.0)]
    summed = totals(rows)
    assert summed.people["Ann"] == 9.0  # not 4 + 2 + 3 + 1.5 = 10.5
    assert summed.identities == {"id_a": 6.0, "id_b": 4.5, "id_c": 3.0}
    assert summed.people["Bob"] == 3.0
    assert all(r.identity_id is None for r in rows if r.kind == PERSON)


def test_touching_intervals_of_two_identities_make_one_person_row() -> None:
    rows = timeline_rows(_screentime(_identity("a", "Ann", [[0.0, 2.0]]), _identity("b", "Ann", [[2.0, 3.5]])))
    assert _person_rows(rows, "Ann") == [(0.0, 3.5)]


def test_unlabelled_identities_have_identity_rows_but_no_person_rows() -> None:
    rows = timeline_rows(_screentime(_identity("id_1", None, [[1.0, 2.0]])))
    assert rows == [TimelineRow(IDENTITY, "id_1", None, 1.0, 2.0, 1.0)]


def test_rows_add_up_to_the_totals_of_screentime_json_at_a_fractional_frame_rate() -> None:
    """29.97 fps frame times are not whole 0.1 ms; the file rounds ends and totals separately."""
    fps = 30000 / 1001
    raw = [(f0 / fps, f1 / fps) for f0, f1 in [(0, 37), (50, 91), (120, 121), (300, 777)]]
    other = [(f0 / fps, f1 / fps) for f0, f1 in [(20, 70), (100, 130)]]
    entry = {
        "identity_id": "id_1",
        "label": "Ann",
        "seconds": round(sum(e - s for s, e in raw), 4),
        "intervals": [[round(s, 4), round(e, 4)] for s, e in raw],
    }
    second = {
        "identity_id": "id_2",
        "label": "Ann",
        "seconds": round(sum(e - s for s, e in other), 4),
        "intervals": [[round(s, 4), round(e, 4)] for s, e in other],
    }
    union = [(0 / fps, 91 / fps), (100 / fps, 130 / fps), (300 / fps, 777 / fps)]
    people = [{"label": "Ann", "seconds": round(sum(e - s for s, e in union), 4), "intervals": []}]
    screentime = {**_screentime(entry, second), "people": people}
    rows = timeline_rows(screentime)
    summed = totals(rows)
    for identity in (entry, second):
        ours = [r for r in rows if r.kind == IDENTITY and r.identity_id == identity["identity_id"]]
        assert all(r.seconds == round(r.end_s - r.start_s, timeline.DECIMALS) for r in ours)
        # The rule: totals are the sums of the rounded rows, exactly; within rounding of the file's.
        assert summed.identities[identity["identity_id"]] == pytest.approx(sum(r.seconds for r in ours), abs=1e-9)
        assert abs(summed.identities[identity["identity_id"]] - identity["seconds"]) <= 4 * timeline.ROUNDING_STEP_S
    assert abs(summed.people["Ann"] - people[0]["seconds"]) <= 3 * timeline.ROUNDING_STEP_S


def test_rows_of_a_25_fps_run_add_up_exactly_to_screentime_json() -> None:
    screentime = _screentime(
        _identity("id_0002", None, [[0.0, 4.0], [9.0, 13.0], [16.56, 19.0], [28.0, 30.0]]),
        _identity("id_0001", "Barack Obama", [[0.0, 4.0], [21.0, 26.0], [28.0, 30.0]]),
    )
    summed = totals(timeline_rows(screentime))
    for entry in screentime["identities"]:
        assert abs(summed.identities[entry["identity_id"]] - entry["seconds"]) <= TOLERANCE_S
    assert summed.identities["id_0002"] == 12.44


def test_a_total_that_disagrees_with_its_intervals_is_refused() -> None:
    bad = _identity("id_1", "Ann", [[0.0, 4.0]]) | {"seconds": 5.0}
    with pytest.raises(FailedPrecondition, match="id_1"):
        timeline_rows(_screentime(bad))
    wrong_person = {**_screentime(_identity("id_1", "Ann", [[0.0, 4.0]])), "people": [{"label": "Ann", "seconds": 8}]}
    with pytest.raises(FailedPrecondition, match="Ann"):
        timeline_rows(wrong_person)


def test_identities_json_names_identities_and_must_know_all_of_them() -> None:
    screentime = _screentime(_identity("id_1", "Old name", [[0.0, 1.0]]))
    named = {"identities": [{"identity_id": "id_1", "label": "New name"}]}
    assert {r.label for r in timeline_rows(screentime, named)} == {"New name"}
    with pytest.raises(FailedPrecondition, match="not in identities.json"):
        timeline_rows(screentime, {"identities": []})


def test_csv_and_json_round_trip_and_state_the_semantics(tmp_path: Path) -> None:
    screentime = _screentime(
        _identity("id_a", 'Ann, "the" host', [[0.0, 4.0], [10.0, 12.3333]]),
        _identity("id_b", 'Ann, "the" host', [[3.0, 6.0]]),
        _identity("id_c", None, [[1.25, 2.5]]),
    )
    rows = timeline_rows(screentime)
    csv_path = timeline.write_csv(rows, tmp_path / "t.csv", "ep")
    json_path = timeline.write_json(rows, tmp_path / "t.json", {"ep_id": "ep"})
    assert timeline.read_csv(csv_path) == rows
    assert timeline.read_json(json_path) == rows
    text = csv_path.read_text()
    assert text.startswith("# faceflow screen-time timeline of episode ep\n# semantics: ")
    assert "never the sum" in text.splitlines()[1]
    document = json.loads(json_path.read_text())
    assert document["semantics"] == timeline.SEMANTICS and document["ep_id"] == "ep"
    assert document["totals"]["people"] == {'Ann, "the" host': 8.3333}
    assert document["totals"]["identities"] == totals(rows).identities


def test_an_empty_run_exports_headers_and_no_rows(tmp_path: Path) -> None:
    rows = timeline_rows({"identities": [], "people": []})
    assert rows == []
    csv_path = timeline.write_csv(rows, tmp_path / "empty.csv")
    assert csv_path.read_text().splitlines()[-1] == ",".join(timeline.CSV_COLUMNS)
    assert timeline.read_csv(csv_path) == []
    document = json.loads(timeline.write_json(rows, tmp_path / "empty.json").read_text())
    assert document["rows"] == [] and document["totals"] == {"identities": {}, "people": {}}


def test_an_identity_without_screen_time_has_no_rows() -> None:
    rows = timeline_rows(_screentime({"identity_id": "id_1", "label": "Ann", "seconds": 0.0, "intervals": []}))
    assert rows == [] and totals(rows).identities == {}


def test_a_run_folder_without_screentime_json_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        timeline.load_rows(tmp_path / "nope")
    (tmp_path / "identities.json").write_text('{"identities": []}')
    with pytest.raises(FailedPrecondition, match="screentime.json"):
        timeline.load_rows(tmp_path)


def test_command_line_writes_both_files_and_reports_bad_input_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "screentime.json").write_text(json.dumps(_screentime(_identity("id_1", "Ann", [[0.0, 1.5]]))))
    (run / "identities.json").write_text(json.dumps({"identities": [{"identity_id": "id_1", "label": "Ann"}]}))
    code = timeline.main([str(run), "--csv", str(tmp_path / "o.csv"), "--json", str(tmp_path / "o.json")])
    assert code == 0
    assert [r.seconds for r in timeline.read_csv(tmp_path / "o.csv")] == [1.5, 1.5]
    assert timeline.main([str(tmp_path), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "screentime.json" in capsys.readouterr().err
