"""Composite a ~46 s multi-person sample episode with exact ground truth, for end-to-end evaluation.

Why synthetic: no licensed TV episode with per-frame face boxes and identities exists in the
project's media, but real photos and real face clips do. Faces are annotated once on each clean
source (RetinaFace on the full-resolution photo, boxes checked by eye; per frame for the clips) and
carried through the known paste transform, so every box, identity and visibility value is exact.

What the episode shows (its format, the shot table, the people and their enrolment images) is in
services/evaluation/shots.py; this module renders it and writes the ground truth. build_episode renders
another script the same way (`script=`: the hard episode, services/evaluation/hard_shots.py), whose shots
may add a camera pan, group photos and a per-frame degradation (ShotEffects).

gt.mot.txt holds only faces with visible_fraction >= 0.5 (the ones a tracker is required to
find); ground_truth.json holds every face whose box is at least partly inside the frame.

Run: python -m services.evaluation.sample_episode --media DIR --out DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from services.evaluation.compositing import (
    Cutout,
    FaceAnnotation,
    LayerMask,
    SequentialVideo,
    Similarity,
    clip_box,
    cover_transform,
    make_cutout,
    make_photo_cutout,
    make_region_cutout,
    paste,
    place_face,
    render_full,
    visible_fraction,
)
from services.evaluation.shots import (
    ENROLMENTS,
    FPS,
    HEIGHT,
    PEOPLE,
    PHOTO_FACES,
    SHOTS,
    WIDTH,
    ClipShot,
    Enrolment,
    Person,
    PhotoShot,
    Shot,
    _keyframe_at,
)

SCREEN_VISIBLE_FRACTION = 0.5  # a face counts as "on screen" from this visibility on
DEFAULT_MODEL = Path(".cache/faceflow/models/retinaface_mnet025.onnx")
# Clip frames are annotated by RetinaFace: candidates above CANDIDATE_SCORE are all looked at, and
# the frame must hold exactly one, scoring at least ANNOTATION_MIN_SCORE (all used frames: >= 0.99).
CANDIDATE_SCORE = 0.5
ANNOTATION_MIN_SCORE = 0.9
SHOT_JITTER_PX = 20.0  # seeded offset of a whole photo shot's layout, per axis
GAIN_JITTER = 0.04  # seeded brightness jitter of a cutout
ZOOM_JITTER = 0.03  # seeded zoom jitter of a clip shot
CONTACT_TILE = (426, 240)  # px of one contact-sheet tile
ENROL_JPEG_QUALITY = 95
# A group photo's edge fades over this fraction of its shorter side (its faces lie further inside).
GROUP_FEATHER_FRACTION = 0.03

# A per-frame post-process (image, episode frame index) -> image: the hard episode's degradations.
Degradation = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class GroupFace:
    person_id: str
    face: FaceAnnotation  # on the group photo


@dataclass(frozen=True)
class Group:
    """A whole photo of several people pasted as one layer behind the actors (a crowd); keyframes as
    for an Actor, of its first face's centre and height; every face on it is annotated."""

    photo: str
    faces: tuple[GroupFace, ...]
    keys: tuple[tuple[float, float, float, float], ...]
    gain: float = 1.0

    def at(self, t: float) -> tuple[float, float, float]:
        return _keyframe_at(self.keys, t)


@dataclass(frozen=True)
class ShotEffects:
    """What a shot of another script (the hard episode) adds to a PhotoShot or ClipShot; the sample's
    shots have none."""

    pan_px_per_frame: float = 0.0  # camera pan: background and every layer move left by this per frame
    groups: tuple[Group, ...] = ()  # photo shots: drawn over the background, behind the actors
    degrade: Degradation | None = None  # applied to every rendered frame of the shot


NO_EFFECTS = ShotEffects()


