"""One run of one episode: validate, detect+track+embed, identities, labels, screen time, write, publish."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faceflow.v1 import (
    detector_pb2,
    embedder_pb2,
    orchestrator_pb2,
    storage_pb2,
)
from google.protobuf import json_format

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.grpc_errors import translate_rpc_errors
from services.common.ids import validate_id
from services.orchestrator import checkpoints, outputs
from services.orchestrator.artifacts import upload_artifact
from services.orchestrator.backfill import BackfillSettings, backfill_tracks
from services.orchestrator.clients import ServiceClients, call_any
from services.orchestrator.detect_track import StreamOptions, StreamProgress, detect_track_embed
from services.orchestrator.identities import ClusteringSettings
from services.orchestrator.identity_stage import IdentityResult, build_identities
from services.orchestrator.labelling import MatchSettings
from services.orchestrator.review.service import ReviewService
from services.orchestrator.sampler import SamplerSettings
from services.orchestrator.screentime import ScreenTimeSettings
from services.orchestrator.track_refine import RefineReport, TrackRefineSettings, refine_tracks
from services.tracker.registry import DEFAULT_TRACKER, TRACKERS, settings_record

log = logging.getLogger(__name__)

Stage = orchestrator_pb2.Stage
# Default sampling rate when no stride is asked for: ~5 processed frames per second of video
# (stride 5 at 25 fps, 6 at 29.97/30, 10 at 50, 12 at 60). TV shots last 2-5 s and a face on screen
# for screen time matters at ~0.2 s resolution, so 5 samples/s loses little (30 s sample: recall
# 0.98 -> 0.93, screen-time error 0.5% -> ~4%, nearly all from one fast 22 px face) for ~1/5 of the
# stride-1 cost, which puts an hour of 720p inside 20 minutes on two cores (docs/performance.md).
# Stride 1 stays available for work where every frame matters.
DEFAULT_SAMPLES_PER_S = 5.0
AUTO_STRIDE = 0  # RunSettings.stride before the video's fps is known
# Stride upper bound: beyond ~2 s between samples tracking by IoU is meaningless.
MAX_STRIDE = 60
DETECTORS = ("retinaface",)


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's result; recorded whole in manifest.json."""

    stride: int = AUTO_STRIDE
    detector: str = "retinaface"
    tracker: str = "bytetrack"
    det_score_threshold: float = 0.0  # 0: the detector's own default
    show_id: str = "default"
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    matching: MatchSettings = field(default_factory=MatchSettings)
    screen_time: ScreenTimeSettings = field(default_factory=ScreenTimeSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    track_refine: TrackRefineSettings = field(default_factory=TrackRefineSettings)
    refine_tracks: bool = True  # False only to measure a tracker alone (RunOptions.skip_track_refine)
    save_crops: bool = True

    @classmethod
    def from_options(cls, options: orchestrator_pb2.RunOptions) -> RunSettings:
        stride = options.stride
        if not 0 <= stride <= MAX_STRIDE:
            raise InvalidArgument(f"stride must be between 1 and {MAX_STRIDE} frames, got {options.stride}")
        detector = options.detector or "retinaface"
        if detector not in DETECTORS:
            raise InvalidArgument(f"unknown detector {detector!r}; available: {', '.join(DETECTORS)}")
        tracker = options.tracker or DEFAULT_TRACKER
        if tracker not in TRACKERS:
            raise InvalidArgument(f"unknown tracker {tracker!r}; available: {', '.join(TRACKERS)}")
        if not 0 <= options.det_score_threshold < 1:
            raise InvalidArgument(f"det_score_threshold must be in [0, 1), got {options.det_score_threshold}")
        if options.cluster_distance < 0 or options.cluster_distance > 2:
            raise InvalidArgument(
                f"cluster_distance must be a cosine distance in (0, 2], got {options.cluster_distance}"
            )
        clustering = ClusteringSettings()
        if options.cluster_distance:
            clustering = dataclasses.replace(clustering, distance_threshold=options.cluster_distance)
        return cls(
            stride=stride,
            detector=detector,
            tracker=tracker,
            det_score_threshold=options.det_score_threshold,
            show_id=validate_id("show", options.show_id or "default"),
            save_crops=not options.skip_crops,
            refine_tracks=not options.skip_track_refine,
            clustering=clustering,
        )


@dataclass
class ProgressEvent:
    stage: int
    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float = 0.0
    tracks_so_far: int = 0
    message: str = ""
    tracker_settings: str = ""  # JSON of the tracker's name and settings, once the fps is known


def default_stride(fps: float) -> int:
    """The stride that samples ~DEFAULT_SAMPLES_PER_S frames per second of a video at `fps`."""
    return max(1, min(MAX_STRIDE, round(fps / DEFAULT_SAMPLES_PER_S))) if fps > 0 else 1


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def validate_episode(clients: ServiceClients, ep_id: str) -> storage_pb2.Episode:
    """The episode exists and its video is readable, before any work starts."""
    validate_id("episode", ep_id)
    with translate_rpc_errors("storage"):
        episode = clients.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=ep_id))
    try:
        probe = detector_pb2.ProbeVideoRequest(video_uri=episode.video_uri)
        call_any(clients.detectors, "detector", lambda stub: stub.ProbeVideo(probe))
    except (InvalidArgument, FailedPrecondition) as error:
        raise FailedPrecondition(f"the video of episode {ep_id!r} cannot be read: {error}") from None
    return episode


