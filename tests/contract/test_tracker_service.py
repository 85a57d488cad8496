"""TrackerService: one bidirectional stream is one ByteTrack session."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from faceflow.v1 import common_pb2, tracker_pb2

from tests.contract.helpers import expect_status


def _frame(index: int, boxes: list[tuple[float, float, float, float]], cut: bool = False) -> tracker_pb2.TrackRequest:
    faces = [common_pb2.Face(box=common_pb2.BoundingBox(x1=a, y1=b, x2=c, y2=d), score=0.95) for a, b, c, d in boxes]
    return tracker_pb2.TrackRequest(frame=common_pb2.FrameDetections(frame_index=index, faces=faces, shot_boundary=cut))


def _session(frames: list[tracker_pb2.TrackRequest], tracker: str = "bytetrack") -> Iterator[tracker_pb2.TrackRequest]:
    yield tracker_pb2.TrackRequest(config=tracker_pb2.TrackerConfig(tracker=tracker, fps=25, frame_stride=1))
    yield from frames


def test_two_moving_faces_keep_their_ids_and_a_cut_starts_new_ones(stubs: dict) -> None:
    frames = [_frame(i, [(10 + 3 * i, 50, 90 + 3 * i, 150), (400 - 2 * i, 60, 480 - 2 * i, 160)]) for i in range(30)]
    frames.append(_frame(30, [(100, 50, 180, 150)], cut=True))
    responses = list(stubs["tracker"].Track(_session(frames)))
    assert [r.frame_index for r in responses] == list(range(31))
    ids = {tuple(sorted(t.track_id for t in r.tracked)) for r in responses[:30]}
    assert len(ids) == 1 and len(next(iter(ids))) == 2
    after_cut = {t.track_id for t in responses[30].tracked}
    assert after_cut and after_cut.isdisjoint(next(iter(ids)))


def test_stream_must_start_with_a_config(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: stubs["tracker"].Track(iter([_frame(0, [])])), "TrackerConfig"
    )


def test_unknown_tracker_is_invalid(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: stubs["tracker"].Track(_session([], "sort9000")), "unknown tracker"
    )


def test_frames_out_of_order_are_invalid(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["tracker"].Track(_session([_frame(5, []), _frame(3, [])])),
        "increasing order",
    )
