"""RetinaFace priors, decoding and NMS against hand-computed values; its layout read from the model
manifest; Detections container rules."""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np
import pytest

from services.common.detections import Detections
from services.common.errors import FailedPrecondition
from services.common.model_manifest import ModelSpec
from services.common.thresholds import MIN_FACE_PX
from services.detector.retinaface import (
    RetinaFaceDetector,
    RetinaFaceLayout,
    RetinaFaceSettings,
    decode_boxes,
    decode_landmarks,
    network_size,
    nms,
    prior_boxes,
)
from services.tracker.strongsort import StrongSortSettings


def _spec(**changes: Any) -> ModelSpec:
    """The detector's manifest entry as tools/assets writes it (biubug6 cfg_mnet), with `changes`
    to its preprocessing and priors (None removes a key)."""
    preprocessing = {"color_order": "BGR", "mean": [104, 117, 123], "std": [1, 1, 1]}
    priors = {"steps": [8, 16, 32], "min_sizes": [[16, 32], [64, 128], [256, 512]], "variances": [0.1, 0.2]}
    for section in (preprocessing, priors):
        for key, value in changes.items():
            if key in section:
                section[key] = value
        for key in [k for k, v in section.items() if v is None]:
            del section[key]
    return ModelSpec.from_dict(
        {
            "name": "retinaface_mnet025",
            "task": "face_detection",
            "file": "retinaface_mnet025.onnx",
            "sha256": "0" * 64,
            "inputs": [{"name": "input", "shape": [-1, 3, -1, -1]}],
            "outputs": [{"name": "loc", "shape": [-1, -1, 4]}],
            "preprocessing": preprocessing,
            "priors": priors,
        }
    )


LAYOUT = RetinaFaceLayout.from_spec(_spec())


def test_prior_count_matches_ceil_feature_maps() -> None:
    # 33x64: step 8 -> 5x8 cells, step 16 -> 3x4, step 32 -> 2x2; two min sizes per cell.
    priors = prior_boxes(33, 64, LAYOUT)
    assert priors.shape == ((5 * 8 + 3 * 4 + 2 * 2) * 2, 4)
    assert priors.dtype == np.float32


def test_prior_ordering_is_row_major_then_min_size_then_level() -> None:
    height, width = 32, 64
    priors = prior_boxes(height, width, LAYOUT)
    # First cell of level 0: both min sizes (16, 32) at the same centre.
    np.testing.assert_allclose(priors[0], [4 / 64, 4 / 32, 16 / 64, 16 / 32], rtol=1e-6)
    np.testing.assert_allclose(priors[1], [4 / 64, 4 / 32, 32 / 64, 32 / 32], rtol=1e-6)
    # Next column of row 0, then the first cell of row 1 after the 8 columns.
    np.testing.assert_allclose(priors[2, :2], [12 / 64, 4 / 32], rtol=1e-6)
    np.testing.assert_allclose(priors[2 * 8, :2], [4 / 64, 12 / 32], rtol=1e-6)
    # Level 1 (step 16, min sizes 64/128) starts after the 4x8x2 priors of level 0.
    np.testing.assert_allclose(priors[64], [8 / 64, 8 / 32, 64 / 64, 64 / 32], rtol=1e-6)
    np.testing.assert_allclose(priors[65, 2:], [128 / 64, 128 / 32], rtol=1e-6)
    # Level 2 (step 32, min sizes 256/512) after 2x4x2 more.
    np.testing.assert_allclose(priors[64 + 16], [16 / 64, 16 / 32, 256 / 64, 256 / 32], rtol=1e-6)


def test_priors_are_cached_and_read_only() -> None:
    first = prior_boxes(40, 48, LAYOUT)
    assert prior_boxes(40, 48, LAYOUT) is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


def test_decode_zero_regression_gives_the_prior() -> None:
    priors = prior_boxes(32, 32, LAYOUT)
    boxes = decode_boxes(np.zeros((len(priors), 4), np.float32), priors, LAYOUT)
    cx, cy, w, h = priors.T
    np.testing.assert_allclose(boxes, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), atol=1e-7)
    points = decode_landmarks(np.zeros((len(priors), 10), np.float32), priors, LAYOUT)
    assert points.shape == (len(priors), 5, 2)
    np.testing.assert_allclose(points, np.repeat(priors[:, None, :2], 5, axis=1), atol=1e-7)


