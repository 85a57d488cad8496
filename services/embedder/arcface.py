"""ArcFace-family embeddings of aligned 112x112 crops, batched and L2-normalised."""

from __future__ import annotations

import numpy as np

from services.common.backends import InferenceBackend
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.model_manifest import ModelSpec

CROP_SIZE = 112
CROP_BYTES = CROP_SIZE * CROP_SIZE * 3
# Crops per model call: large enough to amortise the call, small enough to keep latency and memory
# flat (64 x 3 x 112 x 112 float32 = 9.6 MB) on CPU; a GPU backend batches further on its side.
MAX_BATCH = 64


class ArcFaceEmbedder:
    def __init__(self, backend: InferenceBackend, spec: ModelSpec) -> None:
        pre = spec.preprocessing
        self._backend = backend
        self._spec = spec
        self._mean = np.asarray(pre.get("mean", [127.5] * 3), dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(pre.get("std", [128.0] * 3), dtype=np.float32).reshape(1, 3, 1, 1)
        self._rgb = pre.get("color_order", "BGR").upper() == "RGB"
        if spec.output_dim is None:
            raise FailedPrecondition(f"model manifest entry {spec.name} has no output_dim")
        self.dim = int(spec.output_dim)
        self.model_id = spec.model_id

    def embed(self, crops_bgr: np.ndarray) -> np.ndarray:
        """(N,112,112,3) uint8 BGR crops -> (N, dim) float32 unit vectors."""
        if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise InvalidArgument(
                f"crops must have shape (N, {CROP_SIZE}, {CROP_SIZE}, 3), got {tuple(crops_bgr.shape)}"
            )
        if len(crops_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [self._embed_batch(crops_bgr[i : i + MAX_BATCH]) for i in range(0, len(crops_bgr), MAX_BATCH)]
        return np.concatenate(out)

    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        pixels = crops[..., ::-1] if self._rgb else crops
        batch = (pixels.transpose(0, 3, 1, 2).astype(np.float32) - self._mean) / self._std
        vectors = self._backend.infer(np.ascontiguousarray(batch))[0].astype(np.float32)
        if vectors.shape != (len(crops), self.dim):
            raise FailedPrecondition(
                f"{self._spec.name} returned shape {vectors.shape}, expected ({len(crops)}, {self.dim})"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def warm_up(self) -> None:
        """One inference on a grey crop: loads kernels and proves the output dimension."""
        self.embed(np.full((2, CROP_SIZE, CROP_SIZE, 3), 128, np.uint8))


def crops_from_bytes(blobs: list[bytes]) -> np.ndarray:
    """Raw BGR crop bytes (wire format) -> (N,112,112,3) uint8, naming the first bad crop."""
    for i, blob in enumerate(blobs):
        if len(blob) != CROP_BYTES:
            raise InvalidArgument(f"crop {i} has {len(blob)} bytes; expected {CROP_BYTES} (112x112x3 raw BGR uint8)")
    if not blobs:
        return np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, CROP_SIZE, CROP_SIZE, 3)
