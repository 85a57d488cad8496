from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.analysis.backfill import BackfillSettings, backfill_tracks
from services.orchestrator.analysis.face_table import FaceTableBuilder
from services.orchestrator.run.sampler import SamplerSettings, TrackSampler


def _table(faces: list[tuple[int, float, int, bool]], frames: range, cuts: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    """faces: (frame, x, track_id, candidate) for 20x20 boxes at (x, 100)."""
    builder = FaceTableBuilder()
    builder.frames.extend(frames)
    builder.cut_frames.extend(cuts)
    for frame, x, track, candidate in faces:
        builder.add(frame, [x, 100, x + 20, 120], 0.6 if candidate else 0.95, 0.5, [0.0] * 10, track, candidate)
    return builder.build(np.zeros(0, np.int64), np.zeros((0, 512), np.float32))


def test_backfill_walks_back_through_weak_detections_with_velocity_and_short_gaps() -> None:
    # A face moving 8 px/frame, weakly detected in frames 0-9 (frame 4 missing), tracked from 10.
    weak = [(f, 8.0 * f, 0, True) for f in range(10) if f != 4]
    tracked = [(f, 8.0 * f, 7, False) for f in range(10, 15)]
    table = _table(weak + tracked, range(15))
    ids = backfill_tracks(table, fps=25, stride=1)
    assert set(ids[: len(weak)]) == {7}


def test_backfill_stops_at_a_cut_and_at_long_gaps() -> None:
    before_cut = [(f, 50.0, 0, True) for f in range(0, 5)]
    tracked = [(f, 50.0, 3, False) for f in range(5, 10)]
    table = _table(before_cut + tracked, range(10), cuts=(5,))
    assert set(backfill_tracks(table, fps=25, stride=1)[:5]) == {0}
    far = [(0, 50.0, 0, True)]  # 20 frames (0.8 s) before the track: beyond the 0.3 s gap
    table = _table(far + [(f, 50.0, 3, False) for f in range(21, 25)], [0, *range(1, 25)])
    assert backfill_tracks(table, fps=25, stride=1)[0] == 0


def test_backfill_extends_forward_and_never_steals_other_faces() -> None:
    tracked = [(f, 50.0, 1, False) for f in range(0, 5)]
    weak_same = [(f, 52.0, 0, True) for f in range(5, 9)]
    other = [(f, 400.0, 0, True) for f in range(5, 9)]  # another face far away
    table = _table(tracked + weak_same + other, range(9))
    ids = backfill_tracks(table, fps=25, stride=1)
    assert set(ids[5:9]) == {1} and set(ids[9:13]) == {0}


def test_backfill_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_iou"):
        BackfillSettings(min_iou=0)


def test_sampler_keeps_the_best_face_per_track_and_window() -> None:
    sampler = TrackSampler(fps=10, settings=SamplerSettings(window_s=0.5))  # 5-frame windows
    out: list[tuple[int, bytes]] = []
    qualities = [0.2, 0.9, 0.5, 0.1, 0.3, 0.4, 0.8, 0.6]
    for frame, quality in enumerate(qualities):
        out += sampler.add(track_id=1, frame=frame, row=frame, quality=quality, crop=bytes([frame]))
        out += sampler.add(track_id=2, frame=frame, row=100 + frame, quality=1 - quality, crop=b"x")
    out += sampler.flush()
    rows = sorted(row for row, _ in out)
    assert rows == [1, 6, 103, 105]  # best of frames 0-4 and 5-7: track 1 frames 1, 6; track 2 frames 3, 5
    assert dict(out)[1] == bytes([1])


def test_restored_faces_are_sampled_five_times_as_densely() -> None:
    """A pan's faces are reconstructions: one a second left a track 1-2 noisy vectors to be judged on."""
    sampler = TrackSampler(fps=25)  # defaults: 1 s windows, 0.2 s for restored faces
    out: list[tuple[int, bytes]] = []
    for frame in range(50):  # 2 s of a pan, every frame restored
        out += sampler.add(track_id=1, frame=frame, row=frame, quality=0.5, crop=b"r", restored=True)
        out += sampler.add(track_id=2, frame=frame, row=100 + frame, quality=0.5, crop=b"s")
    out += sampler.flush()
    assert sum(row < 100 for row, _ in out) == 10 and sum(row >= 100 for row, _ in out) == 2


def test_backfill_counts_time_in_frames_when_processed_frames_are_uneven() -> None:
    # Adaptive sampling: base stride 10, densified frames 21-29. A face moving 4 px/frame is tracked
    # from 30 on and weakly seen on the densified frames and on base frame 10, then it is absent.
    frames = [0, 10, 20, *range(21, 30), *range(30, 60, 10)]
    weak = [(f, 4.0 * f, 0, True) for f in (10, *range(21, 30))]
    tracked = [(f, 4.0 * f, 5, False) for f in range(30, 60, 10)]
    table = _table(weak + tracked, frames)
    ids = backfill_tracks(table, fps=25, stride=10)
    # Frames 21-29 continue the track (predicted with its per-frame velocity, 9 densified frames
    # in 0.36 s); frame 20 is a miss, and frame 10 is 11 frames before the hit at 21: beyond the
    # gap allowance (0.3 s, counted in whole strides: one stride, 10 frames).
    assert ids[0] == 0 and set(ids[1 : len(weak)]) == {5}
