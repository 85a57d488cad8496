"""The bench's summary, acceptance check and table, on made-up runs with known answers."""

from __future__ import annotations

import pytest

from bench import report


def _micro(wall: float) -> dict:
    return {"wall_s": wall, "timings_s": {"embed_calls_s": 2.0}, "counts": {"faces_embedded": 80}}


def _naive(wall: float) -> dict:
    return {"wall_s": wall, "stage_s": {"embed": 10.0}, "counts": {"faces_embedded": 1000}}


def _summary() -> dict:
    return report.summarise_comparison(
        30.0,
        [_micro(50.0), _micro(60.0), _micro(40.0)],
        [{"wall_s": 45.0}, {"wall_s": 50.0}, {"wall_s": 40.0}],
        [_naive(150.0), _naive(200.0), _naive(100.0)],
    )


def test_summarise_comparison() -> None:
    s = _summary()
    assert s["micro"]["wall_s"] == 50.0
    assert s["micro"]["x_realtime"] == pytest.approx(0.6)
    # pairwise 50/45, 60/50, 40/40 -> median 1.111
    assert s["microservice_overhead"] == pytest.approx(50 / 45 - 1)
    # pairwise 3, 3.33, 2.5 -> 3
    assert s["speedup_vs_naive"] == pytest.approx(3.0)
    assert s["micro"]["faces_embedded_per_s"] == 40.0
    assert s["naive"]["faces_embedded_per_s"] == 100.0


def _point(seconds: float, wall: float, rss: float) -> dict:
    return {"video_s": seconds, "stride": 5, "wall_s": wall, "peak_rss_mb": {"detector": rss, "tracker": 50.0}}


def test_scaling_fit_and_memory_growth() -> None:
    fit = report.scaling_fit([_point(30, 11.0, 400.0), _point(120, 38.0, 410.0), _point(300, 92.0, 420.0)])
    assert fit["s_per_video_min"] == pytest.approx(18.0)
    assert fit["projected_min_for_60_min"] == pytest.approx((18.0 * 60 + 2.0) / 60)
    assert fit["rss_growth"]["detector"] == pytest.approx(0.05)
    assert fit["rss_growth"]["tracker"] == 0.0


def test_check_targets() -> None:
    fit = report.scaling_fit([_point(30, 11.0, 400.0), _point(300, 92.0, 600.0)])
    targets = report.check_targets(_summary(), fit, True, 100.0)
    assert targets["speedup_vs_naive_stride1"]["met"] is False  # 3.0x, the target is 5x
    assert targets["microservice_overhead"]["met"] is True  # +11 %
    assert targets["identical_accuracy"]["met"] is True
    assert targets["default_stride_60min_projection"]["met"] is False
    assert targets["memory_flat"]["met"] is False  # +50 %


def test_projected_minutes() -> None:
    assert report.projected_minutes(10.0, 30.0) == pytest.approx(20.0)


def test_markdown_table_has_every_section() -> None:
    fit = report.scaling_fit([_point(30, 11.0, 400.0), _point(120, 38.0, 410.0)])
    evaluation = {"recall": 0.98, "precision": 1.0, "idf1": 0.9, "bcubed_f": 0.95, "mean_abs_screentime_rel_error": 0.1}
    results = {
        "mode": "quick",
        "machine": "2 cores",
        "comparison": _summary(),
        "stage_breakdown": {"detect": (40.0, 55.0)},
        "strides": {"1": {"wall_s": 50.0, "x_realtime": 0.6, "projected_min_60": 100.0, "eval": evaluation}},
        "scaling": [_point(30, 11.0, 400.0), _point(120, 38.0, 410.0)],
        "scaling_fit": fit,
        "parity": {"identical": True, "differences": []},
        "targets": report.check_targets(_summary(), fit, True, 100.0),
    }
    table = report.markdown(results)
    assert "| microservices (5 processes, gRPC) | 50.0 | 0.60 | 40.0 |" in table
    assert "speedup vs naive: **3.00x**" in table
    assert "| detect | 40.00 | 55.00 |" in table
    assert "| 1 | 50.0 | 0.60 | 100.0 | 0.980 | 1.000 | 0.900 | 0.950 | 0.100 |" in table
    assert "18.0 s per minute of video" in table
    assert "identical" in table
    assert "| default_stride_60min_projection | <= 10 min | 100.0 | **no** |" in table


