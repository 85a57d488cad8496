"""Composite a ~42 s multi-person sample episode with exact ground truth, for end-to-end evaluation.

Why synthetic: no licensed TV episode with per-frame face boxes and identities exists in the
project's media, but real photos and real face clips do. Faces are annotated once on each clean
source (RetinaFace on the full-resolution photo, boxes checked by eye; per frame for the clips) and
carried through the known paste transform, so every box, identity and visibility value is exact.

Episode: 1280x720, 25 fps, 1050 frames (42 s), mp4v. Shots, separated by hard cuts (frames are
0-based, end exclusive); shots tagged "occlusion" form the occlusion subset the metrics report on:

====  ===========  ==========================================================================
shot  frames       content
====  ===========  ==========================================================================
0     0-100        Obama (obama.jpg) and Biden, head-and-shoulders cutouts drifting over the
                   moving Caminandes sky (no_face.mp4), slow push-in, brightness ramp.
1     100-225      Real clip: Pexels woman (WolfgangLanger_Pexels.mp4, source 6.4-11.4 s
                   resampled to 25 fps), 2x upscale with a slow zoom.
2     225-325      [occlusion, crossing] Crossing over the no-face part of face_noface.mov: Biden
                   walks left to right behind, the standing man of t1.jpg walks right to left in
                   front and fully hides Biden's face for several frames (visible_fraction 0).
3     325-400      No faces: Big Buck Bunny cartoon (a false-positive trap for the detector).
4     400-475      Small face: Biden at ~30 px face height drifting over the cartoon.
5     475-525      Real clip: the man of single_face.mp4 (source frames 0-59, 30 -> 25 fps).
6     525-650      Obama re-appears from a different photo (obama2.jpg); the t1.jpg man walks
                   out through the right frame border (his box is clipped, visibility falls).
7     650-700      Real clip: Pexels woman again (source 11.6-13.6 s), slow zoom out.
8     700-750      Three-shot: Obama (obama.jpg), t1.jpg man, Biden over the sky, push-in.
9     750-850      [occlusion, crossing] Same-scale crossing over a street (bikes.mp4 187-236):
                   Biden and Obama, both 130 px faces at the same height, walk towards each other,
                   Obama stops in front of Biden (Biden hidden ~1.3 s), then both walk on. Both
                   tracks are near-identical boxes when they part: an IoU-only tracker may swap.
10    850-950      [occlusion, object] A hand holding playing cards (cut from t1.jpg) comes in
                   from the right and stays over Obama's face (obama2.jpg, hidden ~1.2 s), then a
                   smaller one covers the lower ~40% of the t1 man's face for ~0.8 s (visible ~0.6,
                   still required). Over Big Buck Bunny.
11    950-1050     [occlusion, reentry] Biden stays; the t1 man walks out through the right border,
                   is gone ~2.2 s (longer than ByteTrack's 1 s lost buffer), and walks back in
                   (same person id). Over the sky of noface_face.mov.
====  ===========  ==========================================================================

Enrolment images (never used in the episode): obama3.jpg for Obama, frame 400 of
WolfgangLanger_Pexels.mp4 for the Pexels woman, frame 71 of single_face.mp4 for its man.
Biden and the t1.jpg man are not enrollable (no unused image of them).

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
from collections.abc import Callable
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
    clip_box,
    cover_transform,
    make_cutout,
    make_region_cutout,
    paste,
    place_face,
    render_full,
    visible_fraction,
)

WIDTH, HEIGHT = 1280, 720  # px
FPS = 25  # frames per second of the episode
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


def _face(box: tuple[float, float, float, float], *points: tuple[float, float]) -> FaceAnnotation:
    return FaceAnnotation(box=box, landmarks=tuple(points))


# RetinaFace mnet0.25 (native resolution, scores >= 0.998) on the clean photos, checked by eye.
PHOTO_FACES: dict[str, FaceAnnotation] = {
    "obama.jpg": _face(
        (372.5, 79.5, 613.8, 422.3), (436.7, 210.2), (549.7, 209.1), (493.5, 278.8), (437.2, 320.3), (549.6, 318.7)
    ),
    "obama2.jpg": _face(
        (200.5, 225.7, 481.0, 628.5), (253.0, 373.6), (372.7, 386.7), (280.6, 447.7), (245.8, 512.7), (351.7, 523.8)
    ),
    "biden.jpg": _face(
        (421.9, 177.9, 713.1, 566.2), (533.8, 324.7), (655.6, 349.5), (597.9, 408.9), (512.8, 453.0), (623.4, 473.9)
    ),
    # The man standing at the top right of the t1.jpg group photo; his neighbours' faces lie outside
    # his head-and-shoulders cutout.
    "t1.jpg": _face(
        (903.9, 61.2, 1009.4, 205.0), (916.4, 117.1), (946.3, 114.9), (920.2, 146.1), (938.4, 169.4), (961.4, 166.8)
    ),
}


# The left woman's hand holding playing cards in t1.jpg (below her chin; no face inside the ellipse).
HAND_WITH_CARDS = ("t1.jpg", (122.0, 380.0, 268.0, 515.0))


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    numeric_id: int  # the id used in gt.mot.txt


PEOPLE: tuple[Person, ...] = (
    Person("obama", "Barack Obama", 1),
    Person("biden", "Joe Biden", 2),
    Person("pexels_woman", "Pexels woman", 3),
    Person("single_face_man", "Single-face clip man", 4),
    Person("t1_standing_man", "t1 standing man", 5),
)


@dataclass(frozen=True)
class Enrolment:
    """An image of a person the episode never shows: a photo file, or one frame of a clip."""

    person_id: str
    source: str
    frame: int | None = None  # None: copy the photo file as it is


ENROLMENTS: tuple[Enrolment, ...] = (
    Enrolment("obama", "obama3.jpg"),
    Enrolment("pexels_woman", "WolfgangLanger_Pexels.mp4", frame=400),
    Enrolment("single_face_man", "single_face.mp4", frame=71),
)


@dataclass(frozen=True)
class Actor:
    """A photo cutout moving along keyframes (t in [0, 1], face centre x, y, face height in px)."""

    person_id: str
    photo: str
    keys: tuple[tuple[float, float, float, float], ...]
    gain: tuple[float, float] = (1.0, 1.0)  # brightness at the start and end of the shot

    def at(self, t: float) -> tuple[float, float, float]:
        """Face centre and height at time t, smoothstep-eased between keyframes (no jerks)."""
        return _keyframe_at(self.keys, t)


@dataclass(frozen=True)
class Prop:
    """An object cut from a photo region (the ellipse inscribed in `region`), drawn in front of every
    actor; keyframes as for an Actor, of the region's centre and height."""

    name: str
    photo: str
    region: tuple[float, float, float, float]
    keys: tuple[tuple[float, float, float, float], ...]

    def at(self, t: float) -> tuple[float, float, float]:
        return _keyframe_at(self.keys, t)


