"""gRPC TrackerService: one bidirectional stream is one tracking session with its own tracker."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
from faceflow.v1 import common_pb2, tracker_pb2, tracker_pb2_grpc

from services.common.errors import InvalidArgument
from services.tracker.interface import TrackerFrame
from services.tracker.registry import describe_trackers, make_tracker

SERVICE_NAME = tracker_pb2.DESCRIPTOR.services_by_name["TrackerService"].full_name


def frame_from_proto(frame: common_pb2.FrameDetections, steps: float = 1.0) -> TrackerFrame:
    """The tracker's view of one frame, `steps` strides after the stream's previous one; raises
    InvalidArgument on malformed values."""
    faces = frame.faces
    try:
        return TrackerFrame.of(
            np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in faces], np.float64).reshape(-1, 4),
            np.array([f.score for f in faces], np.float64),
            np.array([f.candidate for f in faces], bool),
            {i: np.asarray(f.embedding, np.float64) for i, f in enumerate(faces) if len(f.embedding)},
            np.asarray(frame.camera_motion, np.float64) if len(frame.camera_motion) else None,
            steps,
        )
    except ValueError as error:  # non-finite boxes, mixed embedding sizes, a bad affine
        raise InvalidArgument(f"frame {frame.frame_index}: {error}") from None


class TrackerServicer(tracker_pb2_grpc.TrackerServiceServicer):
    def DescribeTrackers(
        self, request: tracker_pb2.DescribeTrackersRequest, context: grpc.ServicerContext
    ) -> tracker_pb2.DescribeTrackersResponse:
        return describe_trackers(request.fps, request.frame_stride)

    def Track(
        self, request_iterator: Iterator[tracker_pb2.TrackRequest], context: grpc.ServicerContext
    ) -> Iterator[tracker_pb2.TrackResponse]:
        first = next(request_iterator, None)
        if first is None:
            return
        if first.WhichOneof("payload") != "config":
            raise InvalidArgument("the first message of a Track stream must be a TrackerConfig")
        tracker = make_tracker(first.config)
        ask_for_embeddings = first.config.embeddings_on_request
        # Frames may come closer than the stride (a caller densifying around events): the tracker's
        # clock moves by the real gap, in strides.
        stride = first.config.frame_stride or 1
        last_frame = -1
        asked_frame = -1  # the frame whose embeddings were asked for, expected again next
        steps = 1.0
        for request in request_iterator:
            if request.WhichOneof("payload") != "frame":
                raise InvalidArgument("only the first message of a Track stream may be a TrackerConfig")
            proto = request.frame
            resent = proto.frame_index == asked_frame
            if proto.frame_index <= last_frame and not resent:
                raise InvalidArgument(
                    f"frames must arrive in increasing order; got {proto.frame_index} after {last_frame}"
                )
            if asked_frame >= 0 and not resent:
                raise InvalidArgument(
                    f"frame {asked_frame} must be sent again with the embeddings asked for, got {proto.frame_index}"
                )
            if not resent:  # the same frame again moves the clock once
                steps = (proto.frame_index - last_frame) / stride if last_frame >= 0 else 1.0
            last_frame, asked_frame = proto.frame_index, -1
            frame = frame_from_proto(proto, steps)
            if proto.shot_boundary and not resent:
                tracker.reset()  # no track may span a cut
            if ask_for_embeddings and not resent:
                wanted = tracker.appearance_wanted(frame)
                missing = [i for i in wanted if not frame.has_embedding()[i]]
                if missing:
                    asked_frame = proto.frame_index
                    yield tracker_pb2.TrackResponse(frame_index=proto.frame_index, embeddings_wanted=missing)
                    continue
            assignments = tracker.update(frame)
            yield tracker_pb2.TrackResponse(
                frame_index=proto.frame_index,
                tracked=[
                    tracker_pb2.TrackedFace(track_id=a.track_id, face_index=a.detection_index) for a in assignments
                ],
            )