@dataclass(frozen=True)
class EpisodeScript:
    """What build_episode renders: the shots (with their effects, if any), the people and enrolments."""

    shots: tuple[Shot, ...]
    people: tuple[Person, ...]
    photo_faces: Mapping[str, FaceAnnotation]
    enrolments: tuple[Enrolment, ...]
    effects: tuple[ShotEffects, ...] = ()  # one per shot, or empty: none
    # Cutout name (a photo_faces key, an Actor's photo) -> photo file, for a second face cut from one
    # photo (the season's crowd_5 from t1.jpg); a name not listed is the file name itself.
    photo_files: Mapping[str, str] = field(default_factory=dict)

    def photo_file(self, name: str) -> str:
        return self.photo_files.get(name, name)

    def shot_effects(self) -> tuple[ShotEffects, ...]:
        if not self.effects:
            return (NO_EFFECTS,) * len(self.shots)
        if len(self.effects) != len(self.shots):
            raise ValueError(f"{len(self.effects)} shot effects for {len(self.shots)} shots")
        return self.effects


SAMPLE_SCRIPT = EpisodeScript(SHOTS, PEOPLE, PHOTO_FACES, ENROLMENTS)


@dataclass
class GroundTruthFace:
    frame: int
    person_id: str
    box: tuple[float, ...]
    visible_fraction: float
    landmarks: tuple[tuple[float, float], ...]


@dataclass
class EpisodeBuild:
    """Everything learnt while rendering, written out at the end."""

    faces: list[GroundTruthFace] = field(default_factory=list)
    shots: list[dict[str, Any]] = field(default_factory=list)
    contact_frames: dict[int, np.ndarray] = field(default_factory=dict)
    used_clip_frames: dict[str, set[int]] = field(default_factory=dict)


