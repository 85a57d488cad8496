"""The harvest-crops job: save 4:5 crops for the tracks of a run that have none.

A run made with skip_crops, or whose crop uploads were lost, leaves reviewers without faces to
look at. The detector re-decodes only each such track's span, at the sampling window's stride,
and the face that best overlaps the track's own box in each sampled frame is saved.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import numpy as np
from faceflow.v1 import detector_pb2, orchestrator_pb2, storage_pb2

from services.common.boxes import iou_matrix
from services.common.errors import Cancelled, FailedPrecondition
from services.common.grpc_errors import translate_rpc_errors
from services.common.sampling import MAX_STRIDE
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.run.artifacts import CropSaver, read_artifact
from services.orchestrator.run.pipeline import ProgressEvent
from services.orchestrator.run.sampler import SamplerSettings

Stage = orchestrator_pb2.Stage
# IoU between the track's recorded box and a re-detected face for the crop to count as that track's.
MIN_MATCH_IOU = 0.5


def tracks_with_crops(clients: ServiceClients, ep_id: str, run_id: str) -> set[int]:
    request = storage_pb2.ListCroppedTracksRequest(ep_id=ep_id, run_id=run_id)
    with translate_rpc_errors("storage"):
        return set(clients.storage.ListCroppedTracks(request).track_ids)


def harvest_crops(
    clients: ServiceClients,
    job: orchestrator_pb2.Job,
    report: Callable[[ProgressEvent], None],
    cancelled: threading.Event,
    sampler: SamplerSettings | None = None,
) -> orchestrator_pb2.RunSummary:
    sampler = sampler or SamplerSettings()
    with translate_rpc_errors("storage"):
        episode = clients.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=job.ep_id))
    run_id = job.run_id or episode.current_run_id
    if not run_id:
        raise FailedPrecondition(f"episode {job.ep_id!r} has no completed run to harvest crops for")
    lines = read_artifact(clients, job.ep_id, run_id, "tracks.jsonl").splitlines()
    tracks = [json.loads(line) for line in lines if line]
    done = tracks_with_crops(clients, job.ep_id, run_id)
    missing = [t for t in tracks if t["track_id"] not in done]
    fps = episode.video.fps
    step = min(MAX_STRIDE, max(1, round(sampler.window_s * fps)))
    saver = CropSaver(clients, job.ep_id, run_id, fps)
    for number, track in enumerate(missing):
        if cancelled.is_set():
            saver.abandon()
            raise Cancelled("the job was cancelled")
        report(ProgressEvent(Stage.STAGE_WRITE, number, len(missing), message=f"track {track['track_id']}"))
        boxes = dict(zip(track["frames"], track["boxes"], strict=True))
        request = detector_pb2.DetectVideoRequest(
            video_uri=episode.video_uri,
            start_frame=track["start_frame"],
            end_frame=track["end_frame"] + 1,
            stride=step,
            include_candidates=True,
            include_display_crops=True,
        )
        with translate_rpc_errors("detector"):
            for message in clients.detector.DetectVideo(request):
                frame = message.frame
                if frame.frame_index not in boxes or not frame.faces:
                    continue
                found = np.array([[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in frame.faces], np.float32)
                overlap = iou_matrix(np.asarray([boxes[frame.frame_index]], np.float32), found)[0]
                best = int(np.argmax(overlap))
                if overlap[best] >= MIN_MATCH_IOU:
                    saver.add(track["track_id"], frame.frame_index, frame.faces[best].display_crop_jpeg)
    saved = saver.finish()
    if run_id == episode.current_run_id:
        with translate_rpc_errors("storage"):  # republish so the episode's current view has the crops too
            clients.storage.PublishRun(storage_pb2.PublishRunRequest(ep_id=job.ep_id, run_id=run_id))
    return orchestrator_pb2.RunSummary(run_id=run_id, crops_saved=saved, tracks_harvested=len(saver.index))
