"""What the client returns: frozen dataclasses, never protos. Collections have `to_pandas()`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from faceflow.client.errors import InvalidArgument
from faceflow.v1 import orchestrator_pb2, storage_pb2

Interval = tuple[float, float]


class JobState(str, Enum):  # noqa: UP042 (StrEnum needs Python 3.11; the client supports 3.10)
    """A job's state; compares equal to its lower-case name ("running")."""

    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        return _enum(cls, orchestrator_pb2.JobState, value, "JOB_STATE_")


class Stage(str, Enum):  # noqa: UP042
    """The pipeline stage a job is in."""

    UNSPECIFIED = "unspecified"
    VALIDATE = "validate"
    DETECT_TRACK = "detect_track"
    EMBED = "embed"
    CLUSTER = "cluster"
    LABEL = "label"
    SCREEN_TIME = "screen_time"
    WRITE = "write"
    DONE = "done"

    @classmethod
    def from_proto(cls, value: int) -> Stage:
        return _enum(cls, orchestrator_pb2.Stage, value, "STAGE_")


EnumT = TypeVar("EnumT", JobState, Stage)


def _enum(kind: type[EnumT], proto_enum: Any, value: int, prefix: str) -> EnumT:
    """The Python member for a proto enum value; UNSPECIFIED for a value this client does not know."""
    try:
        return kind(str(proto_enum.Name(value)).removeprefix(prefix).lower())
    except ValueError:
        return kind("unspecified")


@dataclass(frozen=True)
class RunOptions:
    """How to run an episode; zero values leave the choice to the service.

    stride: process every Nth frame (0: about 5 per second). tracker: "bytetrack" or "strongsort"
    (appearance-aware, for occlusions). detector: "retinaface". show: whose facebank names identities
    ("default"). det_score_threshold, cluster_distance: override the detector's score threshold and the
    identity clustering distance when > 0. skip_crops: save no face crops for review. skip_track_refine:
    keep the tracker's tracks as they are (to measure a tracker alone).
    """

    stride: int = 0
    tracker: str = ""
    detector: str = ""
    show: str = ""
    det_score_threshold: float = 0.0
    cluster_distance: float = 0.0
    skip_crops: bool = False
    skip_track_refine: bool = False

    def __post_init__(self) -> None:
        if self.stride < 0:
            raise InvalidArgument(f"stride must be 0 (the service's default) or more, got {self.stride}")
        for name in ("det_score_threshold", "cluster_distance"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be 0 (the service's default) or more, got {getattr(self, name)}")

    def to_proto(self) -> orchestrator_pb2.RunOptions:
        return orchestrator_pb2.RunOptions(
            stride=self.stride,
            tracker=self.tracker,
            detector=self.detector,
            show_id=self.show,
            det_score_threshold=self.det_score_threshold,
            cluster_distance=self.cluster_distance,
            skip_crops=self.skip_crops,
            skip_track_refine=self.skip_track_refine,
        )

    @classmethod
    def from_proto(cls, message: orchestrator_pb2.RunOptions) -> RunOptions:
        return cls(
            stride=message.stride,
            tracker=message.tracker,
            detector=message.detector,
            show=message.show_id,
            # float32 on the wire: 0.4 comes back as 0.4000000059604645 without rounding
            det_score_threshold=round(message.det_score_threshold, 6),
            cluster_distance=round(message.cluster_distance, 6),
            skip_crops=message.skip_crops,
            skip_track_refine=message.skip_track_refine,
        )


@dataclass(frozen=True)
class Progress:
    """One progress message of a job (the last one of a job that ended has a terminal `state`)."""

    job_id: str
    ep_id: str
    state: JobState
    stage: Stage
    frames_done: int
    frames_total: int
    fps: float
    eta_s: float
    message: str = ""
    tracks_so_far: int = 0
    detector: str = ""
    tracker: str = ""
    device: str = ""

    @property
    def fraction(self) -> float:
        """0..1 of the frames done (1 once succeeded)."""
        if self.state is JobState.SUCCEEDED:
            return 1.0
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 0.0

    @classmethod
    def from_proto(cls, message: orchestrator_pb2.Progress) -> Progress:
        return cls(
            job_id=message.job_id,
            ep_id=message.ep_id,
            state=JobState.from_proto(message.state),
            stage=Stage.from_proto(message.stage),
            frames_done=message.frames_done,
            frames_total=message.frames_total,
            fps=message.fps,
            eta_s=message.eta_s,
            message=message.message,
            tracks_so_far=message.tracks_so_far,
            detector=message.detector,
            tracker=message.tracker,
            device=message.device,
        )


@dataclass(frozen=True)
class Job:
    """A submitted job: a run of an episode ("run") or a crop harvest ("harvest_crops")."""

    job_id: str
    ep_id: str
    kind: str
    options: RunOptions
    progress: Progress
    idempotency_key: str = ""
    created_at: str = ""
    error: str = ""
    run_id: str = ""
    submitted_by: str = ""
    queue_position: int = 0  # while queued: 1 for the next job to start
    attempts: int = 0  # 2 or more: resumed after a crash

    @property
    def state(self) -> JobState:
        return self.progress.state

    @classmethod
    def from_proto(cls, message: orchestrator_pb2.Job) -> Job:
        return cls(
            job_id=message.job_id,
            ep_id=message.ep_id,
            kind=message.kind or "run",
            options=RunOptions.from_proto(message.options),
            progress=Progress.from_proto(message.progress),
            idempotency_key=message.idempotency_key,
            created_at=message.created_at,
            error=message.error,
            run_id=message.run_id or message.progress.summary.run_id,
            submitted_by=message.submitted_by,
            queue_position=message.queue_position,
            attempts=message.attempts,
        )


@dataclass(frozen=True)
class RunResult:
    """What a succeeded run made: its run id (now the episode's current outputs) and counts."""

    job_id: str
    ep_id: str
    run_id: str
    frames_processed: int
    faces: int
    tracks: int
    identities: int
    duration_s: float
    wall_time_s: float
    output_uri: str

    @classmethod
    def from_final(cls, message: orchestrator_pb2.Progress) -> RunResult:
        summary = message.summary
        return cls(
            job_id=message.job_id,
            ep_id=message.ep_id,
            run_id=summary.run_id,
            frames_processed=summary.frames_processed,
            faces=summary.faces,
            tracks=summary.tracks,
            identities=summary.identities,
            duration_s=summary.duration_s,
            wall_time_s=summary.wall_time_s,
            output_uri=summary.output_uri,
        )


@dataclass(frozen=True)
class Episode:
    """A stored episode and its video."""

    ep_id: str
    show_id: str
    created_at: str
    current_run_id: str  # empty before the first published run
    video_sha256: str
    fps: float
    frame_count: int
    width: int
    height: int
    duration_s: float
    codec: str
    size_bytes: int
    season: int = 0  # of its show; 0: not set
    episode_number: int = 0  # in its season; 0: not set

    @classmethod
    def from_proto(cls, message: storage_pb2.Episode) -> Episode:
        video = message.video
        return cls(
            ep_id=message.ep_id,
            show_id=message.show_id,
            season=message.season,
            episode_number=message.episode_number,
            created_at=message.created_at,
            current_run_id=message.current_run_id,
            video_sha256=message.video_sha256,
            fps=video.fps,
            frame_count=video.frame_count,
            width=video.width,
            height=video.height,
            duration_s=video.duration_s,
            codec=video.codec,
            size_bytes=video.size_bytes,
        )
