from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faceflow.v1 import orchestrator_pb2

from services.common.config import Settings
from services.common.errors import Cancelled, InvalidArgument, NotFound
from services.common.ids import validate_id
from services.orchestrator.api.jobs import JobManager
from services.orchestrator.run.options import AUTO_STRIDE, RunSettings, default_stride, resolve_sampling
from services.orchestrator.run.pipeline import ProgressEvent


@pytest.mark.parametrize("good", ["ep1", "S01E02", "a.b_c-d", "x" * 64])
def test_valid_ids(good: str) -> None:
    assert validate_id("episode", good) == good


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "-x", "x" * 65, "a b", "é"])
def test_invalid_ids_name_the_problem(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="episode id"):
        validate_id("episode", bad)


def test_settings_precedence_flag_over_env_over_default(tmp_path: Path) -> None:
    env = {"FACEFLOW_DATA_ROOT": str(tmp_path / "env"), "FACEFLOW_MODEL_THREADS": "2"}
    assert Settings.from_env(env).data_root == tmp_path / "env"
    assert Settings.from_env(env, data_root=str(tmp_path / "flag")).data_root == tmp_path / "flag"
    assert Settings.from_env({}).data_root == Path("data")
    assert Settings.from_env(env).model_threads == 2
    assert Settings.from_env({"FACEFLOW_MODEL_THREAD_SPINNING": "true"}).model_thread_spinning is True
    with pytest.raises(InvalidArgument, match="model_threads"):
        Settings.from_env({"FACEFLOW_MODEL_THREADS": "many"})
    with pytest.raises(InvalidArgument, match="device"):
        Settings.from_env({"FACEFLOW_DEVICE": "tpu"})


def _wait(manager: JobManager, job_id: str) -> orchestrator_pb2.Progress:
    return list(manager.watch(job_id, lambda: True))[-1]


def test_jobs_are_idempotent_per_key_and_report_progress(new_manager: Callable[..., JobManager]) -> None:
    calls = []

    def run(job, report, cancelled):  # type: ignore[no-untyped-def]
        calls.append(job.job_id)
        report(ProgressEvent(orchestrator_pb2.STAGE_DETECT_TRACK, 5, 10, 2.0, 2.5, 1))
        return orchestrator_pb2.RunSummary(run_id="r1")

    manager = new_manager(run, lambda: {"device": "cpu"})
    first = manager.submit("ep", orchestrator_pb2.RunOptions(), "k")
    second = manager.submit("ep", orchestrator_pb2.RunOptions(), "k")
    assert first.job_id == second.job_id
    final = _wait(manager, first.job_id)
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED and final.summary.run_id == "r1"
    assert final.device == "cpu" and calls == [first.job_id]
    third = manager.submit("ep", orchestrator_pb2.RunOptions(), "")
    assert third.job_id != first.job_id
    with pytest.raises(NotFound):
        manager.get("job-unknown")


def test_validation_failure_creates_no_job_and_cancel_stops_a_job(new_manager: Callable[..., JobManager]) -> None:
    started = threading.Event()

    def run(job, report, cancelled):  # type: ignore[no-untyped-def]
        started.set()
        while not cancelled.is_set():
            time.sleep(0.01)
        raise Cancelled("the job was cancelled")

    def validate(ep_id: str, options: orchestrator_pb2.RunOptions) -> orchestrator_pb2.RunOptions:
        if ep_id == "missing":
            raise NotFound("episode 'missing' does not exist")
        return options

    manager = new_manager(run, dict, validate)
    with pytest.raises(NotFound):
        manager.submit("missing", orchestrator_pb2.RunOptions(), "")
    assert manager.list() == []
    job = manager.submit("ep", orchestrator_pb2.RunOptions(), "")
    assert started.wait(5)
    manager.cancel(job.job_id)
    assert _wait(manager, job.job_id).state == orchestrator_pb2.JOB_STATE_CANCELLED