def _eval(recall: float, obama_error: float, small_fast_recall: float) -> dict:
    persons = [
        {"person_id": "obama", "gt_seconds": 20.0, "predicted_seconds": 20.0 * (1 + obama_error)},
        {"person_id": "biden", "gt_seconds": 19.0, "predicted_seconds": 19.0},
    ]
    for p in persons:
        p["screentime_rel_error"] = p["predicted_seconds"] / p["gt_seconds"] - 1
    subsets = {"occlusion": {"recall": 0.9}, "small-fast": {"recall": small_fast_recall}}
    return {"recall": recall, "idf1": 0.8, "persons": persons, "subsets": subsets}


def test_accuracy_tables_compare_default_stride_1_and_naive() -> None:
    row = {"wall_s": 20.0, "x_realtime": 2.0, "projected_min_60": 30.0}
    results = {
        "strides": {
            "0": {**row, "eval": {**_eval(0.9, -0.25, 0.4), "precision": 1.0, "bcubed_f": 0.9}},
            "1": {**row, "eval": _eval(0.99, 0.0, 1.0)},
        },
        "naive_eval": _eval(0.98, -0.05, 0.95),
    }
    assert list(report.accuracy_modes(results)) == ["default", "stride 1", "naive"]
    table = "\n".join(report.accuracy_markdown(report.accuracy_modes(results)))
    assert "| default | 0.900 | 0.800 | obama | 20.00 | 15.00 | -25.0 % |" in table
    assert "| stride 1 | 0.990 | 0.800 | biden | 19.00 | 19.00 | +0.0 % |" in table
    assert "| naive | 0.980 | 0.800 | obama | 20.00 | 19.00 | -5.0 % |" in table
    assert "| scene tag | recall default | recall stride 1 | recall naive |" in table
    assert "| small-fast | 0.400 | 1.000 | 0.950 |" in table
    # Only what was measured: no naive run, no naive column.
    del results["naive_eval"]
    assert list(report.accuracy_modes(results)) == ["default", "stride 1"]
    assert report.accuracy_markdown({}) == []


def test_markdown_labels_the_default_stride() -> None:
    evaluation = {"recall": 0.9, "precision": 1.0, "idf1": 0.8, "bcubed_f": 0.9, "mean_abs_screentime_rel_error": 0.2}
    results = {
        "mode": "quick",
        "machine": "2 cores",
        "comparison": _summary(),
        "strides": {"0": {"wall_s": 20.0, "x_realtime": 2.0, "projected_min_60": 30.0, "eval": evaluation}},
    }
    table = report.markdown(results)
    assert "| default | 20.0 | 2.00 | 30.0 | 0.900 |" in table
    assert "| mode | recall | IDF1 | person |" in table


def test_talking_head_video_keeps_untagged_shots_whose_faces_are_all_large(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import cv2
    import numpy as np

    from bench.episodes import talking_head_video

    writer = cv2.VideoWriter(str(tmp_path / "episode.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 25, (64, 48))
    for _ in range(30):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    shots = [
        {"start_frame": 0, "end_frame": 10},  # a 100 px face: kept
        {"start_frame": 10, "end_frame": 20, "tags": ["occlusion"]},  # staged: dropped
        {"start_frame": 20, "end_frame": 30},  # a 30 px face: dropped
    ]
    faces = [{"frame": f, "box": [0, 0, 100, 100 if f < 20 else 30]} for f in range(30)]
    (tmp_path / "ground_truth.json").write_text(json.dumps({"shots": shots, "faces": faces}))
    out = talking_head_video(tmp_path, tmp_path / "calm.mp4")
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 10


def test_the_hard_episode_table_per_condition_and_its_cost() -> None:
    def scored(recall: float) -> dict:
        return {**_eval(recall, -0.1, recall), "predicted_identity_count": 12, "true_person_count": 10}

    hard = {
        "strides": {"0": {"wall_s": 11.0, "eval": scored(0.96)}, "1": {"wall_s": 80.0, "eval": scored(0.97)}},
        "sample_default_inprocess_wall_s": 10.0,
    }
    table = "\n".join(report.hard_markdown(hard))
    assert "- default: recall 0.960, IDF1 0.800, 12 identities for 10 people, wall 11.0 s" in table
    assert "- stride 1: recall 0.970" in table
    assert "same bench): 1.10x" in table
    assert "| scene tag | recall default | recall stride 1 |" in table
    assert "| default | 0.960 | 0.800 | obama | 20.00 | 18.00 | -10.0 % |" in table
    assert report.hard_markdown(None) == []
