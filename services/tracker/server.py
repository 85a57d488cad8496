"""gRPC TrackerService: one bidirectional stream is one tracking session with its own tracker."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
from faceflow.v1 import tracker_pb2, tracker_pb2_grpc

from services.common.errors import InvalidArgument
from services.tracker.registry import make_tracker

SERVICE_NAME = tracker_pb2.DESCRIPTOR.services_by_name["TrackerService"].full_name


class TrackerServicer(tracker_pb2_grpc.TrackerServiceServicer):
    def Track(
        self, request_iterator: Iterator[tracker_pb2.TrackRequest], context: grpc.ServicerContext
    ) -> Iterator[tracker_pb2.TrackResponse]:
        first = next(request_iterator, None)
        if first is None:
            return
        if first.WhichOneof("payload") != "config":
            raise InvalidArgument("the first message of a Track stream must be a TrackerConfig")
        tracker = make_tracker(first.config)
        last_frame = -1
        for request in request_iterator:
            if request.WhichOneof("payload") != "frame":
                raise InvalidArgument("only the first message of a Track stream may be a TrackerConfig")
            frame = request.frame
            if frame.frame_index <= last_frame:
                raise InvalidArgument(
                    f"frames must arrive in increasing order; got {frame.frame_index} after {last_frame}"
                )
            last_frame = frame.frame_index
            if frame.shot_boundary:
                tracker.reset()  # no track may span a cut
            boxes = np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in frame.faces], np.float32)
            # A candidate (below the detector's confidence rule) is a low-score detection in ByteTrack's
            # sense whatever its raw score: it may continue a track, never start one.
            scores = np.array(
                [min(f.score, tracker.settings.high_score) if f.candidate else f.score for f in frame.faces], np.float32
            )
            try:
                assignments = tracker.update(boxes.reshape(-1, 4), scores)
            except ValueError as error:  # non-finite boxes or scores from a misbehaving client
                raise InvalidArgument(f"frame {frame.frame_index}: {error}") from None
            yield tracker_pb2.TrackResponse(
                frame_index=frame.frame_index,
                tracked=[
                    tracker_pb2.TrackedFace(track_id=a.track_id, face_index=a.detection_index) for a in assignments
                ],
            )
