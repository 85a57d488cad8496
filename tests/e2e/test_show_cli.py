"""`faceflow show SHOW screentime | link | unlink | name` against the shared real stack (as after
`faceflow up`): two episodes of show "cli-show" made from the sample video, their season roll-up as
a table, JSON, CSV and Parquet, and cross-episode decisions made from the command line."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.stack import LocalStack
from tests.e2e.test_jobs_cli import faceflow

pytestmark = pytest.mark.e2e
SHOW = "cli-show"
EPISODES = ("cli-show-e1", "cli-show-e2")
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "episode.mp4"
TOLERANCE_S = 1e-3  # the exports round seconds to 4 decimals


@pytest.fixture(scope="module")
def season(stubs: dict, request: pytest.FixtureRequest) -> tuple[str, str]:
    """Two episodes (S1E1, S1E2) of the sample video, run at stride 5 without crops."""
    video = SAMPLE if SAMPLE.is_file() else request.getfixturevalue("sample_episode") / "episode.mp4"
    orchestrator = stubs["orchestrator"]
    for number, ep_id in enumerate(EPISODES, 1):
        orchestrator.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(
                ep_id=ep_id, source_path=str(video), show_id=SHOW, season=1, episode_number=number
            )
        )
        run = orchestrator_pb2.SubmitJobRequest(
            ep_id=ep_id, options=orchestrator_pb2.RunOptions(stride=5, skip_crops=True)
        )
        final = list(orchestrator.RunEpisode(run))[-1]
        assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    return EPISODES


def _roll_up(stack: LocalStack, *args: str) -> dict:
    done = faceflow(stack, "show", SHOW, *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _episode_identities(stubs: dict, ep_id: str) -> dict[str, orchestrator_pb2.ScreenTimeRow]:
    screen = stubs["orchestrator"].GetScreenTime(orchestrator_pb2.GetScreenTimeRequest(ep_id=ep_id))
    return {row.identity_id: row for row in screen.identities}


def test_screentime_json_csv_and_parquet_agree_with_each_episode(
    stack: LocalStack, stubs: dict, season: tuple[str, str], tmp_path: Path
) -> None:
    document = _roll_up(stack, "--season", "1", "screentime")
    assert [(e["ep_id"], e["column"], e["counted"]) for e in document["episodes"]] == [
        (EPISODES[0], "S1E1", True),
        (EPISODES[1], "S1E2", True),
    ]
    assert document["people"], "the sample has people in it"
    # Every identity of each episode's own screen time is in exactly one row, with its seconds there.
    own = {ep: _episode_identities(stubs, ep) for ep in season}
    placed: dict[tuple[str, str], float] = {}
    for person in document["people"]:
        assert person["total_s"] == pytest.approx(sum(person["seconds"].values()), abs=1e-6)
        by_episode: dict[str, float] = defaultdict(float)
        for identity in person["identities"]:
            key = (identity["ep_id"], identity["identity_id"])
            assert key not in placed, key
            placed[key] = identity["seconds"]
            by_episode[identity["ep_id"]] += own[identity["ep_id"]][identity["identity_id"]].seconds
        for ep in season:
            assert person["seconds"][ep] == pytest.approx(by_episode[ep], abs=TOLERANCE_S), (person["person"], ep)
    assert set(placed) == {(ep, identity) for ep in season for identity in own[ep]}
    # The same video twice: each episode's people add up to the same seconds.
    sums = [sum(p["seconds"][ep] for p in document["people"]) for ep in season]
    assert sums[0] == pytest.approx(sums[1], abs=TOLERANCE_S)

    wide_csv, long_csv, parquet = tmp_path / "season.csv", tmp_path / "long" / "season.csv", tmp_path / "s.parquet"
    done = faceflow(
        stack, "show", SHOW, "screentime", "--season", "1", "--csv", str(wide_csv), "--parquet", str(parquet)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"csv (wide): {wide_csv}" in done.stderr and f"parquet: {parquet}" in done.stderr
    header = done.stdout.splitlines()[1].split()
    assert header[:3] == ["person", "S1E1", "S1E2"] and header[3:6] == ["Total", "Share", "Episodes"], done.stdout
    totals = {p["row_id"]: p["total_s"] for p in document["people"]}
    with wide_csv.open(newline="", encoding="utf-8") as source:
        wide = list(csv.DictReader(source))
    assert [r["row_id"] for r in wide] == [p["row_id"] for p in document["people"]]
    for row in wide:
        assert float(row["total_s"]) == pytest.approx(float(row["S1E1"]) + float(row["S1E2"]), abs=1e-6)
        assert float(row["total_s"]) == pytest.approx(totals[row["row_id"]], abs=1e-6)

    long_done = faceflow(stack, "show", SHOW, "--season", "1", "screentime", "--csv", str(long_csv), "--long")
    assert long_done.returncode == 0, long_done.stderr[-3000:]
    with long_csv.open(newline="", encoding="utf-8") as source:
        long = list(csv.DictReader(source))
    table = pq.read_table(parquet)
    assert str(table.schema.field("season").type) == "int32" and str(table.schema.field("seconds").type) == "double"
    for rows in (long, table.to_pylist()):
        assert len(rows) == 2 * len(document["people"])
        summed: dict[str, float] = defaultdict(float)
        for row in rows:
            assert row["show"] == SHOW and int(row["season"]) == 1
            summed[str(row["row_id"])] += float(row["seconds"])
        assert summed == pytest.approx(totals, abs=1e-6)


def test_unlink_link_and_name_an_unknown_person_across_both_episodes(
    stack: LocalStack, stubs: dict, season: tuple[str, str]
) -> None:
    document = _roll_up(stack, "screentime")
    # The same video twice: its longest unknown person is linked across both episodes automatically.
    linked = next(
        p for p in document["people"] if p["label"] is None and {i["ep_id"] for i in p["identities"]} == set(season)
    )
    first, second = (
        next(f"{i['ep_id']}/{i['identity_id']}" for i in linked["identities"] if i["ep_id"] == ep) for ep in season
    )

    document = _roll_up(stack, "unlink", second)
    rows = {f"{i['ep_id']}/{i['identity_id']}": p for p in document["people"] for i in p["identities"]}
    assert rows[first]["row_id"] != rows[second]["row_id"]
    assert [i["link"] for i in rows[second]["identities"]] == ["single"]

    document = _roll_up(stack, "link", first, second)
    rows = {f"{i['ep_id']}/{i['identity_id']}": p for p in document["people"] for i in p["identities"]}
    assert rows[first]["row_id"] == rows[second]["row_id"] and rows[first]["row_id"].startswith("link:")
    assert {i["link"] for i in rows[first]["identities"]} == {"confirmed"}

    named = faceflow(stack, "show", SHOW, "name", first, "Recurring Person")
    assert named.returncode == 0, named.stderr[-3000:]
    line = next(row for row in named.stdout.splitlines() if row.startswith("Recurring Person"))
    assert first in line and second in line, named.stdout
    document = _roll_up(stack, "screentime")
    person = next(p for p in document["people"] if p["row_id"] == "person:Recurring Person")
    assert person["label"] == "Recurring Person" and person["episodes_appeared"] == 2
    for ref in (first, second):
        ep_id, identity_id = ref.split("/")
        assert _episode_identities(stubs, ep_id)[identity_id].label == "Recurring Person"
        assert person["seconds"][ep_id] > 0


def test_errors_are_clear(stack: LocalStack, season: tuple[str, str], tmp_path: Path) -> None:
    # Malformed references are refused before a stack is started or a call made.
    for args in (["link", f"{season[0]}/id_0001"], ["link", "no-slash", f"{season[1]}/id_0001"], ["unlink", "../x/y"]):
        refused = faceflow(None, "--data-root", str(tmp_path / "unused"), "show", SHOW, *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("error: ") and "starting a local stack" not in refused.stderr
        assert not (tmp_path / "unused").exists()
    missing = faceflow(stack, "show", "no-such-show", "screentime")
    assert missing.returncode == 2 and "no episodes" in missing.stderr, missing.stderr
    unknown = faceflow(stack, "show", SHOW, "unlink", f"{season[0]}/id_9999")
    assert unknown.returncode == 2 and "id_9999" in unknown.stderr, unknown.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = faceflow(stack, "show", SHOW, "screentime", "--csv", str(blocker / "x.csv"))
    assert unwritable.returncode == 2 and f"cannot write the CSV to {blocker}/x.csv" in unwritable.stderr
