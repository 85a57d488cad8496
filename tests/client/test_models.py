"""faceflow.client's results and requests: option mapping, proto parsing, tables and to_pandas()."""

from __future__ import annotations

import json
import sys

import pytest
from faceflow.client import (
    Identities,
    InvalidArgument,
    Job,
    Jobs,
    JobState,
    Progress,
    RunOptions,
    RunResult,
    ScreenTime,
    Stage,
    Timeline,
)
from faceflow.client._requests import s3_request, submit_request
from faceflow.client.tables import parse_tracks
from faceflow.v1 import orchestrator_pb2

JS = orchestrator_pb2.JobState


def test_run_options_map_every_field_to_the_proto_and_back() -> None:
    options = RunOptions(
        stride=3,
        tracker="strongsort",
        detector="retinaface",
        show="my-show",
        det_score_threshold=0.4,
        cluster_distance=0.55,
        skip_crops=True,
        skip_track_refine=True,
    )
    proto = options.to_proto()
    assert (proto.stride, proto.tracker, proto.detector, proto.show_id) == (3, "strongsort", "retinaface", "my-show")
    assert proto.det_score_threshold == pytest.approx(0.4) and proto.cluster_distance == pytest.approx(0.55)
    assert proto.skip_crops and proto.skip_track_refine
    # float32 on the wire comes back as the number that was set, not 0.4000000059604645
    assert RunOptions.from_proto(proto) == options
    assert RunOptions().to_proto() == orchestrator_pb2.RunOptions()  # all defaults: the service decides


@pytest.mark.parametrize("bad", [{"stride": -1}, {"det_score_threshold": -0.1}, {"cluster_distance": -1.0}])
def test_run_options_refuse_negative_values(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(bad))) as caught:
        RunOptions(**bad)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_submit_request_makes_a_fresh_key_unless_given_one() -> None:
    first, second = submit_request("ep1", None, None), submit_request("ep1", None, None)
    assert first.idempotency_key and second.idempotency_key and first.idempotency_key != second.idempotency_key
    keyed = submit_request("ep1", RunOptions(stride=2), "my-key")
    assert (keyed.ep_id, keyed.idempotency_key, keyed.options.stride) == ("ep1", "my-key", 2)


@pytest.mark.parametrize(
    "uri", ["https://bucket/key.mp4", "s3://bucket", "s3://bucket/", "s3:///key.mp4", "/tmp/x.mp4"]
)
def test_s3_uris_must_name_a_bucket_and_a_key(uri: str) -> None:
    with pytest.raises(InvalidArgument, match="s3://bucket/key"):
        s3_request(uri, "ep1", "default", False)


def test_s3_request_names_the_object() -> None:
    request = s3_request("s3://videos/a/b.mp4", "ep1", "show", True)
    assert (request.source_uri, request.ep_id, request.show_id, request.replace_video) == (
        "s3://videos/a/b.mp4",
        "ep1",
        "show",
        True,
    )


def test_progress_and_job_from_proto() -> None:
    message = orchestrator_pb2.Progress(
        job_id="job-1",
        ep_id="ep1",
        state=JS.JOB_STATE_RUNNING,
        stage=orchestrator_pb2.STAGE_DETECT_TRACK,
        frames_done=25,
        frames_total=100,
        fps=12.5,
        eta_s=6.0,
        message="detecting",
        device="cpu",
    )
    progress = Progress.from_proto(message)
    assert progress.state is JobState.RUNNING and progress.state == "running" and not progress.state.terminal
    assert progress.stage is Stage.DETECT_TRACK and progress.fraction == 0.25
    assert (progress.fps, progress.eta_s, progress.message, progress.device) == (12.5, 6.0, "detecting", "cpu")
    job = Job.from_proto(
        orchestrator_pb2.Job(
            job_id="job-1",
            ep_id="ep1",
            progress=message,
            options=orchestrator_pb2.RunOptions(stride=5),
            idempotency_key="k",
            submitted_by="rita (reviewer)",
            queue_position=0,
            attempts=2,
        )
    )
    assert job.state is JobState.RUNNING and job.kind == "run" and job.options.stride == 5 and job.attempts == 2
    with pytest.raises(AttributeError):
        job.ep_id = "other"  # type: ignore[misc]
    done = Progress.from_proto(orchestrator_pb2.Progress(state=JS.JOB_STATE_SUCCEEDED))
    assert done.fraction == 1.0 and done.state.terminal


def test_unknown_enum_values_from_a_newer_server_are_unspecified() -> None:
    assert JobState.from_proto(99) is JobState.UNSPECIFIED and Stage.from_proto(42) is Stage.UNSPECIFIED


def test_run_result_from_the_final_message() -> None:
    final = orchestrator_pb2.Progress(
        job_id="job-1",
        ep_id="ep1",
        state=JS.JOB_STATE_SUCCEEDED,
        summary=orchestrator_pb2.RunSummary(
            run_id="run-7", frames_processed=210, faces=300, tracks=12, identities=4, duration_s=42.0, wall_time_s=30.5
        ),
    )
    result = RunResult.from_final(final)
    assert (result.run_id, result.frames_processed, result.tracks, result.identities) == ("run-7", 210, 12, 4)