def test_decode_applies_variances() -> None:
    prior = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    loc = np.array([[1.0, -1.0, np.log(2) / 0.2, 0.0]], np.float32)
    # centre moves by 0.1 * prior size; width doubles (exp(loc * 0.2) = 2), height unchanged.
    np.testing.assert_allclose(
        decode_boxes(loc, prior, LAYOUT), [[0.52 - 0.2, 0.46 - 0.2, 0.52 + 0.2, 0.46 + 0.2]], atol=1e-6
    )
    lm = np.tile(np.array([1.0, 2.0], np.float32), 5)[None]
    np.testing.assert_allclose(decode_landmarks(lm, prior, LAYOUT)[0, 3], [0.52, 0.58], atol=1e-6)


def test_layout_is_read_from_the_manifest_entry() -> None:
    assert (
        RetinaFaceLayout(
            steps=(8, 16, 32),
            min_sizes=((16, 32), (64, 128), (256, 512)),
            center_variance=0.1,
            size_variance=0.2,
            mean=(104.0, 117.0, 123.0),
            std=(1.0, 1.0, 1.0),
            rgb=False,
        )
        == LAYOUT
    )
    other = RetinaFaceLayout.from_spec(_spec(steps=[16, 32, 64], variances=[0.2, 0.4], color_order="rgb", std=None))
    assert other.steps == (16, 32, 64) and (other.center_variance, other.size_variance) == (0.2, 0.4)
    assert other.rgb and other.std == (1.0, 1.0, 1.0)  # no std: pixels are not scaled
    assert prior_boxes(32, 64, other).shape[0] < prior_boxes(32, 64, LAYOUT).shape[0]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"steps": None}, "priors.steps"),
        ({"min_sizes": None}, "priors.min_sizes"),
        ({"variances": None}, "priors.variances"),
        ({"mean": None}, "preprocessing.mean"),
        ({"color_order": None}, "preprocessing.color_order"),
        ({"variances": [0.1]}, "priors.variances"),
        ({"min_sizes": [[16, 32], [64, 128]]}, "priors.min_sizes"),
        ({"mean": [104, 117]}, "preprocessing.mean"),
        ({"std": [1, 0, 1]}, "preprocessing.std"),
        ({"color_order": "YUV"}, "preprocessing.color_order"),
        ({"steps": "eight"}, "priors.steps"),
    ],
)
def test_missing_or_malformed_manifest_key_is_named(change: dict[str, Any], key: str) -> None:
    with pytest.raises(FailedPrecondition, match=rf"retinaface_mnet025 has .*\b{re.escape(key)}\b.*make models"):
        RetinaFaceLayout.from_spec(_spec(**change))


class _RecordingBackend:
    name = "recording"
    device = "cpu"

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(batch)
        priors = len(prior_boxes(batch.shape[2], batch.shape[3], LAYOUT))
        return [np.zeros((len(batch), priors, 4), np.float32), np.zeros((len(batch), priors, 2), np.float32)] + [
            np.zeros((len(batch), priors, 10), np.float32)
        ]


def test_input_is_normalised_as_the_manifest_says() -> None:
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # B, G, R
    backend = _RecordingBackend()
    assert len(RetinaFaceDetector(backend, RetinaFaceSettings(), _spec()).detect(frame)) == 0
    np.testing.assert_array_equal(backend.batches[-1][0, :, 0, 0], [10 - 104, 20 - 117, 30 - 123])
    rgb = _spec(color_order="RGB", mean=[1, 2, 3], std=[2, 4, 8])
    RetinaFaceDetector(backend, RetinaFaceSettings(), rgb).with_settings(RetinaFaceSettings(max_side=64)).detect(frame)
    np.testing.assert_array_equal(backend.batches[-1][0, :, 0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8])


@pytest.mark.parametrize("color_order", ["BGR", "RGB"])
@pytest.mark.parametrize("max_side", [0, 48])
def test_batched_input_is_what_opencvs_blob_gives(color_order: str, max_side: int) -> None:
    # The channel-by-channel input (much faster) must equal cv2.dnn.blobFromImages, the reference
    # the model's mean order was checked against, for both channel orders and when resizing.
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (40, 72, 3), dtype=np.uint8) for _ in range(3)]
    backend = _RecordingBackend()
    spec = _spec(color_order=color_order)
    RetinaFaceDetector(backend, RetinaFaceSettings(max_side=max_side), spec).detect_batch(frames)
    height, width = network_size(40, 72, max_side)
    resized = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames] if max_side else frames
    expected = cv2.dnn.blobFromImages(resized, 1.0, (width, height), (104, 117, 123), swapRB=color_order == "RGB")
    np.testing.assert_array_equal(backend.batches[-1], expected)