def _keyframe_at(keys: tuple[tuple[float, float, float, float], ...], t: float) -> tuple[float, float, float]:
    """Centre and height at time t, smoothstep-eased between keyframes (speed 0 at every keyframe)."""
    if t <= keys[0][0]:
        return keys[0][1:]
    for k0, k1 in zip(keys, keys[1:], strict=False):
        if t <= k1[0]:
            u = (t - k0[0]) / (k1[0] - k0[0])
            u = u * u * (3 - 2 * u)
            return (
                k0[1] + u * (k1[1] - k0[1]),
                k0[2] + u * (k1[2] - k0[2]),
                k0[3] + u * (k1[3] - k0[3]),
            )
    return keys[-1][1:]


@dataclass(frozen=True)
class PhotoShot:
    """Cutouts (drawn back to front) over a moving background video."""

    frames: int
    description: str
    background: str
    bg_start: int  # first background frame
    bg_speed: float  # background seconds per episode second
    zoom: tuple[float, float]  # background zoom at start and end (>= 1)
    actors: tuple[Actor, ...] = ()
    props: tuple[Prop, ...] = ()  # drawn in front of the actors, in this order
    tags: tuple[str, ...] = ()  # scene tags written to ground_truth.json (metrics subsets)


@dataclass(frozen=True)
class ClipShot:
    """A real face clip, resampled to the episode rate, scaled to cover the frame."""

    frames: int
    description: str
    clip: str
    person_id: str
    start_s: float
    zoom: tuple[float, float]
    tags: tuple[str, ...] = ()


