"""The season sample's scripts (issue #18): three short episodes with the same people, exact ground truth.

Rendered by services/evaluation/season_episodes.py with the sample episode's code (same compositing,
photos, clips, output format and enrolment images), one EpisodeScript per episode. The episodes share
one cast and one facebank, so a season of runs can be checked against them: the enrolled people must
be named in every episode, the unknown person must become one row across the season, and the person
a reviewer names in ep1 (and adds to the facebank) must be named automatically in ep2.

Every episode: 1280x720, 25 fps, hard cuts, no occlusion (the season tests identities across
episodes, not tracking); face sizes are face-box heights. Consecutive shots never share a kind of
background (sky, street, cartoon, real clip), so every cut is a visible one.

ep1 (425 frames, 17.0 s)
====  =========  =================================================================================
shot  frames     content
====  =========  =================================================================================
0     0-100      Biden alone, 180-196 px, over the sky (no_face.mp4), slow push-in.
1     100-200    Real clip: Pexels woman (source 2.0-6.0 s).
2     200-300    crowd_5 (150 px) and Obama (obama.jpg, 140 px) over a street (bikes.mp4).
3     300-375    Biden (130 px) and crowd_5 (170 px) over the cartoon.
4     375-425    crowd_5 close-up, 175-182 px, over the sky (face_noface.mov).
====  =========  =================================================================================

ep2 (450 frames, 18.0 s)
====  =========  =================================================================================
0     0-100      Obama (obama2.jpg) close-up, 210-220 px, over the sky (noface_face.mov).
1     100-225    Biden (140 px) and crowd_5 (140 px) walk slowly towards each other over a street.
2     225-285    Real clip: the single_face man in another clip (face_noface.mov, source 0.1-2.5 s).
3     285-375    Obama (obama2.jpg, 160 px) and Biden (115 px) over the cartoon.
4     375-450    crowd_5, smaller (110-115 px), drifting right over the sky (no_face.mp4).
====  =========  =================================================================================

ep3 (400 frames, 16.0 s)
====  =========  =================================================================================
0     0-75       Real clip: Pexels woman (source 12.0-15.0 s), slow zoom out.
1     75-175     Biden (160 px) and the t1 standing man (130 px, a one-episode guest) over the sky.
2     175-225    Real clip: the single_face.mp4 man (source 0.3-2.3 s).
3     225-325    Biden (150 px) stays; a smaller Obama (obama.jpg, 100 px) walks leftwards on the
                 right, over a street.
4     325-400    Biden close-up, 200-215 px, over the cartoon.
====  =========  =================================================================================

Cast (one list for the whole season, the same person ids and MOT ids in every episode): the sample's
five people plus crowd_5, the blonde woman on the right of t1.jpg (the hard episode's crowd_5, cut out
on her own here). Enrolled: Obama, the Pexels woman, the single_face.mp4 man (the sample's enrolment
images, used in no episode). UNKNOWN_PERSON (Biden) is never enrolled and is in every episode;
PROMOTED_PERSON (crowd_5) is never enrolled and is in ep1 and ep2, to be named by a reviewer in ep1.
"""

from __future__ import annotations

from services.evaluation.hard_shots import CROWD_PEOPLE, T1_GROUP_FACES
from services.evaluation.sample_episode import EpisodeScript
from services.evaluation.shots import ENROLMENTS, FPS, PEOPLE, PHOTO_FACES, Actor, ClipShot, Person, PhotoShot, Shot

UNKNOWN_PERSON = "biden"  # (b): never enrolled, in all three episodes; one row across the season
PROMOTED_PERSON = "crowd_5"  # (c): never enrolled, in ep1 and ep2; named by a reviewer in ep1
MIN_RECURRING_SECONDS = 3.0  # on-screen time each of them has, at least, in every episode they are in

# crowd_5 is a second face of t1.jpg (whose PHOTO_FACES entry is the standing man): a cutout of her
# own, under a name of its own that reads the same photo file.
CROWD_5_CUTOUT = "t1.jpg#crowd_5"
CROWD_5_FACE = next(g.face for g in T1_GROUP_FACES if g.person_id == PROMOTED_PERSON)

SEASON_PEOPLE: tuple[Person, ...] = PEOPLE + tuple(p for p in CROWD_PEOPLE if p.person_id == PROMOTED_PERSON)
SEASON_PHOTO_FACES = {**PHOTO_FACES, CROWD_5_CUTOUT: CROWD_5_FACE}
SEASON_PHOTO_FILES = {CROWD_5_CUTOUT: "t1.jpg"}


def _crowd_5(keys: tuple[tuple[float, float, float, float], ...], gain: tuple[float, float] = (1.0, 1.0)) -> Actor:
    return Actor(PROMOTED_PERSON, CROWD_5_CUTOUT, keys, gain)


EP1_SHOTS: tuple[Shot, ...] = (
    PhotoShot(
        100,
        "Biden alone, medium close-up over the sky, slow push-in",
        "no_face.mp4",
        0,
        0.9,
        (1.0, 1.06),
        (Actor("biden", "biden.jpg", ((0, 560, 300, 180), (1, 585, 292, 196)), (0.96, 1.03)),),
    ),
    ClipShot(
        100, "Real clip: Pexels woman (source 2.0-6.0 s)", "WolfgangLanger_Pexels.mp4", "pexels_woman", 2.0, (1.0, 1.06)
    ),
    PhotoShot(
        100,
        "Two-shot over a street: crowd_5 (t1 blonde woman) and Obama (obama.jpg)",
        "bikes.mp4",
        187,
        0.5,
        (1.0, 1.03),
        (
            _crowd_5(((0, 400, 330, 150), (1, 420, 326, 156))),
            Actor("obama", "obama.jpg", ((0, 900, 320, 140), (1, 880, 318, 146)), (1.02, 0.98)),
        ),
    ),
    PhotoShot(
        75,
        "Biden and crowd_5 over the cartoon",
        "bigbuckbunny.mp4",
        0,
        1.0,
        (1.0, 1.04),
        (
            Actor("biden", "biden.jpg", ((0, 330, 330, 130), (1, 360, 330, 132))),
            _crowd_5(((0, 900, 310, 170), (1, 890, 306, 176)), (1.0, 1.04)),
        ),
    ),
    PhotoShot(
        50,
        "crowd_5 close-up over the sky",
        "face_noface.mov",
        73,  # frames 0-71 hold the single_face man, 72 is black
        0.9,
        (1.02, 1.0),
        (_crowd_5(((0, 620, 330, 175), (1, 640, 326, 182))),),
    ),
)

