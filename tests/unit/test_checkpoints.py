"""Segment checkpoints come back exactly as they were written, and only for their own segment and settings."""

from __future__ import annotations

import numpy as np

from services.orchestrator.run.checkpoints import decode, encode, fingerprint
from services.orchestrator.run.detect_track import SegmentFace, SegmentResult
from services.orchestrator.run.segments import Segment


def _result(rng: np.random.Generator) -> SegmentResult:
    segment = Segment(2, 3000, 4500, 2995)
    result = SegmentResult(segment)
    result.frames = list(range(3000, 4500, 5))
    result.cuts = [3200, 4100]
    for i in range(40):
        box = [float(np.float32(v)) for v in rng.uniform(0, 1280, 4)]
        landmarks = [float(np.float32(v)) for v in rng.uniform(0, 720, 10)]
        result.faces.append(
            SegmentFace(
                2995 + 5 * i, box, float(np.float32(rng.uniform())), 0.1 * i, landmarks, i % 4, i % 7 == 0, i % 5 == 0
            )
        )
    result.samples = [(i, (rng.bytes(112 * 112 * 3), rng.bytes(900 + i), i % 3 == 0)) for i in range(0, 40, 3)]
    result.known = [(i, rng.standard_normal(512).astype(np.float32)) for i in range(0, 40, 9)]
    return result


def test_a_checkpoint_round_trips_bit_for_bit() -> None:
    original = _result(np.random.default_rng(7))
    key = fingerprint({"video": "abc", "stride": 5})
    back = decode(encode(original, key), original.segment, key, SegmentResult, SegmentFace)
    assert back is not None
    assert (back.frames, back.cuts, back.faces, back.samples) == (
        original.frames,
        original.cuts,
        original.faces,
        original.samples,
    )
    assert [p for p, _ in back.known] == [p for p, _ in original.known]
    for (_, a), (_, b) in zip(back.known, original.known, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_a_checkpoint_of_other_settings_or_bounds_is_ignored() -> None:
    original = _result(np.random.default_rng(1))
    key = fingerprint({"video": "abc", "stride": 5})
    data = encode(original, key)
    assert (
        decode(data, original.segment, fingerprint({"video": "abc", "stride": 6}), SegmentResult, SegmentFace) is None
    )
    other = Segment(2, 3000, 4400, 2995)
    assert decode(data, other, key, SegmentResult, SegmentFace) is None
    assert decode(b"not a checkpoint", original.segment, key, SegmentResult, SegmentFace) is None


def test_an_empty_segment_round_trips() -> None:
    segment = Segment(0, 0, 10, 0)
    empty = SegmentResult(segment)
    back = decode(encode(empty, "k"), segment, "k", SegmentResult, SegmentFace)
    assert back is not None and back.faces == [] and back.known == [] and back.samples == []


def test_a_checkpoint_written_before_faces_could_be_restored_still_loads() -> None:
    """Checkpoints of a run interrupted before the upgrade have 7 values per face: not restored."""
    import json
    import struct

    from services.orchestrator.run.checkpoints import MAGIC

    original = _result(np.random.default_rng(3))
    data = encode(original, "k")
    (size,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    header = json.loads(data[start : start + size])
    header["faces"] = [row[:7] for row in header["faces"]]
    head = json.dumps(header, separators=(",", ":")).encode()
    old = MAGIC + struct.pack("<Q", len(head)) + head + data[start + size :]
    back = decode(old, original.segment, "k", SegmentResult, SegmentFace)
    assert back is not None and len(back.faces) == len(original.faces)
    assert not any(f.restored for f in back.faces)
    assert [f.box for f in back.faces] == [f.box for f in original.faces]
