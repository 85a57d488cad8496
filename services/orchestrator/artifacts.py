"""Writing run artifacts through the storage service, and the per-track crops saved during a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
from faceflow.v1 import storage_pb2

from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.clients import ServiceClients
from services.storage.crops import INDEX, crop_name, crop_prefix

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


class CropSaver:
    """Uploads 4:5 crops on a background thread as they are sampled; writes each track's index last."""

    def __init__(self, clients: ServiceClients, ep_id: str, run_id: str, fps: float) -> None:
        self._clients = clients
        self._ep_id = ep_id
        self._run_id = run_id
        self._fps = fps
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crops")
        self._futures: list[Future[None]] = []
        self.index: dict[int, list[dict[str, object]]] = {}

    def add(self, track_id: int, frame: int, jpeg: bytes) -> None:
        if not jpeg:
            return
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        height, width = (image.shape[0] * 8, image.shape[1] * 8) if image is not None else (0, 0)
        name = crop_name(track_id, frame)
        self.index.setdefault(track_id, []).append(
            {"key": name, "frame_idx": frame, "ts": round(frame / self._fps, 4), "width": width, "height": height}
        )
        self._futures.append(self._pool.submit(upload_artifact, self._clients, self._ep_id, self._run_id, name, jpeg))

    def finish(self) -> int:
        """Wait for every crop, then write each track's index.json (after its crops). Returns crops saved."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for track_id, items in self.index.items():
            body = json.dumps({"track_id": track_id, "items": sorted(items, key=lambda i: str(i["key"]))}).encode()
            upload_artifact(self._clients, self._ep_id, self._run_id, crop_prefix(track_id) + INDEX, body)
        return len(self._futures)

    def reindex(self, new_track: dict[tuple[int, int], int]) -> int:
        """After tracks were split or merged ((old track, frame) -> new track), rewrite the indexes
        that changed; crops stay where they were uploaded (index keys may point into any track's
        folder). A track that no longer exists keeps an empty index. Returns indexes rewritten."""
        regrouped: dict[int, list[dict[str, object]]] = {}
        for track_id, items in self.index.items():
            for item in items:
                target = new_track.get((track_id, int(item["frame_idx"])), track_id)  # type: ignore[call-overload]
                regrouped.setdefault(target, []).append(item)
        changed = {t for t in regrouped.keys() | self.index.keys() if regrouped.get(t) != self.index.get(t)}
        for track_id in sorted(changed):
            items = sorted(regrouped.get(track_id, []), key=lambda i: str(i["key"]))
            body = json.dumps({"track_id": track_id, "items": items}).encode()
            upload_artifact(self._clients, self._ep_id, self._run_id, crop_prefix(track_id) + INDEX, body)
        self.index = regrouped
        return len(changed)

    def abandon(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
