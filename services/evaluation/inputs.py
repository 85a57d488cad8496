"""What the metrics read: a run's output contract (tracks.mot.txt, identities.json, screentime.json,
optional manifest.json) and ground_truth.json from services.evaluation.sample_episode.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GtFace:
    person_id: str
    box: tuple[float, float, float, float]
    visible_fraction: float
    track: int  # numeric (person, shot) id for motmetrics


@dataclass(frozen=True)
class GroundTruth:
    fps: float
    frame_count: int
    names: dict[str, str]  # person_id -> name
    enrolled: frozenset[str]
    faces: dict[int, list[GtFace]]  # 0-based frame -> faces
    shot_starts: tuple[int, ...] = (0,)  # first frame of every shot, ascending
    tag_frames: dict[str, frozenset[int]] = field(default_factory=dict)  # scene tag -> frames of its shots


@dataclass(frozen=True)
class RunBox:
    track_id: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class RunOutput:
    stride: int
    boxes: dict[int, list[RunBox]]  # 0-based frame -> boxes
    identity_of_track: dict[int, str]
    labels: dict[str, str | None]  # identity_id -> label
    seconds: dict[str, float]  # identity_id -> predicted screen time


def load_ground_truth(path: Path) -> GroundTruth:
    data = json.loads(path.read_text())
    shot_starts = sorted(int(s["start_frame"]) for s in data.get("shots", [])) or [0]
    tag_frames: dict[str, set[int]] = defaultdict(set)
    for shot in data.get("shots", []):
        for tag in shot.get("tags", []):
            tag_frames[str(tag)].update(range(int(shot["start_frame"]), int(shot["end_frame"])))
    people = data["people"]
    person_index = {p["person_id"]: i for i, p in enumerate(people)}
    faces: dict[int, list[GtFace]] = defaultdict(list)
    for face in data["faces"]:
        frame = int(face["frame"])
        shot = int(np.searchsorted(shot_starts, frame, side="right")) - 1
        x1, y1, x2, y2 = (float(v) for v in face["box"])
        track = shot * (len(people) + 1) + person_index[face["person_id"]] + 1
        faces[frame].append(GtFace(face["person_id"], (x1, y1, x2, y2), float(face["visible_fraction"]), track))
    return GroundTruth(
        fps=float(data["fps"]),
        frame_count=int(data["frame_count"]),
        names={p["person_id"]: p.get("name", p["person_id"]) for p in people},
        enrolled=frozenset(p["person_id"] for p in people if p.get("enrol_images")),
        faces=dict(faces),
        shot_starts=tuple(shot_starts),
        tag_frames={tag: frozenset(frames) for tag, frames in tag_frames.items()},
    )


def _read_stride(run_dir: Path) -> int:
    """The frames a run's tracks.mot.txt covers: every stride-th, or every frame (adaptive sampling
    carries tracks through the frames it skipped)."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return 1
    settings = json.loads(manifest.read_text()).get("settings", {})
    stride = settings.get("stride", 1)
    if int(stride) < 1:
        raise ValueError(f"{manifest}: settings.stride must be >= 1, got {stride}")
    return 1 if settings.get("adaptive") else int(stride)


def load_run(run_dir: Path) -> RunOutput:
    for name in ("tracks.mot.txt", "identities.json", "screentime.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} has no {name}: is it a finished faceflow run folder?")
    boxes: dict[int, list[RunBox]] = defaultdict(list)
    for line_no, line in enumerate((run_dir / "tracks.mot.txt").read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) < 6:
            raise ValueError(f"tracks.mot.txt line {line_no}: expected frame,id,x,y,w,h,..., got {line!r}")
        frame, track = int(float(fields[0])), int(float(fields[1]))
        x, y, w, h = (float(v) for v in fields[2:6])
        boxes[frame - 1].append(RunBox(track, (x, y, x + w, y + h)))
    identities = json.loads((run_dir / "identities.json").read_text())["identities"]
    identity_of_track = {int(t): str(i["identity_id"]) for i in identities for t in i.get("track_ids", [])}
    labels = {str(i["identity_id"]): i.get("label") for i in identities}
    screentime = json.loads((run_dir / "screentime.json").read_text())
    seconds = {str(i["identity_id"]): float(i["seconds"]) for i in screentime.get("identities", [])}
    return RunOutput(_read_stride(run_dir), dict(boxes), identity_of_track, labels, seconds)