Shot = PhotoShot | ClipShot

SHOTS: tuple[Shot, ...] = (
    PhotoShot(
        100,
        "Obama (obama.jpg) and Biden two-shot over moving sky, push-in",
        "no_face.mp4",
        0,
        0.95,
        (1.0, 1.08),
        (
            Actor("obama", "obama.jpg", ((0, 420, 250, 150), (1, 455, 240, 175)), (0.92, 1.05)),
            Actor("biden", "biden.jpg", ((0, 870, 245, 148), (1, 840, 235, 170)), (1.04, 0.95)),
        ),
    ),
    ClipShot(
        125,
        "Real clip: Pexels woman (source 6.4-11.4 s)",
        "WolfgangLanger_Pexels.mp4",
        "pexels_woman",
        6.4,
        (1.0, 1.08),
    ),
    PhotoShot(
        100,
        "Crossing: t1 man passes in front of Biden and hides his face",
        "face_noface.mov",
        73,  # frame 72 is a black transition frame: starting on it made an unannotated cut
        0.9,
        (1.02, 1.02),
        (
            Actor("biden", "biden.jpg", ((0, 170, 330, 120), (1, 1110, 310, 120)), (0.97, 1.03)),
            Actor("t1_standing_man", "t1.jpg", ((0, 1110, 300, 140), (1, 170, 320, 140)), (1.03, 0.97)),
        ),
        tags=("occlusion", "crossing"),
    ),
    PhotoShot(75, "No faces: Big Buck Bunny cartoon", "bigbuckbunny.mp4", 0, 1.0, (1.0, 1.05)),
    PhotoShot(
        75,
        "Small face: Biden at ~30 px over the cartoon",
        "bigbuckbunny.mp4",
        75,
        0.75,
        (1.05, 1.0),
        (Actor("biden", "biden.jpg", ((0, 300, 420, 29), (1, 880, 390, 31)), (0.95, 1.05)),),
    ),
    ClipShot(
        50,
        "Real clip: single_face.mp4 man (source frames 0-59)",
        "single_face.mp4",
        "single_face_man",
        0.0,
        (1.0, 1.06),
    ),
    PhotoShot(
        125,
        "Obama re-appears (obama2.jpg); t1 man walks out through the right border",
        "noface_face.mov",
        0,
        0.6,
        (1.0, 1.04),
        (
            Actor("obama", "obama2.jpg", ((0, 470, 300, 190), (1, 500, 290, 200)), (1.0, 0.94)),
            Actor("t1_standing_man", "t1.jpg", ((0, 980, 320, 150), (0.3, 985, 320, 150), (0.9, 1420, 330, 150))),
        ),
    ),
    ClipShot(
        50,
        "Real clip: Pexels woman again (source 11.6-13.6 s)",
        "WolfgangLanger_Pexels.mp4",
        "pexels_woman",
        11.6,
        (1.08, 1.0),
    ),
    PhotoShot(
        50,
        "Three-shot: Obama (obama.jpg), t1 man, Biden over the sky",
        "no_face.mp4",
        40,
        0.8,
        (1.0, 1.05),
        (
            Actor("obama", "obama.jpg", ((0, 300, 280, 140), (1, 310, 275, 146))),
            Actor("t1_standing_man", "t1.jpg", ((0, 640, 260, 130), (1, 640, 255, 136)), (1.02, 1.0)),
            Actor("biden", "biden.jpg", ((0, 980, 280, 140), (1, 970, 275, 146)), (0.98, 1.02)),
        ),
    ),
    # ---- occlusion scenes (tag "occlusion"): what breaks a tracker that only looks at boxes ----
    PhotoShot(
        100,
        "Same-scale crossing: Obama stops in front of Biden, then both walk on",
        "bikes.mp4",
        187,
        0.5,
        (1.0, 1.03),
        (
            Actor(
                "biden",
                "biden.jpg",
                ((0, 250, 330, 130), (0.42, 615, 334, 130), (0.62, 655, 334, 130), (1, 1030, 326, 130)),
            ),
            Actor(
                "obama",
                "obama.jpg",
                ((0, 1030, 336, 130), (0.42, 665, 332, 130), (0.62, 625, 332, 130), (1, 250, 338, 130)),
            ),
        ),
        tags=("occlusion", "crossing"),
    ),
    PhotoShot(
        100,
        "Hand over faces: a hand with cards covers Obama's face, then the lower half of the t1 man's",
        "bigbuckbunny.mp4",
        0,
        1.0,
        (1.0, 1.05),
        (
            Actor("t1_standing_man", "t1.jpg", ((0, 380, 330, 150), (1, 395, 326, 152))),
            Actor("obama", "obama2.jpg", ((0, 880, 320, 170), (1, 870, 324, 172)), (1.0, 0.96)),
        ),
        (
            Prop(
                "hand",
                *HAND_WITH_CARDS,
                ((0, 1500, 420, 330), (0.2, 890, 330, 330), (0.42, 870, 335, 330), (0.58, 880, 950, 330)),
            ),
            Prop(
                "hand",
                *HAND_WITH_CARDS,
                ((0.5, 380, 940, 200), (0.68, 388, 415, 200), (0.86, 392, 415, 200), (1, 385, 950, 200)),
            ),
        ),
        tags=("occlusion", "object"),
    ),
    PhotoShot(
        100,
        "Leave and re-enter: the t1 man walks out to the right, is gone ~2 s, walks back in; Biden stays",
        "noface_face.mov",
        0,
        0.7,
        (1.03, 1.0),
        (
            Actor("biden", "biden.jpg", ((0, 380, 320, 140), (1, 400, 316, 144))),
            Actor(
                "t1_standing_man",
                "t1.jpg",
                (
                    (0, 880, 320, 140),
                    (0.08, 895, 320, 140),
                    (0.32, 1470, 330, 140),
                    (0.7, 1470, 330, 140),
                    (0.95, 925, 322, 140),
                    (1, 920, 322, 140),
                ),
            ),
        ),
        tags=("occlusion", "reentry"),
    ),
)


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