def test_detector_and_tracker_share_the_minimum_face() -> None:
    assert RetinaFaceSettings().min_face_px == StrongSortSettings().min_appearance_side == MIN_FACE_PX


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # A
            [1, 1, 11, 11],  # overlaps A: IoU 81/119 = 0.68
            [20, 20, 30, 30],  # separate
            [0, 0, 10, 5],  # top half of A: IoU with A 0.5, with the second box 36/114 = 0.32
        ],
        np.float32,
    )
    scores = np.array([0.8, 0.9, 0.7, 0.95], np.float32)
    # 3 (0.95) kept; 1 (0.9) kept (0.32 with 3); 0 suppressed (0.5 with 3, 0.68 with 1); 2 kept.
    np.testing.assert_array_equal(nms(boxes, scores, 0.4), [3, 1, 2])
    # With a looser threshold only the 0.68 overlap is a duplicate.
    np.testing.assert_array_equal(nms(boxes, scores, 0.6), [3, 1, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.7), [3, 1, 0, 2])
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).shape == (0,)


def test_nms_threshold_is_strict() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.49), [0])


def test_required_score_ramps_with_network_face_size() -> None:
    s = RetinaFaceSettings(score_threshold=0.9, large_face_score_threshold=0.99, ramp_start_px=20, ramp_end_px=40)
    np.testing.assert_allclose(s.required_score(np.array([10.0, 20, 30, 40, 400])), [0.9, 0.9, 0.945, 0.99, 0.99])


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        RetinaFaceSettings(score_threshold=1.5)
    with pytest.raises(ValueError, match="max_side"):
        RetinaFaceSettings(max_side=10)
    with pytest.raises(ValueError, match="large_face_score_threshold"):
        RetinaFaceSettings(score_threshold=0.9, large_face_score_threshold=0.8)


def test_network_size_downscales_long_side_only() -> None:
    assert network_size(1080, 1920, 1280) == (720, 1280)
    assert network_size(720, 1280, 1280) == (720, 1280)
    assert network_size(360, 640, 1280) == (360, 640)
    assert network_size(2204, 970, 1280) == (1280, 563)
    assert network_size(1080, 1920, 0) == (1080, 1920)


def _dets(n: int) -> Detections:
    xyxy = np.stack([np.arange(n), np.zeros(n), np.arange(n) + 10, np.full(n, 10)], 1)
    return Detections(
        xyxy=xyxy, scores=np.linspace(0.5, 1.0, n), landmarks=np.ones((n, 5, 2)) * np.arange(n)[:, None, None]
    )


def test_detections_validation_states_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Detections(xyxy=np.zeros((3, 5)), scores=np.zeros(3), landmarks=np.zeros((3, 5, 2)))
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        Detections(xyxy=np.zeros((3, 4)), scores=np.zeros(2), landmarks=np.zeros((3, 5, 2)))
    with pytest.raises(ValueError, match=r"landmarks must have shape \(3, 5, 2\)"):
        Detections(xyxy=np.zeros((3, 4)), scores=np.zeros(3), landmarks=np.zeros((3, 10)))


def test_detections_coerce_to_float32_read_only_copies() -> None:
    source = np.zeros((1, 4))
    dets = Detections(xyxy=source, scores=np.array([0.5]), landmarks=np.zeros((1, 5, 2)))
    assert dets.xyxy.dtype == dets.scores.dtype == dets.landmarks.dtype == np.float32
    source[0, 0] = 7
    assert dets.xyxy[0, 0] == 0
    with pytest.raises(ValueError):
        dets.scores[0] = 1.0


def test_detections_mask_index_and_merge() -> None:
    dets = _dets(4)
    assert len(dets) == 4 and len(Detections.empty()) == 0
    masked = dets[dets.scores > 0.7]
    assert len(masked) == 2
    np.testing.assert_allclose(masked.xyxy[:, 0], [2, 3])
    np.testing.assert_allclose(masked.landmarks[:, 0, 0], [2, 3])
    picked = dets[np.array([3, 0])]
    np.testing.assert_allclose(picked.scores, [1.0, 0.5])
    assert len(dets[1]) == 1 and len(dets[np.array([], dtype=int)]) == 0
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        dets[np.array([True, False])]
    merged = Detections.merge([dets[:1], Detections.empty(), picked])
    assert len(merged) == 3
    np.testing.assert_allclose(merged.scores, [0.5, 1.0, 0.5])
    assert len(Detections.merge([])) == 0
