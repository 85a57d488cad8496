"""Embedding a run's sampled faces: batches sent to the embedder in the background while detection
goes on, and the faces the tracker needs embedded at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from faceflow.v1 import embedder_pb2

from services.common.errors import FailedPrecondition
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.api.clients import ServiceClients

# Crops per embedder call: big enough to amortise the call, small enough that embedding keeps
# pace with detection instead of piling up at the end of the stream (16 x 37.6 KB per request).
EMBED_BATCH = 16


class EmbedQueue:
    """Sends crops to the embedder in batches on one background thread; remembers each crop's face row."""

    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        # One batch in flight per embedder replica; results stay in submission order.
        self._pool = ThreadPoolExecutor(max_workers=clients.embedder_replicas, thread_name_prefix="embed")
        self._pending: list[bytes] = []
        self.rows: list[int] = []
        self._futures: list[Future[tuple[str, np.ndarray, float]]] = []
        # Vectors computed synchronously for the tracker, kept for the identity stage.
        self._lock = threading.Lock()
        self._known_rows: list[int] = []
        self._known_vectors: list[np.ndarray] = []
        self._model_ids: set[str] = set()
        self.embedded_now = 0
        self.embed_now_s = 0.0

    def add(self, samples: list[tuple[int, bytes]]) -> None:
        for row, crop in samples:
            self.rows.append(row)
            self._pending.append(crop)
            if len(self._pending) >= EMBED_BATCH:
                self.flush()

    def embed_now(self, crops: list[bytes]) -> np.ndarray:
        """Embed crops synchronously (the tracker is waiting for them); (N, d) unit vectors."""
        model_id, vectors, seconds = self._embed(crops)
        with self._lock:
            self._model_ids.add(model_id)
            self.embedded_now += len(crops)
            self.embed_now_s += seconds
        return vectors

    def add_known(self, row: int, vector: np.ndarray) -> None:
        """A face row whose vector was already computed (for the tracker): reused, not re-embedded."""
        with self._lock:
            self._known_rows.append(row)
            self._known_vectors.append(vector)

    def flush(self) -> None:
        if self._pending:
            self._futures.append(self._pool.submit(self._embed, self._pending))
            self._pending = []

    def _embed(self, crops: list[bytes]) -> tuple[str, np.ndarray, float]:
        started = time.monotonic()
        with translate_rpc_errors("embedder"):
            response = self._clients.embedder.Embed(embedder_pb2.EmbedRequest(crops_bgr=crops))
        vectors = np.array([e.values for e in response.embeddings], np.float32).reshape(len(crops), response.dim)
        return response.model_id, vectors, time.monotonic() - started

    def results(self) -> tuple[str, np.ndarray, float]:
        """Wait for every batch; return (model id, (N, d) vectors in submission order, seconds spent).

        Rows given with add_known() follow the queued ones (self.rows is extended with them).
        """
        self.flush()
        model_ids: set[str] = set(self._model_ids)
        parts: list[np.ndarray] = []
        spent = self.embed_now_s
        try:
            for future in self._futures:
                model_id, vectors, seconds = future.result()
                model_ids.add(model_id)
                parts.append(vectors)
                spent += seconds
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._known_rows:
            self.rows.extend(self._known_rows)
            parts.append(np.stack(self._known_vectors).astype(np.float32))
        if len(model_ids) > 1:
            # Vectors of different models must never be mixed: a rolling upgrade happened mid-run.
            raise FailedPrecondition(f"the embedder changed model during the run ({sorted(model_ids)}); rerun")
        if not parts:
            return "", np.zeros((0, 0), np.float32), spent
        return model_ids.pop(), np.concatenate(parts), spent

    def abandon(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