def make_clip_annotator(model_path: Path) -> Callable[[np.ndarray], FaceAnnotation]:
    """RetinaFace on a clean clip frame, insisting on exactly one confident face (else the GT is suspect)."""
    from services.common.backends import OnnxBackend
    from services.detector.retinaface import RetinaFaceDetector, RetinaFaceSettings

    detector = RetinaFaceDetector(
        OnnxBackend(model_path, name="retinaface-annotator", threads=1),
        RetinaFaceSettings(score_threshold=CANDIDATE_SCORE, max_side=0, min_face_px=0.0),
    )

    def annotate(frame: np.ndarray) -> FaceAnnotation:
        dets = detector.detect(frame)
        if len(dets) != 1 or float(dets.scores[0]) < ANNOTATION_MIN_SCORE:
            raise RuntimeError(
                f"clip frame annotation needs exactly one face scoring >= {ANNOTATION_MIN_SCORE}, "
                f"got scores {dets.scores.tolist()}: pick another source range"
            )
        box = tuple(float(v) for v in dets.xyxy[0])
        points = tuple((float(x), float(y)) for x, y in dets.landmarks[0])
        return FaceAnnotation(box=(box[0], box[1], box[2], box[3]), landmarks=points)

    return annotate


def _lerp(pair: tuple[float, float], t: float) -> float:
    return pair[0] + t * (pair[1] - pair[0])


def _record(build: EpisodeBuild, frame: int, person_id: str, face: FaceAnnotation, vis: float) -> None:
    box = clip_box(face.box, WIDTH, HEIGHT)
    if box is None:
        return  # left the frame
    build.faces.append(GroundTruthFace(frame, person_id, box, vis, face.landmarks))


