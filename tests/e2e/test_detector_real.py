"""The RetinaFace detector and ArcFace alignment on real media with the real models.

Counts are exact on photos whose faces were checked by eye; videos without human faces (one
of them a cartoon whose bunny face RetinaFace scores up to 0.99) must yield no detection at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import pytest

from services.common.alignment import align_faces
from services.common.backends import OnnxBackend
from services.common.config import Settings
from services.common.detections import Detections
from services.common.model_manifest import ModelManifest
from services.detector.retinaface import MODEL_NAME, RetinaFaceDetector, RetinaFaceSettings, prior_boxes

pytestmark = pytest.mark.e2e

CACHE = Settings.from_env().cache_dir
MODELS = CACHE / "models"
MEDIA = CACHE / "media"
DETECTOR_MODEL = MODELS / "retinaface_mnet025.onnx"
EMBEDDER_MODEL = MODELS / "arcface_mbf.onnx"

# Every face in these photos was verified by eye.
EXPECTED_FACES = {
    "multi_face.jpg": 5,
    "t1.jpg": 6,
    "obama.jpg": 1,
    "obama2.jpg": 1,
    "obama3.jpg": 1,
    "biden.jpg": 1,
    "single_face.jpg": 1,
}
# Frames sampled per negative video: bigbuckbunny's bunny is in most of its 132 frames.
NEGATIVE_VIDEO_SAMPLES = {"no_face.mp4": 10, "bigbuckbunny.mp4": 33}
SAME_PERSON_MIN_COSINE = 0.4  # ArcFace: same identity, different photos, is comfortably above this


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    if not DETECTOR_MODEL.is_file():
        pytest.fail(f"{DETECTOR_MODEL} missing; run `make models`")
    spec = ModelManifest.load(DETECTOR_MODEL.parent / "manifest.json").get(MODEL_NAME)
    return RetinaFaceDetector(OnnxBackend(DETECTOR_MODEL, name="retinaface", threads=2), RetinaFaceSettings(), spec)


def _image(name: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / name))
    if image is None:
        pytest.fail(f"{MEDIA / name} missing or unreadable")
    return image


def _sampled_frames(name: str, count: int) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(MEDIA / name))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        pytest.fail(f"{MEDIA / name} missing or unreadable")
    wanted = set(np.linspace(0, total - 1, count).astype(int).tolist())
    try:
        for index in range(total):  # sequential read: seeking is slow and inexact on some codecs
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                yield frame
    finally:
        capture.release()


def test_model_output_matches_prior_layout(detector: RetinaFaceDetector) -> None:
    backend = OnnxBackend(DETECTOR_MODEL, name="retinaface", threads=1)
    loc, conf, landmarks = backend.infer(np.zeros((1, 3, 75, 101), np.float32))
    assert loc.shape == (1, prior_boxes(75, 101, detector.layout).shape[0], 4)
    assert conf.shape[2] == 2 and landmarks.shape[2] == 10


def test_model_threads_busy_wait_only_when_asked() -> None:
    # Spinning workers held the cores the decode and shot-cut threads needed (docs/performance.md).
    settings = Settings.from_env({})
    assert settings.model_thread_spinning is False
    for spinning, entry in ((settings.model_thread_spinning, "0"), (True, "1")):
        backend = OnnxBackend(DETECTOR_MODEL, name="retinaface", threads=1, spinning=spinning)
        options = backend._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_FACES.items()))
def test_counts_faces_in_photos(detector: RetinaFaceDetector, name: str, expected: int) -> None:
    image = _image(name)
    dets = detector.detect(image)
    assert len(dets) == expected, f"{name}: scores {dets.scores.round(3).tolist()}"
    height, width = image.shape[:2]
    assert (dets.xyxy >= 0).all() and (dets.xyxy[:, [0, 2]] <= width).all() and (dets.xyxy[:, [1, 3]] <= height).all()
    # Landmarks of a real face lie inside (or just around) its box, eyes above the mouth.
    boxes, points = dets.xyxy, dets.landmarks
    margin = 0.1 * (boxes[:, 2:] - boxes[:, :2])
    assert (points >= (boxes[:, None, :2] - margin[:, None])).all()
    assert (points <= (boxes[:, None, 2:] + margin[:, None])).all()
    assert (points[:, :2, 1].max(axis=1) < points[:, 3:, 1].min(axis=1)).all()
    assert (points[:, 0, 0] < points[:, 1, 0]).all()  # left eye is left in the image


@pytest.mark.parametrize(("name", "count"), sorted(NEGATIVE_VIDEO_SAMPLES.items()))
def test_no_faces_in_videos_without_people(detector: RetinaFaceDetector, name: str, count: int) -> None:
    frames = list(_sampled_frames(name, count))
    assert len(frames) >= count - 1
    found = [(i, d.scores.round(3).tolist()) for i, d in enumerate(detector.detect_batch(frames)) if len(d)]
    assert found == [], f"{name}: false positives (frame, scores) {found}"


def _assert_same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.5)


def test_batch_equals_single(detector: RetinaFaceDetector) -> None:
    video = list(_sampled_frames("single_face.mp4", 3))
    frames = [video[0], _image("multi_face.jpg"), video[1], _image("t1.jpg"), video[2]]
    batched = detector.detect_batch(frames)
    assert len(batched) == len(frames)
    for frame, dets in zip(frames, batched, strict=True):
        _assert_same(dets, detector.detect(frame))
    assert [len(d) for d in batched] == [1, 5, 1, 6, 1]


def _embed(backend: OnnxBackend, crops: np.ndarray) -> np.ndarray:
    batch = ((crops.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
    embeddings = backend.infer(np.ascontiguousarray(batch))[0]
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def test_aligned_crops_identify_the_same_person(detector: RetinaFaceDetector) -> None:
    if not EMBEDDER_MODEL.is_file():
        pytest.fail(f"{EMBEDDER_MODEL} missing; run `make models`")
    embedder = OnnxBackend(EMBEDDER_MODEL, name="arcface", threads=2)
    crops = []
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        image = _image(name)
        dets = detector.detect(image)
        assert len(dets) == 1
        crops.append(align_faces(image, dets)[0])
    obama, obama2, biden = _embed(embedder, np.stack(crops))
    same, different = float(obama @ obama2), float(obama @ biden)
    assert same > SAME_PERSON_MIN_COSINE, f"same person cosine {same:.3f}"
    assert same > different, f"same {same:.3f} <= different {different:.3f}"


def test_zoom_finds_small_crowd_faces_the_native_pass_misses(detector: RetinaFaceDetector) -> None:
    """The t1 group photo at ~20 px faces on a 720p frame: native RetinaFace finds some, the zoom more."""
    from dataclasses import replace

    from services.common.thresholds import MIN_FACE_PX
    from services.detector.zoom import SmallFaceZoom

    photo = cv2.imread(str(MEDIA / "t1.jpg"))
    small = cv2.resize(photo, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)  # faces 91-110 px -> 18-22
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[200 : 200 + small.shape[0], 400 : 400 + small.shape[1]] = small
    native = detector.detect_batch([frame], include_candidates=True)[0]
    magnified = detector.with_settings(replace(detector.settings, max_side=0))
    shapes: list[tuple[int, ...]] = []

    def detect(tiles: Sequence[np.ndarray]) -> list[Detections]:
        shapes.extend(tile.shape for tile in tiles)
        return magnified.detect_batch(list(tiles), True)

    zoom = SmallFaceZoom(detect)
    refined = zoom.refine(frame, native)
    assert 0 < native.confident.sum() < refined.confident.sum() <= EXPECTED_FACES["t1.jpg"]
    sides = np.minimum(*(refined.xyxy[:, 2:] - refined.xyxy[:, :2]).T)
    assert (sides >= MIN_FACE_PX).all()
    assert shapes == [frame.shape] * 4  # one look at the whole frame: four tiles of the native shape


def _pan_frame(blurred: bool) -> np.ndarray:
    """Obama and Biden (~100 px faces) over a real street frame, smeared as a 30 px/frame pan is."""
    from services.evaluation.hard_shots import motion_blur

    capture = cv2.VideoCapture(str(MEDIA / "no_face.mp4"))
    ok, street = capture.read()
    capture.release()
    assert ok
    frame = cv2.resize(street, (1280, 720))
    for name, x in (("obama.jpg", 300), ("biden.jpg", 800)):
        photo = cv2.imread(str(MEDIA / name))
        photo = cv2.resize(photo, (300, round(300 * photo.shape[0] / photo.shape[1])))[:400]
        frame[200 : 200 + photo.shape[0], x : x + photo.shape[1]] = photo
    return motion_blur(frame, 0) if blurred else frame


def test_a_smeared_pan_is_measured_restored_and_its_faces_found(detector: RetinaFaceDetector) -> None:
    """The hard episode's blurred pan: RetinaFace doubts every smeared face; restored, it is sure."""
    from dataclasses import replace

    from services.detector.deblur import DeblurSettings, MotionDeblur, measure_smear

    sharp = _pan_frame(blurred=False)
    assert measure_smear(sharp) is None
    assert detector.detect(sharp).confident.sum() == 2

    frame = _pan_frame(blurred=True)
    native = detector.detect_batch([frame], include_candidates=True)[0]
    assert native.confident.sum() < 2, "the fault: a smeared face is not confidently found"
    smear = measure_smear(frame)
    assert smear is not None and abs(smear.dy) < 1 and 28 <= abs(smear.dx) <= 34  # 31 taps, horizontal
    settings = DeblurSettings()
    relaxed = detector.with_settings(
        replace(detector.settings, large_face_score_threshold=settings.large_face_score(detector.settings))
    )
    deblur = MotionDeblur(lambda frames, _reduced: relaxed.detect_batch(list(frames), True), settings)
    before = frame.copy()
    found = deblur.refine(frame, native)
    assert found.confident.sum() == 2 and deblur.frames_restored == 1
    assert not np.array_equal(frame, before), "crops must come from the restored pixels"
    assert deblur.was_restored(frame) and not deblur.was_restored(frame)  # told once, when its faces are sent

    following = _pan_frame(blurred=True)  # the pan goes on: restored first, one detection
    in_pan = deblur.in_pan(following)
    assert in_pan is not None and in_pan.confident.sum() == 2 and deblur.was_restored(following)
    assert deblur.in_pan(_pan_frame(blurred=False)) is None  # a sharp frame ends the pan: a native look
    assert deblur.in_pan(_pan_frame(blurred=True)) is None and deblur.frames_restored == 2
