"""DetectorService over real gRPC with the real RetinaFace model and real media."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
from faceflow.v1 import detector_pb2

from tests.contract.helpers import expect_status

CROP_BYTES = 112 * 112 * 3


def test_detect_finds_every_face_of_a_group_photo_with_aligned_crops(stubs: dict, media: Path) -> None:
    response = stubs["detector"].Detect(
        detector_pb2.DetectRequest(image=(media / "multi_face.jpg").read_bytes(), include_crops=True)
    )
    assert len(response.faces) == 5
    assert (response.width, response.height) == (1000, 667)
    for face in response.faces:
        assert len(face.aligned_crop_bgr) == CROP_BYTES
        assert len(face.landmarks) == 10 and 0 < face.quality <= 1 and face.score >= 0.8
        eye_left, eye_right = np.array(face.landmarks[0:2]), np.array(face.landmarks[2:4])
        assert eye_left[0] < eye_right[0]  # ArcFace order: image-left eye first


def test_detect_rejects_data_that_is_not_an_image(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["detector"].Detect(detector_pb2.DetectRequest(image=b"hello world")),
        "not a decodable image",
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: stubs["detector"].Detect(detector_pb2.DetectRequest()), "empty"
    )


def test_probe_reports_the_video(stubs: dict, media: Path) -> None:
    info = stubs["detector"].ProbeVideo(detector_pb2.ProbeVideoRequest(video_uri=str(media / "single_face.mp4"))).info
    assert (info.frame_count, info.width, info.height) == (72, 640, 360)
    assert abs(info.fps - 30.0) < 0.01 and abs(info.duration_s - 2.4) < 0.01


def test_probe_rejects_bad_videos_with_the_right_status(stubs: dict, media: Path, tmp_path: Path) -> None:
    probe = stubs["detector"].ProbeVideo
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((media / "WolfgangLanger_Pexels.mp4").read_bytes()[:200_000])
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: probe(detector_pb2.ProbeVideoRequest(video_uri=str(tmp_path / "nope.mp4"))),
        "does not exist",
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: probe(detector_pb2.ProbeVideoRequest(video_uri=str(empty))), "empty"
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: probe(detector_pb2.ProbeVideoRequest(video_uri=str(text))), "video"
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: probe(detector_pb2.ProbeVideoRequest(video_uri=str(truncated)))
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: probe(detector_pb2.ProbeVideoRequest(video_uri="")), "empty"
    )


def test_detect_video_streams_frames_in_order_with_stride_and_range(stubs: dict, media: Path) -> None:
    frames = list(
        stubs["detector"].DetectVideo(
            detector_pb2.DetectVideoRequest(
                video_uri=str(media / "single_face.mp4"), start_frame=10, end_frame=40, stride=3, include_crops=True
            )
        )
    )
    assert [f.frame.frame_index for f in frames] == list(range(10, 40, 3))
    assert all(len(f.frame.faces) == 1 for f in frames)
    assert all(len(f.frame.faces[0].aligned_crop_bgr) == CROP_BYTES for f in frames)
    assert abs(frames[1].frame.timestamp_s - 13 / 30) < 1e-6


def test_no_face_is_reported_on_a_video_without_faces(stubs: dict, media: Path) -> None:
    frames = list(stubs["detector"].DetectVideo(detector_pb2.DetectVideoRequest(video_uri=str(media / "no_face.mp4"))))
    assert len(frames) >= 90
    assert sum(len(f.frame.faces) for f in frames) == 0


def test_real_shot_cuts_are_flagged(stubs: dict, media: Path) -> None:
    frames = list(
        stubs["detector"].DetectVideo(
            detector_pb2.DetectVideoRequest(video_uri=str(media / "face_noface.mov"), stride=2)
        )
    )
    cuts = [f.frame.frame_index for f in frames if f.frame.shot_boundary]
    assert cuts and all(70 <= c <= 76 for c in cuts), cuts
    with_faces = [f.frame.frame_index for f in frames if f.frame.faces]
    assert with_faces and max(with_faces) < 76  # the face shot comes first, then a shot without a face


def test_detect_video_rejects_bad_ranges(stubs: dict, media: Path) -> None:
    uri = str(media / "single_face.mp4")
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["detector"].DetectVideo(detector_pb2.DetectVideoRequest(video_uri=uri, start_frame=500)),
        "outside the video",
    )
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["detector"].DetectVideo(detector_pb2.DetectVideoRequest(video_uri=uri, stride=-2)),
        "stride",
    )
