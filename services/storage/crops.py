"""A run's face crops, for any storage backend: saving them, their per-track index, and listing
them with fetchable URLs. Storage owns this layout; callers name only run, track and frame.

Crops live at `crops/track_{id:06d}/{frame:06d}.jpg` in a run, with the track's `index.json`
({"items": [{key, frame_idx, ts, width, height}]}) written after them. The index drives the
listing when it exists; otherwise (a run interrupted mid-harvest, say) the object listing does,
with the cursor being the last key of the previous page either way. An index entry whose crop is not
there (deleted, or on the local backend a link out of the data root) is left out of the page.
"""

from __future__ import annotations

import json
from typing import Any

from faceflow.v1 import storage_pb2

from services.common.errors import InvalidArgument, NotFound
from services.storage.backend import StorageBackend

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
# Seconds a crop URL stays valid: long enough for a reviewer's session on one page.
URL_EXPIRY_S = 3600
INDEX = "index.json"


def crop_prefix(track_id: int) -> str:
    return f"crops/track_{track_id:06d}/"


def crop_name(track_id: int, frame: int) -> str:
    return f"{crop_prefix(track_id)}{frame:06d}.jpg"


def put_track_crop(backend: StorageBackend, request: storage_pb2.PutTrackCropRequest) -> storage_pb2.TrackCrop:
    _check_track(request.track_id)
    if request.frame_idx < 0:
        raise InvalidArgument(f"frame_idx must be >= 0, got {request.frame_idx}")
    if not request.jpeg:
        raise InvalidArgument("a crop needs its JPEG bytes")
    key = crop_name(request.track_id, request.frame_idx)
    backend.put_artifact(request.ep_id, request.run_id, key, [request.jpeg])
    return storage_pb2.TrackCrop(
        key=key, frame_idx=request.frame_idx, ts=request.ts, width=request.width, height=request.height
    )


def put_track_crop_index(backend: StorageBackend, request: storage_pb2.PutTrackCropIndexRequest) -> None:
    """Writes index.json: {"track_id", "items": [{key, frame_idx, ts, width, height}]} in key order."""
    _check_track(request.track_id)
    items = [
        {"key": item.key, "frame_idx": item.frame_idx, "ts": item.ts, "width": item.width, "height": item.height}
        for item in request.items
    ]
    for item in items:
        if not str(item["key"]).startswith("crops/track_"):
            raise InvalidArgument(f"index item {item['key']!r} is not a crop key (use PutTrackCrop's)")
    body = json.dumps({"track_id": request.track_id, "items": sorted(items, key=lambda i: str(i["key"]))})
    backend.put_artifact(request.ep_id, request.run_id, crop_prefix(request.track_id) + INDEX, [body.encode()])


def list_cropped_tracks(backend: StorageBackend, ep_id: str, run_id: str) -> list[int]:
    listed = backend.list_artifacts(ep_id, run_id, "crops/")
    return sorted(
        int(a.ref.name.split("/")[1].removeprefix("track_")) for a in listed if a.ref.name.endswith("/" + INDEX)
    )


def _check_track(track_id: int) -> None:
    if track_id <= 0:
        raise InvalidArgument(f"track_id must be a positive track id, got {track_id}")


def _index_items(backend: StorageBackend, ep_id: str, run_id: str, track_id: int) -> list[dict[str, Any]] | None:
    try:
        raw = b"".join(backend.get_artifact(ep_id, run_id, crop_prefix(track_id) + INDEX))
    except NotFound:
        return None
    return sorted(json.loads(raw)["items"], key=lambda item: item["key"])


def list_track_crops(
    backend: StorageBackend, request: storage_pb2.ListTrackCropsRequest
) -> storage_pb2.ListTrackCropsResponse:
    _check_track(request.track_id)
    if not 0 <= request.limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT} (0: {DEFAULT_LIMIT}), got {request.limit}")
    if request.sample < 0:
        raise InvalidArgument(f"sample must be >= 1 (0: every crop), got {request.sample}")
    episode = backend.get_episode(request.ep_id)
    run_id = request.run_id or episode.current_run_id
    if not run_id:
        return storage_pb2.ListTrackCropsResponse()
    limit = request.limit or DEFAULT_LIMIT
    sample = request.sample or 1
    items = _index_items(backend, request.ep_id, run_id, request.track_id)
    if items is not None:
        # Sampling by position in the whole index keeps pages consistent with each other.
        chosen = [item for i, item in enumerate(items) if i % sample == 0 and item["key"] > request.start_after]
        page, more = chosen[:limit], len(chosen) > limit
        cursor = page[-1]["key"] if page else ""
    else:
        wanted = limit * sample
        listed = backend.list_artifacts(
            request.ep_id, run_id, crop_prefix(request.track_id), request.start_after, wanted + 1
        )
        names = [a.ref.name for a in listed if a.ref.name.endswith(".jpg")]
        more, consumed = len(names) > wanted, names[:wanted]
        fps = episode.video.fps or 1.0
        page = [_listed_item(name, fps) for name in consumed[::sample]]
        cursor = consumed[-1] if consumed else ""  # resume after everything this page passed over
    crops = (_crop(backend, request.ep_id, run_id, item) for item in page)
    return storage_pb2.ListTrackCropsResponse(
        items=[crop for crop in crops if crop is not None], next_start_after=cursor if more else ""
    )


def _listed_item(name: str, fps: float) -> dict[str, Any]:
    """Without an index, the file name is all we know: frame (and so time); size unknown (0)."""
    frame = int(name.rsplit("/", 1)[1].removesuffix(".jpg"))
    return {"key": name, "frame_idx": frame, "ts": frame / fps, "width": 0, "height": 0}


def _crop(backend: StorageBackend, ep_id: str, run_id: str, item: dict[str, Any]) -> storage_pb2.TrackCrop | None:
    try:
        url = backend.artifact_url(ep_id, run_id, item["key"], URL_EXPIRY_S)
    except NotFound:
        return None
    return storage_pb2.TrackCrop(
        key=item["key"],
        url=url,
        frame_idx=int(item["frame_idx"]),
        ts=float(item["ts"]),
        width=int(item.get("width", 0)),
        height=int(item.get("height", 0)),
    )
