"""The bench's inputs: the sample episode (with ground truth) and longer videos looped from it.

Longer episodes repeat the sample's frames (the loop point is one more hard cut), so the face
density and the per-frame cost stay those of the sample: any growth in seconds per minute or in
memory comes from the pipeline, not from different content.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def _is_current(out: Path, shots: list[tuple[str, int, list[str]]]) -> bool:
    """Whether `out` holds the episode a generator makes today (same shots), not an older one."""
    if not (out / "episode.mp4").is_file() or not (out / "ground_truth.json").is_file():
        return False
    built = json.loads((out / "ground_truth.json").read_text()).get("shots", [])
    return [(s["description"], s["end_frame"] - s["start_frame"], s.get("tags", [])) for s in built] == shots


def _ensure(module: str, shots: list[tuple[str, int, list[str]]], out: Path, media: Path, seed: int) -> Path:
    if not _is_current(out, shots):
        command = [sys.executable, "-m", module, "--media", str(media), "--out", str(out), "--seed", str(seed)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out


def ensure_sample(out: Path, media: Path, seed: int = 0) -> Path:
    """Build the sample episode into `out` once (episode.mp4 + ground_truth.json + enrol/); rebuild it
    when the generator's shots changed since."""
    from services.evaluation.shots import SHOTS

    shots = [(s.description, s.frames, list(s.tags)) for s in SHOTS]
    return _ensure("services.evaluation.sample_episode", shots, out, media, seed)


def ensure_hard(out: Path, media: Path, seed: int = 0) -> Path:
    """The hard episode (issue #19: small faces, hands, compression, blur, low light), built once."""
    from services.evaluation.hard_shots import HARD_SHOTS

    shots = [(h.shot.description, h.shot.frames, list(h.shot.tags)) for h in HARD_SHOTS]
    return _ensure("services.evaluation.hard_episode", shots, out, media, seed)


def frames_for(seconds: float, fps: float) -> int:
    """Frames a video of `seconds` has at `fps` (rounded, at least one)."""
    return max(1, round(seconds * fps))


def _write_mp4(capture: cv2.VideoCapture, target: Path, frames: Iterator[np.ndarray]) -> Path:
    """Write `frames` to `target` (OpenCV mp4v, the capture's size and fps) through a temporary
    file, so an interrupted bench never leaves a half-written cached video; releases the capture."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
        capture.release()
    tmp.replace(target)
    return target


def loop_video(source: Path, target: Path, seconds: float) -> Path:
    """Write `seconds` of `source`, looped, to `target` (OpenCV mp4v, same size and fps). Cached."""
    capture = cv2.VideoCapture(str(source))
    wanted = frames_for(seconds, capture.get(cv2.CAP_PROP_FPS))
    if target.is_file():
        existing = cv2.VideoCapture(str(target))
        count = int(existing.get(cv2.CAP_PROP_FRAME_COUNT))
        existing.release()
        if count == wanted:
            capture.release()
            return target

    def looped() -> Iterator[np.ndarray]:
        for _ in range(wanted):
            ok, frame = capture.read()
            if not ok:  # end of the sample: start again
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = capture.read()
                if not ok:
                    raise RuntimeError(f"{source} has no readable frames")
            yield frame

    return _write_mp4(capture, target, looped())


# A "talking-head" shot: no scene tag (no staged occlusion) and every face at least this tall (px at
# 720p): the close and medium shots most of TV is made of, where adaptive sampling stays sparse.
TALKING_HEAD_MIN_FACE_PX = 64.0


def talking_head_video(sample: Path, target: Path) -> Path:
    """The sample's talking-head shots, back to back, into `target` (cached): the projection for
    ordinary TV beside the one for the sample, half of which is staged occlusions and small faces."""
    if target.is_file():
        return target
    truth = json.loads((sample / "ground_truth.json").read_text())
    heights: dict[int, list[float]] = {}
    for face in truth["faces"]:
        heights.setdefault(int(face["frame"]), []).append(face["box"][3] - face["box"][1])
    keep: set[int] = set()
    for shot in truth["shots"]:
        frames = range(int(shot["start_frame"]), int(shot["end_frame"]))
        faces = [h for f in frames for h in heights.get(f, [])]
        if not shot.get("tags") and faces and min(faces) >= TALKING_HEAD_MIN_FACE_PX:
            keep.update(frames)
    capture = cv2.VideoCapture(str(sample / "episode.mp4"))

    def kept() -> Iterator[np.ndarray]:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index in keep:
                yield frame
            index += 1

    return _write_mp4(capture, target, kept())