def screen_time_proto() -> orchestrator_pb2.ScreenTime:
    def row(identity: str, label: str, *spans: tuple[float, float]) -> orchestrator_pb2.ScreenTimeRow:
        intervals = [orchestrator_pb2.TimeInterval(start_s=s, end_s=e) for s, e in spans]
        return orchestrator_pb2.ScreenTimeRow(
            identity_id=identity, label=label, seconds=sum(e - s for s, e in spans), intervals=intervals
        )

    return orchestrator_pb2.ScreenTime(
        ep_id="ep1",
        run_id="run-7",
        duration_s=40.0,
        identities=[row("id-2", "Ann", (0.0, 8.0), (20.0, 24.0)), row("id-1", "", (5.0, 7.0))],
        people=[row("", "Ann", (0.0, 8.0), (20.0, 24.0))],
    )


def test_screen_time_rows_share_and_intervals() -> None:
    screen_time = ScreenTime.from_proto(screen_time_proto())
    assert (screen_time.ep_id, screen_time.run_id, screen_time.duration_s, len(screen_time)) == ("ep1", "run-7", 40, 3)
    ann, unnamed = screen_time.identities
    assert (ann.kind, ann.identity_id, ann.label, ann.seconds, ann.share) == ("identity", "id-2", "Ann", 12.0, 0.3)
    assert ann.intervals == ((0.0, 8.0), (20.0, 24.0)) and unnamed.label == ""
    (person,) = screen_time.people
    assert person.kind == "person" and person.identity_id == "" and screen_time.seconds_by_label() == {"Ann": 12.0}
    empty = ScreenTime.from_proto(orchestrator_pb2.ScreenTime())
    assert len(empty) == 0 and not empty


def test_timeline_flattens_the_intervals_by_start() -> None:
    timeline = Timeline.from_screen_time(ScreenTime.from_proto(screen_time_proto()))
    assert [(s.kind, s.identity_id or s.label, s.start_s, s.end_s) for s in timeline] == [
        ("identity", "id-2", 0.0, 8.0),
        ("person", "Ann", 0.0, 8.0),
        ("identity", "id-1", 5.0, 7.0),
        ("identity", "id-2", 20.0, 24.0),
        ("person", "Ann", 20.0, 24.0),
    ]


def test_identities_from_the_review_state() -> None:
    state = orchestrator_pb2.ReviewState(
        ep_id="ep1",
        run_id="run-7",
        identities=[
            orchestrator_pb2.ReviewedIdentity(
                identity_id="id-1", label="Ann", track_ids=[3, 5], seconds=9.5, label_source="review"
            )
        ],
        unassigned_track_ids=[7],
        deleted_track_ids=[8, 9],
    )
    identities = Identities.from_proto(state)
    (ann,) = identities
    assert (ann.label, ann.track_ids, ann.seconds, ann.label_source) == ("Ann", (3, 5), 9.5, "review")
    assert identities.unassigned_track_ids == (7,) and identities.deleted_track_ids == (8, 9)


TRACKS_JSONL = (
    json.dumps(
        {
            "track_id": 1,
            "identity_id": "id-1",
            "start_frame": 0,
            "end_frame": 10,
            "start_s": 0.0,
            "end_s": 0.4,
            "num_faces": 2,
            "mean_quality": 0.8,
            "frames": [0, 10],
            "boxes": [[1.0, 2.0, 30.5, 40.0], [2.0, 3.0, 31.0, 41.0]],
            "a_later_field": True,
        }
    )
    + "\n"
    + json.dumps({"track_id": 2, "identity_id": None, "start_frame": 5, "end_frame": 5, "start_s": 0.2, "end_s": 0.2})
    + "\n"
).encode()


def test_tracks_from_tracks_jsonl() -> None:
    tracks = parse_tracks("ep1", TRACKS_JSONL)
    first, second = tracks
    assert first.identity_id == "id-1" and first.frames == (0, 10) and first.boxes[0] == (1.0, 2.0, 30.5, 40.0)
    assert second.identity_id is None and second.frames == () and tracks.ep_id == "ep1"


def test_to_pandas_frames() -> None:
    pandas = pytest.importorskip("pandas")
    frame = ScreenTime.from_proto(screen_time_proto()).to_pandas()
    assert list(frame.columns) == ["kind", "identity_id", "label", "seconds", "share", "intervals"]
    assert frame[frame.kind == "person"].seconds.tolist() == [12.0]
    tracks = parse_tracks("ep1", TRACKS_JSONL).to_pandas()
    assert tracks.track_id.tolist() == [1, 2] and tracks.boxes[0][1] == (2.0, 3.0, 31.0, 41.0)
    job = Job.from_proto(
        orchestrator_pb2.Job(job_id="job-1", progress=orchestrator_pb2.Progress(state=JS.JOB_STATE_FAILED))
    )
    jobs = Jobs((job,)).to_pandas()
    assert jobs["progress.state"].tolist() == ["failed"] and "options.stride" in jobs.columns
    empty = Timeline(()).to_pandas()
    assert isinstance(empty, pandas.DataFrame) and list(empty.columns) == [
        "kind",
        "identity_id",
        "label",
        "start_s",
        "end_s",
    ]


def test_to_pandas_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # an import of pandas now fails
    with pytest.raises(ImportError, match=r"faceflow-client\[pandas\]"):
        ScreenTime.from_proto(screen_time_proto()).to_pandas()
