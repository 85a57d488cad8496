"""Render the season sample (issue #18): three short episodes with the same people and exact ground truth.

The scripts are services/evaluation/season_shots.py; rendering and ground truth are the sample
episode's code (services/evaluation/sample_episode.py), run once per episode into OUT/ep1, OUT/ep2,
OUT/ep3, each with the sample's outputs (episode.mp4, ground_truth.json, gt.mot.txt, contact.png and
enrol/: the same three enrolment images in every episode, so each folder stands alone). Episode N is
rendered with seed SEED + N. OUT/season.json lists the episodes, the unknown and the to-be-promoted
person and the true seconds on screen per person per episode (from each ground_truth.json).

Run: python -m services.evaluation.season_episodes --media DIR --out DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from services.evaluation import sample_episode
from services.evaluation.season_shots import MIN_RECURRING_SECONDS, PROMOTED_PERSON, SEASON, UNKNOWN_PERSON


def true_seconds(truth: dict[str, Any]) -> dict[str, float]:
    """Seconds on screen (face at least half visible) per person of one episode's ground truth."""
    return {person_id: float(entry["seconds"]) for person_id, entry in truth["screentime"].items()}


def build_season(
    media: Path, out: Path, seed: int = 0, model_path: Path = sample_episode.DEFAULT_MODEL
) -> dict[str, Any]:
    """Render every episode into out/<name>/ and write out/season.json; returns its content."""
    seconds: dict[str, dict[str, float]] = {}
    for number, (name, script) in enumerate(SEASON.items(), start=1):
        truth = sample_episode.build_episode(media, out / name, seed + number, model_path, script)
        seconds[name] = true_seconds(truth)
    brief = {
        ep: s.get(UNKNOWN_PERSON, 0.0)
        for ep, s in seconds.items()
        if s.get(UNKNOWN_PERSON, 0.0) < MIN_RECURRING_SECONDS
    }
    if brief:
        raise RuntimeError(f"the unknown person {UNKNOWN_PERSON} is on screen too briefly: {brief}")
    if sum(s.get(PROMOTED_PERSON, 0.0) >= MIN_RECURRING_SECONDS for s in seconds.values()) < 2:
        raise RuntimeError(f"the person to promote, {PROMOTED_PERSON}, is in fewer than two episodes: {seconds}")
    summary = {
        "version": 1,
        "episodes": [
            {"name": name, "path": f"{name}/episode.mp4", "ground_truth": f"{name}/ground_truth.json", "seed": seed + n}
            for n, name in enumerate(SEASON, start=1)
        ],
        "unknown_person": UNKNOWN_PERSON,
        "promoted_person": PROMOTED_PERSON,
        "enrolled": sorted({e.person_id for script in SEASON.values() for e in script.enrolments}),
        "seconds": seconds,
    }
    (out / "season.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def format_table(seconds: dict[str, dict[str, float]]) -> str:
    """True seconds per person (rows) per episode (columns)."""
    people = sorted({p for s in seconds.values() for p in s})
    lines = [f"{'person':18s}" + "".join(f"{ep:>8s}" for ep in seconds)]
    for person_id in people:
        lines.append(f"{person_id:18s}" + "".join(f"{s.get(person_id, 0.0):8.2f}" for s in seconds.values()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=Path, required=True, help="folder with the source photos and clips")
    parser.add_argument("--out", type=Path, required=True, help="season folder (ep1, ep2, ep3 are made in it)")
    parser.add_argument("--seed", type=int, default=0, help="episode N is rendered with seed SEED + N")
    parser.add_argument(
        "--model", type=Path, default=sample_episode.DEFAULT_MODEL, help="RetinaFace ONNX used to annotate clips"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    summary = build_season(args.media, args.out, args.seed, args.model)
    print(f"wrote {len(summary['episodes'])} episodes into {args.out} in {time.monotonic() - began:.1f} s")
    print(f"unknown person {summary['unknown_person']}, to be promoted {summary['promoted_person']}; true seconds:")
    print(format_table(summary["seconds"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