def _model_info(clients: ServiceClients) -> dict[str, Any]:
    detector = call_any(
        clients.detectors, "detector", lambda s: s.GetModelInfo(detector_pb2.GetModelInfoRequest())
    ).model
    embedder = call_any(
        clients.embedders, "embedder", lambda s: s.GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest())
    ).model
    return {
        "detector": json_format.MessageToDict(detector, preserving_proto_field_name=True),
        "embedder": json_format.MessageToDict(embedder, preserving_proto_field_name=True),
    }


def run_episode(
    clients: ServiceClients,
    ep_id: str,
    settings: RunSettings,
    report: Callable[[ProgressEvent], None],
    cancelled: Any,
    run_id: str | None = None,
) -> orchestrator_pb2.RunSummary:
    started = time.monotonic()
    timings: dict[str, float] = {}
    report(ProgressEvent(Stage.STAGE_VALIDATE, message="checking the episode and its video"))
    episode = validate_episode(clients, ep_id)
    models = _model_info(clients)
    run_id = run_id or new_run_id()
    video = episode.video
    if settings.stride == AUTO_STRIDE:
        settings = dataclasses.replace(settings, stride=default_stride(video.fps))
    frames_total = len(range(0, video.frame_count, settings.stride))

    def on_stream(p: StreamProgress) -> None:
        fps = p.frames_done / p.elapsed_s if p.elapsed_s > 0 else 0.0
        eta = (p.frames_total - p.frames_done) / fps if fps > 0 else 0.0
        report(ProgressEvent(Stage.STAGE_DETECT_TRACK, p.frames_done, p.frames_total, fps, eta, p.tracks_so_far))

    tracker = settings_record(settings.tracker, video.fps, settings.stride)
    # Everything a segment's result depends on: a resumed run reuses only checkpoints made under it.
    checkpoint_key = checkpoints.fingerprint(
        {
            "video": episode.video_sha256,
            "frames": video.frame_count,
            "fps": video.fps,
            "models": models,
            "settings": dataclasses.asdict(settings),
            "detectors": len(clients.detectors),
            "segment_s": clients.segment_s,
        }
    )
    report(
        ProgressEvent(
            Stage.STAGE_DETECT_TRACK,
            0,
            frames_total,
            message="detecting, tracking, embedding",
            tracker_settings=json.dumps(tracker, sort_keys=True),
        )
    )
    stream = detect_track_embed(
        clients,
        StreamOptions(
            episode.video_uri,
            video.frame_count,
            video.fps,
            settings.stride,
            settings.tracker,
            settings.det_score_threshold,
            settings.sampler,
            ep_id=ep_id,
            run_id=run_id,
            save_crops=settings.save_crops,
            checkpoint_key=checkpoint_key,
        ),
        on_stream,
        cancelled,
    )
    timings["detect_track_embed_s"] = stream.detect_track_s
    timings["embed_calls_s"] = stream.embed_s
    timings["tracking_embed_wait_s"] = stream.tracking_embed_s
    faces = dataclasses.replace(stream.faces, track_id=backfill_tracks(stream.faces, video.fps, settings.backfill))
    # Split identity jumps and merge same-shot fragments (any tracker), before identities are built.
    refined, refine_report = faces.track_id, RefineReport()
    if settings.refine_tracks:
        refined, refine_report = refine_tracks(faces, video.fps, settings.track_refine)
    if stream.crops is not None:
        moved = np.flatnonzero((faces.track_id > 0) & (refined != faces.track_id))
        stream.crops.reindex({(int(faces.track_id[r]), int(faces.frame[r])): int(refined[r]) for r in moved})
    faces = dataclasses.replace(faces, track_id=refined)

    tracks = len(faces.track_ids())
    done_fps = len(faces.processed_frames) / max(stream.detect_track_s, 1e-9)
    report(ProgressEvent(Stage.STAGE_CLUSTER, frames_total, frames_total, done_fps, 0.0, tracks, "grouping tracks"))
    t0 = time.monotonic()
    with translate_rpc_errors("storage"):
        people = list(clients.storage.ListPeople(storage_pb2.ListPeopleRequest(show_id=settings.show_id)).people)
    result: IdentityResult = build_identities(
        faces,
        people,
        stream.embedding_model_id,
        video.fps,
        settings.stride,
        video.duration_s,
        settings.clustering,
        settings.matching,
        settings.screen_time,
    )
    timings["cluster_label_screentime_s"] = time.monotonic() - t0

    report(ProgressEvent(Stage.STAGE_WRITE, frames_total, frames_total, done_fps, 0.0, tracks, "writing outputs"))
    t0 = time.monotonic()
    files = {
        "tracks.mot.txt": outputs.mot_rows(faces),
        "detections.jsonl": outputs.detections_jsonl(faces, video.fps),
        "faces.jsonl": outputs.faces_jsonl(faces, video.fps, stream.embedding_model_id),
        "faces.npy": outputs.faces_npy(faces),
        "tracks.jsonl": outputs.tracks_jsonl(faces, result, video.fps),
        "identities.json": outputs.identities_json(result, stream.embedding_model_id),
        "screentime.json": outputs.screentime_json(
            ep_id, video.fps, video.duration_s, settings.screen_time.gap_bridge_s, result
        ),
    }
    for name, data in files.items():
        upload_artifact(clients, ep_id, run_id, name, data)
    timings["write_s"] = time.monotonic() - t0
    timings["total_s"] = time.monotonic() - started
    manifest = {
        "ep_id": ep_id,
        "run_id": run_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "video": {**json_format.MessageToDict(video, preserving_proto_field_name=True), "sha256": episode.video_sha256},
        "models": models,
        "embedding_model": stream.embedding_model_id,
        "settings": dataclasses.asdict(settings),
        # The tracker's own thresholds as the session ran them (seconds converted at this fps/stride).
        "tracker": tracker,
        "counts": {
            "frames_processed": len(faces.processed_frames),
            "shot_cuts": len(faces.cut_frames),
            "faces": len(faces.faces()),
            "faces_embedded": len(faces.embedding_row),
            "faces_embedded_for_tracking": stream.embedded_for_tracking,
            "crops_saved": stream.crops_saved,
            "segments": stream.segments,
            "segments_resumed": stream.segments_resumed,
            "detector_replicas": len(clients.detectors),
            "tracks": len(faces.track_ids()),
            "identities": len(result.identities),
            "facebank_exemplars_used": result.facebank_exemplars_used,
            "facebank_exemplars_skipped_other_model": result.facebank_exemplars_skipped,
        },
        "track_refine": refine_report.as_dict(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "artifacts": sorted(files),
    }
    # Checkpoints are not outputs: gone before the run is published (a crash after this redoes segments).
    with translate_rpc_errors("storage"):
        clients.storage.DeleteRun(storage_pb2.DeleteRunRequest(ep_id=ep_id, run_id=run_id, prefix=checkpoints.FOLDER))
    # The manifest is written last and the run published after it: readers never see a partial run.
    upload_artifact(clients, ep_id, run_id, outputs.MANIFEST, outputs.manifest_json(manifest))
    with translate_rpc_errors("storage"):
        clients.storage.PublishRun(storage_pb2.PublishRunRequest(ep_id=ep_id, run_id=run_id))
    ReviewService(clients).refresh(ep_id)  # reviewers' decisions carry over to the new run
    return orchestrator_pb2.RunSummary(
        run_id=run_id,
        frames_processed=len(faces.processed_frames),
        faces=len(faces.faces()),
        tracks=len(faces.track_ids()),
        identities=len(result.identities),
        duration_s=video.duration_s,
        wall_time_s=time.monotonic() - started,
        screen_time=[
            orchestrator_pb2.IdentityScreenTime(
                identity_id=i.identity_id,
                label=i.match.label or "",
                seconds=i.seconds,
                track_count=len(i.track_ids),
                label_similarity=i.match.similarity or 0.0,
            )
            for i in sorted(result.identities, key=lambda i: -i.seconds)
        ],
        output_uri=episode.video_uri.rsplit("/", 1)[0],
    )