def make_face_finder(model_path: Path) -> Callable[[np.ndarray], list[tuple[FaceAnnotation, float]]]:
    """RetinaFace at native resolution on a clean image: every candidate face with its score."""
    from services.common.backends import OnnxBackend
    from services.common.model_manifest import ModelManifest
    from services.detector.retinaface import MODEL_NAME, RetinaFaceDetector, RetinaFaceSettings

    detector = RetinaFaceDetector(
        OnnxBackend(model_path, name="retinaface-annotator", threads=1),
        RetinaFaceSettings(score_threshold=CANDIDATE_SCORE, max_side=0, min_face_px=0.0),
        ModelManifest.load(model_path.parent / "manifest.json").get(MODEL_NAME),
    )

    def find(image: np.ndarray) -> list[tuple[FaceAnnotation, float]]:
        dets = detector.detect(image)
        found = []
        for box, points, score in zip(dets.xyxy, dets.landmarks, dets.scores, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            landmarks = tuple((float(x), float(y)) for x, y in points)
            found.append((FaceAnnotation(box=(x1, y1, x2, y2), landmarks=landmarks), float(score)))
        return found

    return find


def make_clip_annotator(model_path: Path) -> Callable[[np.ndarray], FaceAnnotation]:
    """RetinaFace on a clean clip frame, insisting on exactly one confident face (else the GT is suspect)."""
    find = make_face_finder(model_path)

    def annotate(frame: np.ndarray) -> FaceAnnotation:
        found = find(frame)
        if len(found) != 1 or found[0][1] < ANNOTATION_MIN_SCORE:
            raise RuntimeError(
                f"clip frame annotation needs exactly one face scoring >= {ANNOTATION_MIN_SCORE}, "
                f"got scores {[score for _, score in found]}: pick another source range"
            )
        return found[0][0]

    return annotate


def _lerp(pair: tuple[float, float], t: float) -> float:
    return pair[0] + t * (pair[1] - pair[0])


def _record(build: EpisodeBuild, frame: int, person_id: str, face: FaceAnnotation, vis: float) -> None:
    box = clip_box(face.box, WIDTH, HEIGHT)
    if box is None:
        return  # left the frame
    build.faces.append(GroundTruthFace(frame, person_id, box, vis, face.landmarks))


def _group_cutout(photo: np.ndarray, group: Group) -> Cutout:
    return make_photo_cutout(photo, group.faces[0].face, GROUP_FEATHER_FRACTION * min(photo.shape[:2]))


def _camera_x(effects: ShotEffects, k: int, frames: int) -> float:
    """Horizontal camera offset at frame k of a panning shot, 0 at the shot's middle: keyframe
    positions are where things are on screen mid-shot."""
    return effects.pan_px_per_frame * (k - 0.5 * (frames - 1))


def _paste_groups(
    frame: np.ndarray,
    groups: tuple[Group, ...],
    group_cutouts: Mapping[str, Cutout],
    t: float,
    offset: tuple[float, float],
) -> list[tuple[str, FaceAnnotation]]:
    """Paste every group (behind the actors); the faces they put in the frame."""
    placed = []
    for group in groups:
        cutout = group_cutouts[group.photo]
        cx, cy, height = group.at(t)
        transform = place_face(cutout.face, (cx + offset[0], cy + offset[1]), height)
        paste(frame, cutout, transform, group.gain)
        placed += [(g.person_id, transform.apply_face(g.face)) for g in group.faces]
    return placed


def _render_photo_shot(
    shot: PhotoShot,
    first: int,
    media: Path,
    cutouts: dict[str, Cutout],
    prop_cutouts: dict[tuple[str, tuple[float, float, float, float]], Cutout],
    rng: np.random.Generator,
    build: EpisodeBuild,
    emit: Callable[[int, np.ndarray], None],
    effects: ShotEffects = NO_EFFECTS,
    group_cutouts: Mapping[str, Cutout] | None = None,
) -> None:
    dx, dy = rng.uniform(-SHOT_JITTER_PX, SHOT_JITTER_PX, size=2)
    gains = [(a.gain[0] + rng.uniform(-GAIN_JITTER, GAIN_JITTER), a.gain[1]) for a in shot.actors]
    with SequentialVideo(media / shot.background) as background:
        for k in range(shot.frames):
            t = k / max(1, shot.frames - 1)
            source = background.frame(shot.bg_start + math.floor(k * shot.bg_speed * background.fps / FPS + 1e-6))
            cover = cover_transform(source.shape[1], source.shape[0], WIDTH, HEIGHT, _lerp(shot.zoom, t))
            if effects.pan_px_per_frame:
                camera = _camera_x(effects, k, shot.frames)
                cover = Similarity(cover.scale, cover.tx - camera, cover.ty)
                dx_k = dx - camera
            else:
                dx_k = dx
            frame = render_full(source, cover, WIDTH, HEIGHT).astype(np.float32)
            behind = _paste_groups(frame, effects.groups, group_cutouts or {}, t, (dx_k, dy))
            placed: list[tuple[str, FaceAnnotation, LayerMask | None]] = []
            for actor, gain in zip(shot.actors, gains, strict=True):
                cutout = cutouts[actor.photo]
                cx, cy, height = actor.at(t)
                transform = place_face(cutout.face, (cx + dx_k, cy + dy), height)
                mask = paste(frame, cutout, transform, _lerp(gain, t))
                placed.append((actor.person_id, transform.apply_face(cutout.face), mask))
            in_front: list[LayerMask] = []
            for prop in shot.props:
                if not prop.keys[0][0] <= t <= prop.keys[-1][0]:
                    continue  # not in the shot yet, or gone
                cutout = prop_cutouts[(prop.photo, prop.region)]
                cx, cy, height = prop.at(t)
                mask = paste(frame, cutout, place_face(cutout.face, (cx + dx_k, cy + dy), height))
                if mask is not None:
                    in_front.append(mask)
            over_groups = [m for _, _, m in placed if m is not None] + in_front
            for person_id, face in behind:
                _record(build, first + k, person_id, face, visible_fraction(face.box, over_groups, WIDTH, HEIGHT))
            for i, (person_id, face, _) in enumerate(placed):
                above = [m for _, _, m in placed[i + 1 :] if m is not None] + in_front
                _record(build, first + k, person_id, face, visible_fraction(face.box, above, WIDTH, HEIGHT))
            emit(first + k, np.clip(frame, 0, 255).astype(np.uint8))


def _render_clip_shot(
    shot: ClipShot,
    first: int,
    media: Path,
    annotate: Callable[[np.ndarray], FaceAnnotation],
    rng: np.random.Generator,
    build: EpisodeBuild,
    emit: Callable[[int, np.ndarray], None],
) -> None:
    zoom = (shot.zoom[0] + rng.uniform(0, ZOOM_JITTER), shot.zoom[1] + rng.uniform(0, ZOOM_JITTER))
    used = build.used_clip_frames.setdefault(shot.clip, set())
    with SequentialVideo(media / shot.clip) as clip:
        for k in range(shot.frames):
            t = k / max(1, shot.frames - 1)
            index = math.floor((shot.start_s + k / FPS) * clip.fps + 1e-6)
            source = clip.frame(index)
            used.add(index)
            transform = cover_transform(source.shape[1], source.shape[0], WIDTH, HEIGHT, _lerp(zoom, t))
            face = transform.apply_face(annotate(source))
            _record(build, first + k, shot.person_id, face, visible_fraction(face.box, [], WIDTH, HEIGHT))
            emit(first + k, render_full(source, transform, WIDTH, HEIGHT))


def _write_enrolment(
    media: Path, out: Path, build: EpisodeBuild, enrolments: tuple[Enrolment, ...] = ENROLMENTS
) -> dict[str, list[str]]:
    images: dict[str, list[str]] = {}
    for enrol in enrolments:
        folder = out / "enrol" / enrol.person_id
        folder.mkdir(parents=True, exist_ok=True)
        if enrol.frame is None:
            target = folder / enrol.source
            shutil.copyfile(media / enrol.source, target)
        else:
            if enrol.frame in build.used_clip_frames.get(enrol.source, set()):
                raise RuntimeError(f"enrolment frame {enrol.frame} of {enrol.source} is used in the episode")
            with SequentialVideo(media / enrol.source) as clip:
                image = clip.frame(enrol.frame)
            target = folder / f"{Path(enrol.source).stem}_frame{enrol.frame:04d}.jpg"
            cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, ENROL_JPEG_QUALITY])
        images.setdefault(enrol.person_id, []).append(target.relative_to(out).as_posix())
    return images