EP2_SHOTS: tuple[Shot, ...] = (
    PhotoShot(
        100,
        "Obama (obama2.jpg) close-up over the sky",
        "noface_face.mov",
        0,  # frames 0-90 are sky; the single_face man comes in from frame 96
        0.6,
        (1.0, 1.04),
        (Actor("obama", "obama2.jpg", ((0, 640, 330, 210), (1, 620, 320, 220)), (0.97, 1.02)),),
    ),
    PhotoShot(
        125,
        "Biden and crowd_5 walk slowly towards each other over a street",
        "bikes.mp4",
        187,
        0.4,
        (1.0, 1.04),
        (
            Actor("biden", "biden.jpg", ((0, 300, 330, 140), (1, 420, 326, 140))),
            _crowd_5(((0, 980, 320, 140), (1, 860, 318, 140))),
        ),
    ),
    ClipShot(
        60,
        "Real clip: the single_face man in another clip (face_noface.mov, source 0.1-2.5 s)",
        "face_noface.mov",
        "single_face_man",
        0.1,
        (1.0, 1.05),
    ),
    PhotoShot(
        90,
        "Obama (obama2.jpg) and Biden over the cartoon",
        "bigbuckbunny.mp4",
        30,
        0.9,
        (1.04, 1.0),
        (
            Actor("obama", "obama2.jpg", ((0, 380, 320, 160), (1, 400, 318, 166))),
            Actor("biden", "biden.jpg", ((0, 900, 330, 115), (1, 880, 330, 118)), (1.03, 0.97)),
        ),
    ),
    PhotoShot(
        75,
        "crowd_5, smaller, drifting right over the sky",
        "no_face.mp4",
        30,  # 95 decodable frames
        0.7,
        (1.0, 1.05),
        (_crowd_5(((0, 500, 380, 110), (1, 700, 370, 115))),),
    ),
)

EP3_SHOTS: tuple[Shot, ...] = (
    ClipShot(
        75,
        "Real clip: Pexels woman (source 12.0-15.0 s)",
        "WolfgangLanger_Pexels.mp4",
        "pexels_woman",
        12.0,
        (1.06, 1.0),
    ),
    PhotoShot(
        100,
        "Biden and the t1 standing man (a guest of this episode only) over the sky",
        "face_noface.mov",
        73,
        0.9,
        (1.0, 1.05),
        (
            Actor("biden", "biden.jpg", ((0, 420, 300, 160), (1, 440, 296, 168))),
            Actor("t1_standing_man", "t1.jpg", ((0, 900, 320, 130), (1, 880, 322, 134)), (1.02, 1.0)),
        ),
    ),
    ClipShot(
        50, "Real clip: single_face.mp4 man (source 0.3-2.3 s)", "single_face.mp4", "single_face_man", 0.3, (1.0, 1.06)
    ),
    PhotoShot(
        100,
        "Biden stays; a smaller Obama (obama.jpg) walks leftwards on the right, over a street",
        "bikes.mp4",
        200,
        0.3,
        (1.03, 1.0),
        (
            Actor("biden", "biden.jpg", ((0, 330, 340, 150), (1, 350, 336, 156))),
            Actor("obama", "obama.jpg", ((0, 1000, 300, 100), (1, 760, 310, 100))),
        ),
    ),
    PhotoShot(
        75,
        "Biden close-up over the cartoon",
        "bigbuckbunny.mp4",
        0,
        1.0,
        (1.05, 1.0),
        (Actor("biden", "biden.jpg", ((0, 640, 340, 200), (1, 640, 330, 215)), (1.0, 0.95)),),
    ),
)


def people_in(shot: Shot) -> tuple[str, ...]:
    """Person ids a shot shows."""
    return tuple(a.person_id for a in shot.actors) if isinstance(shot, PhotoShot) else (shot.person_id,)


def scripted_seconds(script: EpisodeScript) -> dict[str, float]:
    """Seconds each person is in a shot of the episode. No face of the season is ever hidden or leaves
    the frame (tests/unit/test_season_episodes.py checks the layouts), so this is the ground truth's
    screen time."""
    frames: dict[str, int] = {}
    for shot in script.shots:
        for person_id in people_in(shot):
            frames[person_id] = frames.get(person_id, 0) + shot.frames
    return {person_id: n / FPS for person_id, n in sorted(frames.items())}


def _script(shots: tuple[Shot, ...]) -> EpisodeScript:
    return EpisodeScript(
        shots=shots,
        people=SEASON_PEOPLE,
        photo_faces=SEASON_PHOTO_FACES,
        enrolments=ENROLMENTS,
        photo_files=SEASON_PHOTO_FILES,
    )


# Episode folder name -> script, in broadcast order.
SEASON: dict[str, EpisodeScript] = {
    "ep1": _script(EP1_SHOTS),
    "ep2": _script(EP2_SHOTS),
    "ep3": _script(EP3_SHOTS),
}
