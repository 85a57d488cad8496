"""One tracker session (a Track stream) driven frame by frame from a detection stream."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

import numpy as np
from faceflow.v1 import common_pb2, tracker_pb2

from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.api.clients import ServiceClients


class TrackerSession:
    """One Track stream driven in lock-step: send a frame, read its response; when the tracker asks
    for embeddings, embed those faces' aligned crops at once and send the frame again with them."""

    _END = object()

    def __init__(
        self,
        clients: ServiceClients,
        config: tracker_pb2.TrackerConfig,
        embed_now: Callable[[list[bytes]], np.ndarray] | None = None,
    ) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        self._embed_now = embed_now
        config.embeddings_on_request = embed_now is not None
        self._requests.put(tracker_pb2.TrackRequest(config=config))
        self._call = clients.tracker.Track(self._request_iterator())

    def _request_iterator(self) -> Iterator[tracker_pb2.TrackRequest]:
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item  # type: ignore[misc]

    def track(self, frame: common_pb2.FrameDetections) -> tuple[tracker_pb2.TrackResponse, dict[int, np.ndarray]]:
        """The tracker's answer for one frame and the vectors computed for it ({face index: vector})."""
        boxes_only = common_pb2.FrameDetections(
            frame_index=frame.frame_index,
            timestamp_s=frame.timestamp_s,
            shot_boundary=frame.shot_boundary,
            faces=[common_pb2.Face(box=f.box, score=f.score, candidate=f.candidate) for f in frame.faces],
            camera_motion=frame.camera_motion,
        )
        response = self._exchange(boxes_only)
        vectors: dict[int, np.ndarray] = {}
        if response.embeddings_wanted and self._embed_now is not None:
            wanted = list(response.embeddings_wanted)
            embedded = self._embed_now([frame.faces[i].aligned_crop_bgr for i in wanted])
            for i, vector in zip(wanted, embedded, strict=True):
                vectors[i] = vector
                boxes_only.faces[i].embedding.extend(vector.tolist())
            response = self._exchange(boxes_only)
        return response, vectors

    def _exchange(self, frame: common_pb2.FrameDetections) -> tracker_pb2.TrackResponse:
        self._requests.put(tracker_pb2.TrackRequest(frame=frame))
        with translate_rpc_errors("tracker"):
            return next(self._call)

    def close(self) -> None:
        self._requests.put(self._END)
        self._call.cancel()
