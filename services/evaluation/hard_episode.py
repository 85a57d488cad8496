"""Render the hard episode (issue #19): small faces in a crowd, hands over faces, heavy compression,
motion blur and low light, with exact ground truth in the sample episode's format.

The script is services/evaluation/hard_shots.py; rendering and ground truth are the sample episode's
code (services/evaluation/sample_episode.py) run on that script, so the outputs (episode.mp4,
ground_truth.json with a tag per condition, gt.mot.txt, enrol/, contact.png) read and score alike.

Run: python -m services.evaluation.hard_episode --media DIR --out DIR [--seed N]
     python -m services.evaluation.hard_episode --media DIR --annotate PHOTO   # every face on a photo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from services.evaluation import sample_episode
from services.evaluation.hard_shots import HARD_SCRIPT


def annotate_photo(photo: Path, model: Path) -> list[str]:
    """Every face RetinaFace finds on a clean photo, left to right, as script lines to check by eye."""
    image = cv2.imread(str(photo))
    if image is None:
        raise FileNotFoundError(f"cannot read photo {photo}")
    found = sorted(sample_episode.make_face_finder(model)(image), key=lambda f: f[0].box[0])
    return [
        f"score {score:.4f}: _face({tuple(round(v, 1) for v in face.box)}, "
        + ", ".join(f"({x:.1f}, {y:.1f})" for x, y in face.landmarks)
        + ")"
        for face, score in found
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--annotate" in args:
        parser = argparse.ArgumentParser(description="Print every face RetinaFace finds on a photo")
        parser.add_argument("--media", type=Path, required=True)
        parser.add_argument("--annotate", required=True, help="photo file name in --media")
        parser.add_argument("--model", type=Path, default=sample_episode.DEFAULT_MODEL)
        parsed = parser.parse_args(args)
        print("\n".join(annotate_photo(parsed.media / parsed.annotate, parsed.model)))
        return 0
    return sample_episode.main(args, HARD_SCRIPT, __doc__.split("\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
