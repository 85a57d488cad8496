"""Writing run artifacts through the storage service, and the per-track crops saved during a run."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from faceflow.v1 import storage_pb2

from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.api.clients import ServiceClients

UPLOAD_CHUNK = 1024 * 1024


def upload_artifact(clients: ServiceClients, ep_id: str, run_id: str, name: str, data: bytes) -> None:
    def messages() -> Iterator[storage_pb2.PutArtifactRequest]:
        yield storage_pb2.PutArtifactRequest(ref=storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name))
        for start in range(0, len(data), UPLOAD_CHUNK):
            yield storage_pb2.PutArtifactRequest(chunk=data[start : start + UPLOAD_CHUNK])

    with translate_rpc_errors("storage"):
        clients.storage.PutArtifact(messages())


def read_artifact(clients: ServiceClients, ep_id: str, run_id: str, name: str) -> bytes:
    """One artifact of a run (an empty run_id: the current run), whole."""
    ref = storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name)
    with translate_rpc_errors("storage"):
        return b"".join(m.chunk for m in clients.storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref)))


def read_faces(clients: ServiceClients, ep_id: str, run_id: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """A run's embedded faces: the rows of faces.jsonl and the embeddings of faces.npy (row i = line i)."""
    rows = [
        json.loads(line) for line in read_artifact(clients, ep_id, run_id, "faces.jsonl").splitlines() if line.strip()
    ]
    embeddings = np.load(io.BytesIO(read_artifact(clients, ep_id, run_id, "faces.npy")), allow_pickle=False)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(rows):
        raise ValueError(f"faces.npy of run {run_id} has shape {embeddings.shape} but faces.jsonl has {len(rows)} rows")
    return rows, embeddings


class CropSaver:
    """Uploads 4:5 crops on a background thread as they are sampled; writes each track's index last.
    Storage chooses where a crop is kept: the index lists the keys its PutTrackCrop answers gave."""

    def __init__(self, clients: ServiceClients, ep_id: str, run_id: str, fps: float) -> None:
        self._clients = clients
        self._ep_id = ep_id
        self._run_id = run_id
        self._fps = fps
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crops")
        self._futures: list[tuple[int, Future[storage_pb2.TrackCrop]]] = []
        self.index: dict[int, list[storage_pb2.TrackCrop]] = {}

    def add(self, track_id: int, frame: int, jpeg: bytes) -> None:
        if not jpeg:
            return
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        height, width = (image.shape[0] * 8, image.shape[1] * 8) if image is not None else (0, 0)
        request = storage_pb2.PutTrackCropRequest(
            ep_id=self._ep_id,
            run_id=self._run_id,
            track_id=track_id,
            frame_idx=frame,
            ts=round(frame / self._fps, 4),
            width=width,
            height=height,
            jpeg=jpeg,
        )
        self._futures.append((track_id, self._pool.submit(self._put, request)))

    def _put(self, request: storage_pb2.PutTrackCropRequest) -> storage_pb2.TrackCrop:
        with translate_rpc_errors("storage"):
            return self._clients.storage.PutTrackCrop(request)  # type: ignore[no-any-return]

    def finish(self) -> int:
        """Wait for every crop, then write each track's index (after its crops). Returns crops saved."""
        try:
            for track_id, future in self._futures:
                self.index.setdefault(track_id, []).append(future.result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for track_id, items in self.index.items():
            self._put_index(track_id, items)
        return len(self._futures)

    def reindex(self, new_track: dict[tuple[int, int], int]) -> int:
        """After tracks were split or merged ((old track, frame) -> new track), rewrite the indexes
        that changed; crops stay where they were uploaded (index keys may point into any track's
        folder). A track that no longer exists keeps an empty index. Returns indexes rewritten."""
        regrouped: dict[int, list[storage_pb2.TrackCrop]] = {}
        for track_id, items in self.index.items():
            for item in items:
                regrouped.setdefault(new_track.get((track_id, item.frame_idx), track_id), []).append(item)
        changed = {t for t in regrouped.keys() | self.index.keys() if regrouped.get(t) != self.index.get(t)}
        for track_id in sorted(changed):
            self._put_index(track_id, regrouped.get(track_id, []))
        self.index = regrouped
        return len(changed)

    def _put_index(self, track_id: int, items: list[storage_pb2.TrackCrop]) -> None:
        request = storage_pb2.PutTrackCropIndexRequest(
            ep_id=self._ep_id, run_id=self._run_id, track_id=track_id, items=items
        )
        with translate_rpc_errors("storage"):
            self._clients.storage.PutTrackCropIndex(request)

    def abandon(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