def _render_photo_shot(
    shot: PhotoShot,
    first: int,
    media: Path,
    cutouts: dict[str, Cutout],
    prop_cutouts: dict[tuple[str, tuple[float, float, float, float]], Cutout],
    rng: np.random.Generator,
    build: EpisodeBuild,
    emit: Callable[[int, np.ndarray], None],
) -> None:
    dx, dy = rng.uniform(-SHOT_JITTER_PX, SHOT_JITTER_PX, size=2)
    gains = [(a.gain[0] + rng.uniform(-GAIN_JITTER, GAIN_JITTER), a.gain[1]) for a in shot.actors]
    with SequentialVideo(media / shot.background) as background:
        for k in range(shot.frames):
            t = k / max(1, shot.frames - 1)
            source = background.frame(shot.bg_start + math.floor(k * shot.bg_speed * background.fps / FPS + 1e-6))
            cover = cover_transform(source.shape[1], source.shape[0], WIDTH, HEIGHT, _lerp(shot.zoom, t))
            frame = render_full(source, cover, WIDTH, HEIGHT).astype(np.float32)
            placed: list[tuple[str, FaceAnnotation, LayerMask | None]] = []
            for actor, gain in zip(shot.actors, gains, strict=True):
                cutout = cutouts[actor.photo]
                cx, cy, height = actor.at(t)
                transform = place_face(cutout.face, (cx + dx, cy + dy), height)
                mask = paste(frame, cutout, transform, _lerp(gain, t))
                placed.append((actor.person_id, transform.apply_face(cutout.face), mask))
            in_front: list[LayerMask] = []
            for prop in shot.props:
                if not prop.keys[0][0] <= t <= prop.keys[-1][0]:
                    continue  # not in the shot yet, or gone
                cutout = prop_cutouts[(prop.photo, prop.region)]
                cx, cy, height = prop.at(t)
                mask = paste(frame, cutout, place_face(cutout.face, (cx + dx, cy + dy), height))
                if mask is not None:
                    in_front.append(mask)
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


def _write_enrolment(media: Path, out: Path, build: EpisodeBuild) -> dict[str, list[str]]:
    images: dict[str, list[str]] = {}
    for enrol in ENROLMENTS:
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


def build_episode(media: Path, out: Path, seed: int = 0, model_path: Path = DEFAULT_MODEL) -> dict[str, Any]:
    """Render the episode and write every output file into `out`; returns the ground-truth dict."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cutouts = {}
    for name, face in PHOTO_FACES.items():
        photo = cv2.imread(str(media / name))
        if photo is None:
            raise FileNotFoundError(f"cannot read photo {media / name}")
        cutouts[name] = make_cutout(photo, face)
    prop_cutouts = {}
    for prop in (p for shot in SHOTS if isinstance(shot, PhotoShot) for p in shot.props):
        photo = cv2.imread(str(media / prop.photo))
        if photo is None:
            raise FileNotFoundError(f"cannot read photo {media / prop.photo}")
        prop_cutouts[(prop.photo, prop.region)] = make_region_cutout(photo, prop.region)
    annotate = make_clip_annotator(model_path)
    build = EpisodeBuild()
    starts = np.cumsum([0] + [s.frames for s in SHOTS]).tolist()
    # Contact sheet: the middle of every shot (the crossing shot's middle is the full occlusion).
    wanted = {start + shot.frames // 2 for start, shot in zip(starts, SHOTS, strict=False)}
    writer = cv2.VideoWriter(str(out / "episode.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video here")

    def emit(index: int, image: np.ndarray) -> None:
        writer.write(image)
        if index in wanted:
            build.contact_frames[index] = image.copy()

    try:
        for start, shot in zip(starts, SHOTS, strict=False):
            if isinstance(shot, PhotoShot):
                _render_photo_shot(shot, start, media, cutouts, prop_cutouts, rng, build, emit)
            else:
                _render_clip_shot(shot, start, media, annotate, rng, build, emit)
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
    enrol_images = _write_enrolment(media, out, build)
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
            for p in PEOPLE
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
    numeric = {p.person_id: p.numeric_id for p in PEOPLE}
    rows = [
        f"{f.frame + 1},{numeric[f.person_id]},{f.box[0]:.2f},{f.box[1]:.2f},"
        f"{f.box[2] - f.box[0]:.2f},{f.box[3] - f.box[1]:.2f},1,-1,-1,-1"
        for f in sorted(build.faces, key=lambda f: (f.frame, numeric[f.person_id]))
        if f.visible_fraction >= SCREEN_VISIBLE_FRACTION
    ]
    (out / "gt.mot.txt").write_text("\n".join(rows) + "\n")
    cv2.imwrite(str(out / "contact.png"), _contact_sheet(build))
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, required=True, help="folder with the source photos and clips")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the layout and brightness jitter")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="RetinaFace ONNX used to annotate clips")
    args = parser.parse_args(argv)
    began = time.monotonic()
    truth = build_episode(args.media, args.out, args.seed, args.model)
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
