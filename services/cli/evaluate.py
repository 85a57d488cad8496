"""`faceflow eval`: score a run against ground truth; `faceflow sample`: build the sample episode that has it."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from services.cli.session import fetch_outputs, session
from services.common import errors

EVAL_FILES = ("tracks.mot.txt", "identities.json", "screentime.json", "manifest.json")


def cmd_eval(args: argparse.Namespace) -> int:
    from services.evaluation.metrics import evaluate

    gt = Path(args.ground_truth)
    if not gt.is_file():
        raise errors.NotFound(f"ground truth file {gt} does not exist")
    run_dir = Path(args.run)
    with tempfile.TemporaryDirectory(prefix="faceflow-eval-") as scratch:
        if not (run_dir / "tracks.mot.txt").is_file():
            # An episode id: read its current outputs through storage (local or S3).
            with session(args, ("storage",)) as s:
                run_dir = fetch_outputs(s, args.run, Path(scratch), EVAL_FILES)
        report = evaluate(run_dir, gt)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format_table())
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from services.evaluation import sample_episode

    return sample_episode.main(["--media", str(args.media), "--out", str(args.out), "--seed", str(args.seed)])


def add_eval_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="score a run against ground truth")
    ev.add_argument("run", help="run directory or episode id")
    ev.add_argument("--ground-truth", required=True)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)


def add_sample_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sample = sub.add_parser("sample", help="build the sample episode with ground truth")
    sample.add_argument("--media", type=Path, required=True)
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)
