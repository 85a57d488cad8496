"""TrackerService: one bidirectional stream is one session of any registered tracker."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from faceflow.v1 import common_pb2, tracker_pb2

from services.tracker.registry import TRACKERS
from tests.contract.helpers import expect_status


def _frame(index: int, boxes: list[tuple[float, float, float, float]], cut: bool = False) -> tracker_pb2.TrackRequest:
    faces = [common_pb2.Face(box=common_pb2.BoundingBox(x1=a, y1=b, x2=c, y2=d), score=0.95) for a, b, c, d in boxes]
    return tracker_pb2.TrackRequest(frame=common_pb2.FrameDetections(frame_index=index, faces=faces, shot_boundary=cut))


def _session(frames: list[tracker_pb2.TrackRequest], tracker: str = "bytetrack") -> Iterator[tracker_pb2.TrackRequest]:
    yield tracker_pb2.TrackRequest(config=tracker_pb2.TrackerConfig(tracker=tracker, fps=25, frame_stride=1))
    yield from frames


@pytest.mark.parametrize("tracker", sorted(TRACKERS))
def test_two_moving_faces_keep_their_ids_and_a_cut_starts_new_ones(stubs: dict, tracker: str) -> None:
    frames = [_frame(i, [(10 + 3 * i, 50, 90 + 3 * i, 150), (400 - 2 * i, 60, 480 - 2 * i, 160)]) for i in range(30)]
    frames.append(_frame(30, [(100, 50, 180, 150)], cut=True))
    responses = list(stubs["tracker"].Track(_session(frames, tracker)))
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


def test_strongsort_asks_for_embeddings_once_per_frame_and_tracks_the_resent_frame(stubs: dict) -> None:
    """The two-phase exchange: a response with embeddings_wanted, then the same frame with vectors."""
    vector = np.ones(8) / np.sqrt(8)
    requests: list[tracker_pb2.TrackRequest] = [
        tracker_pb2.TrackRequest(
            config=tracker_pb2.TrackerConfig(tracker="strongsort", fps=25, frame_stride=1, embeddings_on_request=True)
        )
    ]
    responses = []
    iter_requests = _Requests(requests)
    call = stubs["tracker"].Track(iter_requests)
    for i in range(60):
        frame = _frame(i, [(100 + i, 50, 180 + i, 150)]).frame
        iter_requests.put(tracker_pb2.TrackRequest(frame=frame))
        response = next(call)
        if response.embeddings_wanted:
            assert list(response.embeddings_wanted) == [0] and not response.tracked
            frame.faces[0].embedding.extend(vector.tolist())
            iter_requests.put(tracker_pb2.TrackRequest(frame=frame))
            response = next(call)
            assert not response.embeddings_wanted
        responses.append(response)
    iter_requests.close()
    asked = sum(1 for r in iter_requests.sent if r.HasField("frame") and len(r.frame.faces[0].embedding))
    assert 1 <= asked <= 3  # one refresh per 2 s of a lone face
    assert len({t.track_id for r in responses for t in r.tracked}) == 1
    assert all(r.frame_index == i for i, r in enumerate(responses))


def test_a_frame_asked_about_must_come_back_before_the_next(stubs: dict) -> None:
    config = tracker_pb2.TrackerConfig(tracker="strongsort", fps=25, frame_stride=1, embeddings_on_request=True)
    frames = [_frame(i, [(100 + i, 50, 180 + i, 150)]) for i in range(40)]

    def run() -> None:
        for response in stubs["tracker"].Track(iter([tracker_pb2.TrackRequest(config=config), *frames])):
            del response

    expect_status(grpc.StatusCode.INVALID_ARGUMENT, run, "sent again")


class _Requests:
    """A request iterator fed as responses arrive (the lock-step a real client runs)."""

    def __init__(self, first: list[tracker_pb2.TrackRequest]) -> None:

        self._queue: queue.Queue[tracker_pb2.TrackRequest | None] = queue.Queue()
        self.sent: list[tracker_pb2.TrackRequest] = []
        for request in first:
            self.put(request)

    def put(self, request: tracker_pb2.TrackRequest) -> None:
        self.sent.append(request)
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> tracker_pb2.TrackRequest:
        item = self._queue.get()
        if item is None:
            raise StopIteration
        return item