def test_an_unchanged_job_is_repeated_as_a_heartbeat(new_manager: Callable[..., JobManager]) -> None:
    release = threading.Event()

    def run(job, report, cancelled):  # type: ignore[no-untyped-def]
        report(ProgressEvent(orchestrator_pb2.STAGE_DETECT_TRACK, 1, 10))
        release.wait(5)
        return orchestrator_pb2.RunSummary(run_id="r")

    manager = new_manager(run, dict)
    job = manager.submit("ep", orchestrator_pb2.RunOptions(), "")
    stream = manager.watch(job.job_id, lambda: True, heartbeat_s=0.05)
    seen = [next(stream) for _ in range(4)]  # the job does not change while we read: heartbeats
    release.set()
    assert all(p.job_id == job.job_id for p in seen)
    assert list(stream)[-1].state == orchestrator_pb2.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["run", "v.mp4", "--episode", "e", "--data-root", "D"],
            ["--data-root", "D", "run", "v.mp4", "--episode", "e"],
        ),
        (
            ["--data-root", "D", "run", "v.mp4", "--episode", "e"],
            ["--data-root", "D", "run", "v.mp4", "--episode", "e"],
        ),
        (["up", "--storage=s3"], ["--storage=s3", "up"]),
        (
            ["facebank", "add", "--name", "A", "--data-root", "D", "x.jpg"],
            ["--data-root", "D", "facebank", "add", "--name", "A", "x.jpg"],
        ),
    ],
)
def test_global_options_may_follow_the_subcommand(argv: list[str], expected: list[str]) -> None:
    from services.cli.main import build_parser, hoist_global_options

    assert hoist_global_options(argv) == expected
    parsed = build_parser().parse_args(hoist_global_options(argv))
    assert parsed.command in ("run", "up", "facebank")
    assert parsed.data_root == "D" or parsed.storage == "s3"


@pytest.mark.parametrize(
    ("fps", "stride"), [(25.0, 10), (23.976, 10), (29.97, 12), (50.0, 20), (59.94, 24), (5.0, 2), (2.0, 1)]
)
def test_default_base_stride_samples_about_two_and_a_half_frames_per_second(fps: float, stride: int) -> None:
    assert default_stride(fps) == stride


def test_default_stride_survives_odd_frame_rates() -> None:
    assert default_stride(0.0) == 1 and default_stride(1.0) == 1 and default_stride(10_000.0) == 60


def test_stride_zero_means_the_default_and_explicit_strides_are_kept() -> None:
    assert RunSettings.from_options(orchestrator_pb2.RunOptions()).stride == AUTO_STRIDE
    assert RunSettings.from_options(orchestrator_pb2.RunOptions(stride=1)).stride == 1
    # An explicit stride samples uniformly; the run turns AUTO_STRIDE into adaptive sampling.
    assert not RunSettings.from_options(orchestrator_pb2.RunOptions(stride=5)).adaptive
    with pytest.raises(InvalidArgument, match="stride"):
        RunSettings.from_options(orchestrator_pb2.RunOptions(stride=-1))


def test_the_default_and_stride_1_run_adaptively_other_strides_uniformly() -> None:
    default = resolve_sampling(RunSettings(), 25.0)
    assert (default.stride, default.adaptive) == (10, True)
    # Stride 1 processes every frame either way; adaptively it also picks the input size per shot.
    every = resolve_sampling(RunSettings(stride=1), 25.0)
    assert (every.stride, every.adaptive) == (1, True)
    fixed = resolve_sampling(RunSettings(stride=5), 25.0)
    assert (fixed.stride, fixed.adaptive) == (5, False)


def test_admission_defaults_match_the_settings() -> None:
    """JobManager and UploadSessions built without settings (tests, in-process use) behave as deployed."""
    from services.orchestrator.api import jobs, uploads

    defaults = Settings()
    assert defaults.max_running_jobs == jobs.MAX_RUNNING
    assert defaults.job_retention_s == jobs.RETENTION_S
    assert defaults.max_uploads_per_caller == uploads.MAX_PER_CALLER
    assert defaults.max_upload_bytes == uploads.MAX_UPLOAD_BYTES
