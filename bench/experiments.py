"""Knobs that need no change in services/: model threads per session, detector input size.

`python -m bench.experiments [--out bench] [--reps N]` runs them alone (bench.run runs them in full
mode). Each variant runs in-process right after a default in-process run, so the two share the
machine's load; the variant's output is scored against the sample's ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import median, median_ratio

# name -> (environment, detector max_side (0: default), stride[, sampler window s]). Each runs next
# to a default run at the same stride, so the ratio isolates the knob(s).
VARIANTS: dict[str, tuple[Any, ...]] = {
    "model_threads=1": ({"FACEFLOW_MODEL_THREADS": "1"}, 0, 1),
    "max_side=960": ({}, 960, 1),
    "stride 5, model_threads=1": ({"FACEFLOW_MODEL_THREADS": "1"}, 0, 5),
    "stride 5, max_side=960": ({}, 960, 5),
    "stride 5, max_side=640": ({}, 640, 5),
    "stride 5, max_side=960, model_threads=1": ({"FACEFLOW_MODEL_THREADS": "1"}, 960, 5),
    "stride 3, max_side=960, model_threads=1": ({"FACEFLOW_MODEL_THREADS": "1"}, 960, 3),
    "stride 5, window 1.0 s": ({}, 0, 5, 1.0),
    "stride 5, max_side=960, model_threads=1, window 1.0 s": ({"FACEFLOW_MODEL_THREADS": "1"}, 960, 5, 1.0),
}
SCORES = ("recall", "precision", "idf1", "bcubed_f", "mean_abs_screentime_rel_error")


def experiments(sample: Path, work: Path, reps: int, results: dict[str, Any], only: list[str] | None = None) -> None:
    """Run every variant side by side with a default in-process run; store the result in results."""
    from bench.run import evaluate, log, worker

    video, gt = sample / "episode.mp4", sample / "ground_truth.json"
    out: dict[str, Any] = {}
    for name, spec in VARIANTS.items():
        if only and name not in only:
            continue
        env, max_side, stride = spec[:3]
        window_s = spec[3] if len(spec) > 3 else None
        base, variant = [], []
        for rep in range(reps):
            log(f"experiment {name} ({rep + 1}/{reps})")
            slug = "".join(c if c.isalnum() else "-" for c in name)
            base.append(worker("inprocess", video, work / f"base-{slug}-{rep}", stride)["runs"][0])
            v = worker(
                "inprocess",
                video,
                work / f"{slug}-{rep}",
                stride,
                env=env,
                max_side=max_side or None,
                window_s=window_s,
            )
            variant.append(v["runs"][0])
        base_eval, variant_eval = evaluate(base[0]["run_dir"], gt), evaluate(variant[0]["run_dir"], gt)
        out[name] = {
            "stride": stride,
            "default_wall_s": median(report.walls(base)),
            "variant_wall_s": median(report.walls(variant)),
            "time_ratio_variant_over_default": median_ratio(report.walls(variant), report.walls(base)),
            "default_embed_calls_s": median([r["timings_s"]["embed_calls_s"] for r in base]),
            "variant_embed_calls_s": median([r["timings_s"]["embed_calls_s"] for r in variant]),
            "default_scores": {k: base_eval[k] for k in SCORES},
            "variant_scores": {k: variant_eval[k] for k in SCORES},
        }
    results["experiments"] = out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--only", action="append", default=None, help="run only this variant (repeatable)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    work = args.out / "out"
    experiments(work / "sample", work / "experiments", args.reps, results, args.only)
    name = "experiments.json" if not args.only else "experiments-only.json"
    (work / name).write_text(json.dumps(results, indent=1) + "\n")
    json.dump(results, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
