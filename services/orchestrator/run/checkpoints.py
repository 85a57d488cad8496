"""Per-segment checkpoints: a run that dies (orchestrator killed, lease lost) resumes where it was.

When a segment (~60 s of video, services/orchestrator/run/segments.py) has been detected and tracked, its
result is written to the run's folder as `checkpoints/segment-NNNN.ckpt` before it is merged. A
resumed job (same run id) loads the segments it finds and redoes only the others; merging, embedding
and everything after it run as in an uninterrupted run, on the same inputs in the same order, so the
outputs are the same. The checkpoints are deleted before the run is published (they are not outputs).

A checkpoint is used only when its fingerprint (video, models, every setting that shapes a segment)
and its segment bounds match: after a model change or a different segment plan it is ignored.

Format: MAGIC, an 8-byte little-endian header length, a JSON header (frames, cuts, faces, which
samples and vectors follow), then the sampled crops' bytes and the tracking vectors as float32.
JSON keeps Python floats exactly (repr round-trips), so the boxes come back bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from typing import Any

import numpy as np

from services.common.errors import NotFound
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.run.artifacts import read_artifact, upload_artifact
from services.orchestrator.run.segments import Segment

log = logging.getLogger(__name__)

MAGIC = b"FFCKPT1\n"
FOLDER = "checkpoints"


def fingerprint(record: dict[str, Any]) -> str:
    """A short digest of everything a segment's result depends on."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encode(result: Any, key: str) -> bytes:
    """A SegmentResult (services/orchestrator/run/detect_track.py) as bytes."""
    segment: Segment = result.segment
    blobs: list[bytes] = []
    samples = []
    for position, (aligned, display, known) in result.samples:
        samples.append([position, len(aligned), len(display), bool(known)])
        blobs += [aligned, display]
    vectors = np.asarray([v for _, v in result.known], np.float32)
    header = {
        "fingerprint": key,
        "segment": [segment.index, segment.start, segment.end, segment.overlap_start],
        "frames": result.frames,
        "cuts": result.cuts,
        "faces": [
            [f.frame, f.box, f.score, f.quality, f.landmarks, f.track, f.candidate, f.restored] for f in result.faces
        ],
        "samples": samples,
        "known": [position for position, _ in result.known],
        "vector_shape": list(vectors.shape) if len(result.known) else [0, 0],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(head)), head, *blobs, vectors.tobytes()])


def decode(data: bytes, segment: Segment, key: str, result_type: Any, face_type: Any) -> Any | None:
    """The SegmentResult stored in `data`, or None when it is not this segment's under this fingerprint."""
    if not data.startswith(MAGIC):
        return None
    (size,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    header = json.loads(data[start : start + size])
    bounds = [segment.index, segment.start, segment.end, segment.overlap_start]
    if header["fingerprint"] != key or header["segment"] != bounds:
        return None
    result = result_type(segment)
    result.frames = header["frames"]
    result.cuts = header["cuts"]
    result.faces = [face_type(*row) for row in header["faces"]]  # 7 values before Face.restored existed
    offset = start + size
    for position, aligned_len, display_len, known in header["samples"]:
        aligned = data[offset : offset + aligned_len]
        display = data[offset + aligned_len : offset + aligned_len + display_len]
        offset += aligned_len + display_len
        result.samples.append((position, (aligned, display, known)))
    rows, dim = header["vector_shape"]
    vectors = np.frombuffer(data, np.float32, rows * dim, offset).reshape(rows, dim) if rows else np.zeros((0, 0))
    result.known = [(position, vectors[i].copy()) for i, position in enumerate(header["known"])]
    return result


class SegmentCheckpoints:
    """Checkpoints of one run, read and written through the storage service."""

    def __init__(self, clients: ServiceClients, ep_id: str, run_id: str, key: str) -> None:
        self._clients = clients
        self._ep_id = ep_id
        self._run_id = run_id
        self._key = key
        self.loaded = 0  # segments taken from checkpoints in this attempt

    @staticmethod
    def name(segment: Segment) -> str:
        return f"{FOLDER}/segment-{segment.index:04d}.ckpt"

    def load(self, segment: Segment, result_type: Any, face_type: Any) -> Any | None:
        try:
            data = read_artifact(self._clients, self._ep_id, self._run_id, self.name(segment))
        except NotFound:
            return None
        result = decode(data, segment, self._key, result_type, face_type)
        if result is None:
            log.info("checkpoint ignored (other settings or plan)", extra={"segment": segment.index})
        else:
            self.loaded += 1
        return result

    def save(self, result: Any) -> None:
        upload_artifact(self._clients, self._ep_id, self._run_id, self.name(result.segment), encode(result, self._key))
