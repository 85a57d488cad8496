"""The sample episode's script: its format, its shots, the people in it and their enrolment images.

services/evaluation/sample_episode.py renders it and writes the ground truth; the face boxes here were
annotated once on the clean photos (RetinaFace, checked by eye).

Episode: 1280x720, 25 fps, 1150 frames (46 s), mp4v. Shots, separated by hard cuts (frames are
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
12    1050-1150    [occlusion, crossing, small-fast] A small Obama (obama.jpg, 40 px face) crosses
                   at a constant 4.5 px per frame (~22 px per processed frame at stride 5) behind
                   the nearly static t1 man (130 px face, mid-frame): seen ~1 s, fully hidden ~1.8 s,
                   seen ~1 s again. Over Big Buck Bunny (a sky would hide the cut from shot 11).
====  ===========  ==========================================================================

Enrolment images (never used in the episode): obama3.jpg for Obama, frame 400 of
WolfgangLanger_Pexels.mp4 for the Pexels woman, frame 71 of single_face.mp4 for its man.
Biden and the t1.jpg man are not enrollable (no unused image of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.evaluation.compositing import FaceAnnotation

WIDTH, HEIGHT = 1280, 720  # px
FPS = 25  # frames per second of the episode


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


def _steady(
    x: tuple[float, float], y: float, height: float, frames: int
) -> tuple[tuple[float, float, float, float], ...]:
    """A straight path at constant speed: one keyframe per frame of the shot, since _keyframe_at
    comes to a stop at every keyframe (collinear keyframes alone would give stop-and-go motion)."""
    last = max(1, frames - 1)
    return tuple((k / last, x[0] + (x[1] - x[0]) * k / last, y, height) for k in range(frames))


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
    PhotoShot(
        100,
        "Small and fast: a small Obama crosses behind the t1 man, hidden ~1.8 s",
        # Not over sky like shot 11: two sky shots in a row defeat the histogram cut test, and the
        # t1 man in both would then be one track over a cut (a cut-detection case of its own).
        "bigbuckbunny.mp4",
        30,
        0.9,
        (1.04, 1.0),
        (
            # 446 px in 99 frames: 4.5 px per frame, the face's own width every ~6 frames.
            Actor("obama", "obama.jpg", _steady((417, 863), 305, 40, 100)),
            Actor("t1_standing_man", "t1.jpg", ((0, 640, 330, 130), (1, 646, 328, 132)), (1.02, 0.98)),
        ),
        tags=("occlusion", "crossing", "small-fast"),
    ),
)
