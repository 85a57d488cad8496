"""One run of one episode: validate, detect+track+embed, identities, labels, screen time, write, publish."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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
from services.orchestrator.analysis.backfill import backfill_tracks
from services.orchestrator.analysis.track_refine import RefineReport, refine_tracks
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.review.service import ReviewService
from services.orchestrator.run import checkpoints, outputs
from services.orchestrator.run.artifacts import upload_artifact
from services.orchestrator.run.detect_track import StreamOptions, StreamProgress, detect_track_embed
from services.orchestrator.run.identity_stage import IdentityResult, build_identities
from services.orchestrator.run.options import RunSettings, TrackerChoices, resolve_sampling

log = logging.getLogger(__name__)

Stage = orchestrator_pb2.Stage


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


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def validate_episode(clients: ServiceClients, ep_id: str) -> storage_pb2.Episode:
    """The episode exists and its video is readable, before any work starts."""
    validate_id("episode", ep_id)
    with translate_rpc_errors("storage"):
        episode = clients.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=ep_id))
    try:
        probe = detector_pb2.ProbeVideoRequest(video_uri=episode.video_uri)
        with translate_rpc_errors("detector"):
            clients.detector.ProbeVideo(probe)
    except (InvalidArgument, FailedPrecondition) as error:
        raise FailedPrecondition(f"the video of episode {ep_id!r} cannot be read: {error}") from None
    return episode


def _model_info(clients: ServiceClients) -> dict[str, Any]:
    with translate_rpc_errors("detector"):
        detector = clients.detector.GetModelInfo(detector_pb2.GetModelInfoRequest()).model
    with translate_rpc_errors("embedder"):
        embedder = clients.embedder.GetEmbedderInfo(embedder_pb2.GetEmbedderInfoRequest()).model
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
    settings = resolve_sampling(settings, video.fps)
    trackers = TrackerChoices.ask(clients, video.fps, settings.stride)
    settings = dataclasses.replace(settings, tracker=trackers.resolve(settings.tracker))
    # The tracker's own thresholds as the session runs them (seconds converted at this fps/stride).
    tracker = trackers.settings[settings.tracker]

    def on_stream(p: StreamProgress) -> None:
        fps = p.frames_done / p.elapsed_s if p.elapsed_s > 0 else 0.0
        eta = (p.frames_total - p.frames_done) / fps if fps > 0 else 0.0
        report(ProgressEvent(Stage.STAGE_DETECT_TRACK, p.frames_done, p.frames_total, fps, eta, p.tracks_so_far))

    # Everything a segment's result depends on: a resumed run reuses only checkpoints made under it.
    checkpoint_key = checkpoints.fingerprint(
        {
            "video": episode.video_sha256,
            "frames": video.frame_count,
            "fps": video.fps,
            "models": models,
            "settings": dataclasses.asdict(settings),
            "detectors": clients.detector_replicas,
            "segment_s": clients.segment_s,
        }
    )
    options = StreamOptions(
        episode.video_uri,
        video.frame_count,
        video.fps,
        settings.stride,
        settings.tracker,
        settings.det_score_threshold,
        settings.sampler,
        adaptive=settings.adaptive,
        ep_id=ep_id,
        run_id=run_id,
        save_crops=settings.save_crops,
        checkpoint_key=checkpoint_key,
        tracker_uses_appearance=trackers.uses_appearance[settings.tracker],
    )
    frames_total = options.frames_total
    report(
        ProgressEvent(
            Stage.STAGE_DETECT_TRACK,
            0,
            frames_total,
            message="detecting, tracking, embedding",
            tracker_settings=json.dumps(tracker, sort_keys=True),
        )
    )
    stream = detect_track_embed(clients, options, on_stream, cancelled)
    timings["detect_track_embed_s"] = stream.detect_track_s
    timings["embed_calls_s"] = stream.embed_s
    timings["tracking_embed_wait_s"] = stream.tracking_embed_s
    backfilled = backfill_tracks(stream.faces, video.fps, settings.stride, settings.backfill)
    faces = dataclasses.replace(stream.faces, track_id=backfilled)
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
        "tracks.mot.txt": outputs.mot_rows(faces, settings.stride if settings.adaptive else 0, video.frame_count),
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
            "detector_replicas": clients.detector_replicas,
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