def screentime(faces: list[GroundTruthFace], fps: float) -> dict[str, dict[str, Any]]:
    """Seconds and [start, end) intervals per person over frames where a face is at least half visible."""
    frames: dict[str, set[int]] = {}
    for face in faces:
        if face.visible_fraction >= SCREEN_VISIBLE_FRACTION:
            frames.setdefault(face.person_id, set()).add(face.frame)
    result: dict[str, dict[str, Any]] = {}
    for person_id, fset in sorted(frames.items()):
        ordered = sorted(fset)
        intervals: list[list[float]] = []
        start = prev = ordered[0]
        for f in [*ordered[1:], None]:
            if f is not None and f == prev + 1:
                prev = f
                continue
            intervals.append([round(start / fps, 6), round((prev + 1) / fps, 6)])
            if f is not None:
                start = prev = f
        result[person_id] = {"seconds": round(len(ordered) / fps, 6), "intervals": intervals}
    return result


def _contact_sheet(build: EpisodeBuild) -> np.ndarray:
    tiles = []
    scale = CONTACT_TILE[0] / WIDTH
    for index, image in sorted(build.contact_frames.items()):
        tile = cv2.resize(image, CONTACT_TILE, interpolation=cv2.INTER_AREA)
        for face in (f for f in build.faces if f.frame == index):
            color = (0, 220, 0) if face.visible_fraction >= SCREEN_VISIBLE_FRACTION else (0, 0, 255)
            x1, y1, x2, y2 = (round(v * scale) for v in face.box)
            cv2.rectangle(tile, (x1, y1), (x2, y2), color, 1)
            label = f"{face.person_id} {face.visible_fraction:.2f}"
            cv2.putText(tile, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1)
        cv2.putText(tile, f"frame {index}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles.append(tile)
    columns = 3
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])


def _read_photo(path: Path) -> np.ndarray:
    photo = cv2.imread(str(path))
    if photo is None:
        raise FileNotFoundError(f"cannot read photo {path}")
    return photo


def _degraded(emit: Callable[[int, np.ndarray], None], degrade: Degradation) -> Callable[[int, np.ndarray], None]:
    return lambda index, image: emit(index, degrade(image, index))


