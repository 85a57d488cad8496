"""Carrying tracks through the frames adaptive sampling skipped (analysis/carry.py), and the screen
time those frames count for (analysis/screentime.py with processed_frames)."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.analysis.carry import carry_tracks
from services.orchestrator.analysis.face_table import FaceTableBuilder
from services.orchestrator.analysis.screentime import frames_to_intervals
from services.orchestrator.run.outputs import mot_rows


def _table(faces: list[tuple[int, float, int]], processed: list[int], cuts: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    """faces: (frame, x, track) for 20x20 boxes at (x, 100)."""
    builder = FaceTableBuilder()
    builder.frames.extend(processed)
    builder.cut_frames.extend(cuts)
    for frame, x, track in faces:
        builder.add(frame, [x, 100, x + 20, 120], 0.95, 0.5, [0.0] * 10, track, False)
    return builder.build(np.zeros(0, np.int64), np.zeros((0, 512), np.float32))


def test_sightings_a_stride_apart_are_interpolated_and_the_last_one_held_to_the_next_processed_frame() -> None:
    # Base stride 10; the face moves 2 px/frame; seen on 0, 10, 20; frame 21 processed without it.
    table = _table([(0, 0.0, 1), (10, 20.0, 1), (20, 40.0, 1)], [0, 10, 20, 21, 30])
    boxes = carry_tracks(table, 10, 100)
    assert boxes.frame.tolist() == list(range(21))
    assert boxes.xyxy[:, 0] == pytest.approx(2.0 * np.arange(21))
    assert boxes.carried.tolist() == [f not in (0, 10, 20) for f in range(21)]


def test_nothing_is_carried_over_a_cut_past_the_stride_or_past_the_end_of_the_video() -> None:
    table = _table([(0, 0.0, 1), (10, 20.0, 1), (40, 20.0, 1), (95, 5.0, 2)], [0, 10, 20, 30, 40, 50, 95], cuts=(10,))
    boxes = carry_tracks(table, 10, 100)
    track_1 = boxes.frame[boxes.track_id == 1].tolist()
    # 0 is held up to the cut at 10 (its shot ends), 10 up to 19 (the next sighting is 30 frames
    # away: a gap, not a skip), 40 up to 49; track 2's 95 up to the last frame, 99.
    assert track_1 == [*range(0, 10), *range(10, 20), *range(40, 50)]
    assert boxes.frame[boxes.track_id == 2].tolist() == [95, 96, 97, 98, 99]


def test_the_track_file_of_an_adaptive_run_covers_every_frame_and_a_fixed_run_only_its_sightings() -> None:
    table = _table([(0, 0.0, 1), (10, 20.0, 1)], [0, 10, 11])
    carried = mot_rows(table, carry_stride=10, frame_count=50).decode().splitlines()
    assert [int(line.split(",")[0]) for line in carried] == list(range(1, 12))  # 1-based frames 0..10
    assert carried[5].split(",")[2] == "10.00"  # frame 5: halfway between x 0 and x 20
    fixed = mot_rows(table).decode().splitlines()
    assert [int(line.split(",")[0]) for line in fixed] == [1, 11]


def test_a_sighting_counts_until_the_next_processed_frame_at_most_a_stride() -> None:
    # Uniform sampling: frame 0 covers 0-9. Adaptive: frame 0 covers 0 only when frame 1 was
    # processed (and the face was gone there).
    assert frames_to_intervals(np.array([0]), 25.0, 10, 0.0) == [(0.0, 0.4)]
    adaptive = frames_to_intervals(np.array([0]), 25.0, 10, 0.0, processed_frames=np.array([0, 1, 10]))
    assert adaptive == [(0.0, 0.04)]
    assert frames_to_intervals(np.array([0]), 25.0, 10, 0.0, processed_frames=np.array([0, 20])) == [(0.0, 0.4)]
