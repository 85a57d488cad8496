"""The output contract of a run (other tools read it; keep it stable). See docs/output-contract.md."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from services.orchestrator.analysis.carry import carry_tracks
from services.orchestrator.analysis.face_table import FaceTable
from services.orchestrator.run.identity_stage import IdentityResult

MANIFEST = "manifest.json"


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode()


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """One JSON object per line; rows may be a generator, so a long episode's rows never all exist at once."""
    out = io.BytesIO()
    for row in rows:
        out.write(json.dumps(row, separators=(",", ":")).encode())
        out.write(b"\n")
    return out.getvalue()


def _box(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


def mot_rows(faces: FaceTable, carry_stride: int = 0, frame_count: int = 0) -> bytes:
    """MOTChallenge rows frame(1-based),id,x,y,w,h,conf,-1,-1,-1: one per tracked face, by frame then id.

    carry_stride > 0 (adaptive sampling): also the frames between sightings (analysis/carry.py), so
    the file covers every frame a track is on screen, up to `frame_count`; their conf is the lower
    of the sightings'.
    """
    rows: Iterable[tuple[int, int, Any, float]]
    if carry_stride > 0:
        boxes = carry_tracks(faces, carry_stride, frame_count)
        rows = zip(
            boxes.frame.tolist(), boxes.track_id.tolist(), boxes.xyxy.tolist(), boxes.score.tolist(), strict=True
        )
    else:
        tracked = np.flatnonzero(faces.track_id > 0)
        order = tracked[np.lexsort((faces.track_id[tracked], faces.frame[tracked]))]
        rows = ((int(faces.frame[r]), int(faces.track_id[r]), faces.xyxy[r], float(faces.score[r])) for r in order)
    lines = []
    for frame, track, box, score in rows:
        x1, y1, x2, y2 = (float(v) for v in box)
        lines.append(f"{frame + 1},{track},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n")
    return "".join(lines).encode()


def detections_jsonl(faces: FaceTable, fps: float) -> bytes:
    cuts = set(faces.cut_frames.tolist())
    by_frame: dict[int, list[int]] = {}
    for row in faces.faces().tolist():
        by_frame.setdefault(int(faces.frame[row]), []).append(row)

    def face(r: int) -> dict[str, Any]:
        return {
            "box": _box(faces.xyxy[r]),
            "score": round(float(faces.score[r]), 4),
            "quality": round(float(faces.quality[r]), 4),
            "landmarks": _box(faces.landmarks[r]),
            "track_id": int(faces.track_id[r]),
            "candidate": bool(faces.candidate[r]),
            "restored": bool(faces.restored[r]),
        }

    return _jsonl(
        {
            "frame": frame,
            "ts": round(frame / fps, 4),
            "shot_boundary": frame in cuts,
            "faces": [face(r) for r in by_frame.get(frame, [])],
        }
        for frame in faces.processed_frames.tolist()
    )


def faces_jsonl(faces: FaceTable, fps: float, model_id: str) -> bytes:
    """One line per row of faces.npy: the sampled (embedded) faces."""
    return _jsonl(
        (
            {
                "row": i,
                "frame": int(faces.frame[r]),
                "ts": round(float(faces.frame[r]) / fps, 4),
                "track_id": int(faces.track_id[r]),
                "box": _box(faces.xyxy[r]),
                "score": round(float(faces.score[r]), 4),
                "quality": round(float(faces.quality[r]), 4),
                "embedding_model": model_id,
            }
            for i, r in enumerate(faces.embedding_row.tolist())
        )
    )


def faces_npy(faces: FaceTable) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, faces.embedding.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def tracks_jsonl(faces: FaceTable, result: IdentityResult, fps: float) -> bytes:
    identity_of = {t: i.identity_id for i in result.identities for t in i.track_ids}

    def track(track_id: int) -> dict[str, Any]:
        r = faces.rows_of_track(track_id)
        frames = faces.frame[r]
        return {
            "track_id": track_id,
            "identity_id": identity_of.get(track_id),
            "start_frame": int(frames.min()),
            "end_frame": int(frames.max()),
            "start_s": round(float(frames.min()) / fps, 4),
            "end_s": round(float(frames.max()) / fps, 4),
            "num_faces": len(r),
            "mean_quality": round(float(faces.quality[r].mean()), 4),
            "frames": frames.tolist(),
            "boxes": [_box(b) for b in faces.xyxy[r]],
        }

    return _jsonl(track(t) for t in faces.track_ids().tolist())


def identities_json(result: IdentityResult, model_id: str) -> bytes:
    return _json(
        {
            "embedding_model": model_id,
            "identities": [
                {
                    "identity_id": i.identity_id,
                    "label": i.match.label,
                    "person_id": i.match.person_id,
                    "tier": i.match.tier,
                    "similarity": None if i.match.similarity is None else round(i.match.similarity, 4),
                    "suggestions": [
                        {"person_id": pid, "name": name, "similarity": round(sim, 4)}
                        for pid, name, sim in i.match.suggestions
                    ],
                    "track_ids": list(i.track_ids),
                }
                for i in result.identities
            ],
        }
    )


def _intervals(intervals: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(s, 4), round(e, 4)] for s, e in intervals]


def screentime_json(ep_id: str, fps: float, duration_s: float, gap_bridge_s: float, result: IdentityResult) -> bytes:
    return _json(
        {
            "ep_id": ep_id,
            "fps": fps,
            "duration_s": round(duration_s, 4),
            "semantics": "seconds = length of the union of on-screen intervals; gaps <= gap_bridge_s are "
            "bridged except across shot cuts; a processed frame covers stride frames",
            "gap_bridge_s": gap_bridge_s,
            "identities": [
                {
                    "identity_id": i.identity_id,
                    "label": i.match.label,
                    "seconds": round(i.seconds, 4),
                    "intervals": _intervals(i.intervals),
                }
                for i in sorted(result.identities, key=lambda i: -i.seconds)
            ],
            "people": [
                {
                    "label": label,
                    "seconds": round(sum(e - s for s, e in intervals), 4),
                    "intervals": _intervals(intervals),
                }
                for label, intervals in sorted(result.people.items())
            ],
        }
    )


def manifest_json(data: dict[str, Any]) -> bytes:
    return _json(data)