def build_episode(
    media: Path,
    out: Path,
    seed: int = 0,
    model_path: Path = DEFAULT_MODEL,
    script: EpisodeScript = SAMPLE_SCRIPT,
) -> dict[str, Any]:
    """Render the episode and write every output file into `out`; returns the ground-truth dict."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shots, all_effects = script.shots, script.shot_effects()
    cutouts = {
        name: make_cutout(_read_photo(media / script.photo_file(name)), face)
        for name, face in script.photo_faces.items()
    }
    prop_cutouts = {}
    for prop in (p for shot in shots if isinstance(shot, PhotoShot) for p in shot.props):
        prop_cutouts[(prop.photo, prop.region)] = make_region_cutout(_read_photo(media / prop.photo), prop.region)
    group_cutouts = {
        g.photo: _group_cutout(_read_photo(media / g.photo), g) for effects in all_effects for g in effects.groups
    }
    annotate = make_clip_annotator(model_path)
    build = EpisodeBuild()
    starts = np.cumsum([0] + [s.frames for s in shots]).tolist()
    # Contact sheet: the middle of every shot (the crossing shot's middle is the full occlusion).
    wanted = {start + shot.frames // 2 for start, shot in zip(starts, shots, strict=False)}
    writer = cv2.VideoWriter(str(out / "episode.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video here")

    def emit(index: int, image: np.ndarray) -> None:
        writer.write(image)
        if index in wanted:
            build.contact_frames[index] = image.copy()

    try:
        for start, shot, effects in zip(starts, shots, all_effects, strict=False):
            shot_emit = emit if effects.degrade is None else _degraded(emit, effects.degrade)
            if isinstance(shot, PhotoShot):
                _render_photo_shot(
                    shot, start, media, cutouts, prop_cutouts, rng, build, shot_emit, effects, group_cutouts
                )
            else:
                _render_clip_shot(shot, start, media, annotate, rng, build, shot_emit)
            build.shots.append(
                {
                    "start_frame": start,
                    "end_frame": start + shot.frames,
                    "description": shot.description,
                    "tags": list(shot.tags),
                }
            )
    finally:
        writer.release()
    enrol_images = _write_enrolment(media, out, build, script.enrolments)
    frame_count = starts[-1]
    truth = {
        "version": 1,
        "fps": FPS,
        "frame_count": frame_count,
        "width": WIDTH,
        "height": HEIGHT,
        "seed": seed,
        "people": [
            {
                "person_id": p.person_id,
                "name": p.name,
                "mot_id": p.numeric_id,
                "enrol_images": enrol_images.get(p.person_id, []),
            }
            for p in script.people
        ],
        "shots": build.shots,
        "faces": [
            {
                "frame": f.frame,
                "person_id": f.person_id,
                "box": [round(v, 2) for v in f.box],
                "visible_fraction": round(f.visible_fraction, 4),
                "landmarks": [[round(x, 2), round(y, 2)] for x, y in f.landmarks],
            }
            for f in build.faces
        ],
        "screentime": screentime(build.faces, FPS),
    }
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    numeric = {p.person_id: p.numeric_id for p in script.people}
    rows = [
        f"{f.frame + 1},{numeric[f.person_id]},{f.box[0]:.2f},{f.box[1]:.2f},"
        f"{f.box[2] - f.box[0]:.2f},{f.box[3] - f.box[1]:.2f},1,-1,-1,-1"
        for f in sorted(build.faces, key=lambda f: (f.frame, numeric[f.person_id]))
        if f.visible_fraction >= SCREEN_VISIBLE_FRACTION
    ]
    (out / "gt.mot.txt").write_text("\n".join(rows) + "\n")
    cv2.imwrite(str(out / "contact.png"), _contact_sheet(build))
    return truth


def main(argv: list[str] | None = None, script: EpisodeScript = SAMPLE_SCRIPT, description: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, required=True, help="folder with the source photos and clips")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the layout and brightness jitter")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="RetinaFace ONNX used to annotate clips")
    args = parser.parse_args(argv)
    began = time.monotonic()
    truth = build_episode(args.media, args.out, args.seed, args.model, script)
    enrollable = sum(1 for p in truth["people"] if p["enrol_images"])
    print(
        f"wrote {args.out}/episode.mp4: {truth['frame_count']} frames, {len(truth['shots'])} shots, "
        f"{len(truth['faces'])} GT faces, {len(truth['people'])} people ({enrollable} enrollable) "
        f"in {time.monotonic() - began:.1f} s"
    )
    for person_id, entry in truth["screentime"].items():
        print(f"  {person_id:18s} {entry['seconds']:6.2f} s in {len(entry['intervals'])} intervals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
