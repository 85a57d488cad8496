"""bench.trackers' pure parts: rows from scored runs, the comparison with the baseline, the table."""

from __future__ import annotations

from typing import Any

import pytest

from bench.trackers import compare, markdown, row


def _eval(idf1: float, switches: int, frags: int, occl_idf1: float, occl_switches: int) -> dict[str, Any]:
    return {
        "idf1": idf1,
        "id_switches": switches,
        "fragmentations": frags,
        "mota": 0.9,
        "recall": 0.98,
        "precision": 1.0,
        "tracks_spanning_cut": 0,
        "bcubed_f": 0.95,
        "predicted_identity_count": 6,
        "true_person_count": 5,
        "mean_abs_screentime_rel_error": 0.04,
        "subsets": {
            "occlusion": {"idf1": occl_idf1, "id_switches": occl_switches, "fragmentations": 1, "recall": 0.97},
            "crossing": {"idf1": 0.1, "id_switches": 99, "fragmentations": 99, "recall": 0.1},
        },
    }


def _runs(walls: list[float], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"wall_s": w, "eval": evaluation} for w in walls]


def test_row_takes_the_median_wall_and_the_occlusion_subset() -> None:
    r = row("bytetrack", 1, _runs([30.0, 10.0, 20.0], _eval(0.9, 8, 6, 0.8, 6)))
    assert r["wall_s"] == 20.0 and r["repetitions"] == 3 and r["scores_identical"]
    assert (r["idf1"], r["id_switches"], r["fragmentations"]) == (0.9, 8, 6)
    assert (r["occlusion_idf1"], r["occlusion_id_switches"]) == (0.8, 6)  # not the "crossing" subset
    differing = [{"wall_s": 1.0, "eval": _eval(0.9, 8, 6, 0.8, 6)}, {"wall_s": 1.0, "eval": _eval(0.9, 7, 6, 0.8, 6)}]
    assert not row("bytetrack", 1, differing)["scores_identical"]


def test_row_without_an_occlusion_subset_has_none() -> None:
    evaluation = _eval(0.9, 8, 6, 0.8, 6)
    evaluation["subsets"] = {}
    assert row("bytetrack", 5, _runs([1.0], evaluation))["occlusion_idf1"] is None


def test_compare_with_the_baseline_at_the_same_stride() -> None:
    rows = [
        row("bytetrack", 1, _runs([100.0], _eval(0.90, 8, 6, 0.80, 6))),
        row("strongsort", 1, _runs([130.0], _eval(0.95, 2, 3, 0.92, 1))),
        row("bytetrack", 5, _runs([40.0], _eval(0.88, 10, 2, 0.70, 8))),
        row("strongsort", 5, _runs([50.0], _eval(0.93, 0, 2, 0.90, 0))),
    ]
    compare(rows)
    assert "vs_baseline" not in rows[0] and "vs_baseline" not in rows[2]
    v1, v5 = rows[1]["vs_baseline"], rows[3]["vs_baseline"]
    assert v1["occlusion_idf1_delta"] == pytest.approx(0.12) and v1["idf1_delta"] == pytest.approx(0.05)
    assert v1["id_switches_ratio"] == pytest.approx(0.25) and v1["wall_ratio"] == pytest.approx(1.3)
    assert v5["occlusion_idf1_delta"] == pytest.approx(0.20) and v5["wall_ratio"] == pytest.approx(1.25)
    assert v5["id_switches_ratio"] == 0.0


def test_compare_pairs_rows_with_the_same_refine_setting() -> None:
    rows = [
        row("bytetrack", 1, _runs([100.0], _eval(0.90, 8, 6, 0.80, 6)), refine=False),
        row("bytetrack", 1, _runs([110.0], _eval(0.98, 1, 6, 0.97, 1)), refine=True),
        row("strongsort", 1, _runs([120.0], _eval(0.99, 0, 6, 0.99, 0)), refine=False),
        row("strongsort", 1, _runs([132.0], _eval(0.99, 0, 6, 1.00, 0)), refine=True),
    ]
    compare(rows)
    alone, refined = rows[2]["vs_baseline"], rows[3]["vs_baseline"]
    assert alone["occlusion_idf1_delta"] == pytest.approx(0.19) and alone["wall_ratio"] == pytest.approx(1.2)
    assert refined["occlusion_idf1_delta"] == pytest.approx(0.03) and refined["wall_ratio"] == pytest.approx(1.2)
    assert rows[0]["refine"] is False and rows[3]["refine"] is True


def test_compare_without_baseline_switches_gives_no_ratio() -> None:
    rows = [
        row("bytetrack", 1, _runs([1.0], _eval(1.0, 0, 0, 1.0, 0))),
        row("x", 1, _runs([1.0], _eval(1, 0, 0, 1, 0))),
    ]
    compare(rows)
    assert rows[1]["vs_baseline"]["id_switches_ratio"] is None


def test_markdown_lists_every_row_and_the_comparison() -> None:
    rows = [
        row("bytetrack", 1, _runs([100.0], _eval(0.904, 7, 6, 0.825, 6))),
        row("strongsort", 1, _runs([130.0], _eval(0.95, 2, 3, 0.92, 1))),
    ]
    compare(rows)
    text = markdown(
        {"episode": "Sample", "machine": "2 cores", "repetitions": 1, "baseline": "bytetrack", "rows": rows}
    )
    lines = text.splitlines()
    byte = next(line for line in lines if line.startswith("| bytetrack | on | 1 |"))
    assert byte.split("|")[4:10] == [" 100.0 ", " 0.904 ", " 7 ", " 6 ", " 0.900 ", " 0.980 "]
    assert "| 0.825 | 6 | 1 | 0 | 6 / 5 |" in byte
    assert any(line.startswith("| strongsort | on | 1 | 0.095 | 0.046 | 0.29 | 1.30 |") for line in lines)
    alone = markdown(
        {
            "episode": "S",
            "machine": "m",
            "repetitions": 1,
            "baseline": "bytetrack",
            "rows": [{**rows[0], "refine": False}],
        }
    )
    assert any(line.startswith("| bytetrack | off | 1 |") for line in alone.splitlines())
    assert "different scores" not in text
