"""`python -m bench.trackers [--strides 1,5] [--trackers NAME,...] [--refine both|on|off] [--reps N]
[--out bench]`: every registered tracker on the sample episode, side by side (docs/evaluation.md).

One LocalStack (the five real services, models warm, the three enrollable people enrolled) runs the
sample episode through RunEpisode once per tracker, stride and refine setting (the pipeline's track
split/merge post-processing on, as users run it, or off, the tracker alone), interleaved repetition
by repetition so every tracker sees the same machine load; each run is scored by services.evaluation.metrics
against the episode's ground truth, overall and on the "occlusion" scenes. Wall time is client-side
around RunEpisode, as in bench.run. Writes OUT/trackers.json and OUT/trackers.md; work in
OUT/out/trackers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.episodes import ensure_sample
from bench.stats import median

BASELINE = "bytetrack"  # the tracker the others are compared with
SUBSET = "occlusion"  # the scene tag of the occlusion scenes
DEFAULT_STRIDES = (1, 5)


def row(tracker: str, stride: int, runs: Sequence[dict[str, Any]], refine: bool = True) -> dict[str, Any]:
    """One table row from the repetitions of one tracker at one stride and refine setting (scores of
    the first run: the pipeline is deterministic; `scores_identical` says whether the repetitions agreed)."""
    evals = [r["eval"] for r in runs]
    first = evals[0]
    sub = first.get("subsets", {}).get(SUBSET) or {}
    return {
        "tracker": tracker,
        "refine": refine,
        "stride": stride,
        "repetitions": len(runs),
        "wall_s": median([float(r["wall_s"]) for r in runs]),
        "walls_s": [float(r["wall_s"]) for r in runs],
        "scores_identical": all(e == first for e in evals[1:]),
        "idf1": first["idf1"],
        "id_switches": first["id_switches"],
        "fragmentations": first["fragmentations"],
        "mota": first["mota"],
        "recall": first["recall"],
        "precision": first["precision"],
        "tracks_spanning_cut": first.get("tracks_spanning_cut"),
        "bcubed_f": first["bcubed_f"],
        "identities": first["predicted_identity_count"],
        "people": first["true_person_count"],
        "screentime_rel_error": first["mean_abs_screentime_rel_error"],
        "occlusion_idf1": sub.get("idf1"),
        "occlusion_id_switches": sub.get("id_switches"),
        "occlusion_fragmentations": sub.get("fragmentations"),
        "occlusion_recall": sub.get("recall"),
    }


def compare(rows: list[dict[str, Any]], baseline: str = BASELINE) -> None:
    """Add, in place, each row's difference from the baseline tracker at the same stride and refine setting."""
    base = {(r["stride"], r["refine"]): r for r in rows if r["tracker"] == baseline}
    for r in rows:
        b = base.get((r["stride"], r["refine"]))
        if b is None or r is b:
            continue
        r["vs_baseline"] = {
            "occlusion_idf1_delta": _diff(r["occlusion_idf1"], b["occlusion_idf1"]),
            "idf1_delta": _diff(r["idf1"], b["idf1"]),
            "id_switches_ratio": _div(r["id_switches"], b["id_switches"]),
            "wall_ratio": _div(r["wall_s"], b["wall_s"]),
        }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _onoff(r: dict[str, Any]) -> str:
    return "on" if r.get("refine", True) else "off"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Trackers side by side on the sample episode",
        "",
        f"{results['episode']}. Machine: {results['machine']}. Wall: median of {results['repetitions']} "
        "run(s), client-side RunEpisode, models warm.",
        "",
        "refine: the pipeline's track split/merge post-processing (on: as users run it; off: the tracker alone).",
        "",
        "| tracker | refine | stride | wall s | IDF1 | ID sw | frags | MOTA | recall | occl. IDF1 | occl. ID sw "
        "| occl. frags | tracks spanning a cut | identities / people | BCubed F | screen-time err |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['tracker']} | {_onoff(r)} | {r['stride']} | {_f(r['wall_s'], 1)} | {_f(r['idf1'])} "
            f"| {r['id_switches']} | {r['fragmentations']} | {_f(r['mota'])} | {_f(r['recall'])} "
            f"| {_f(r['occlusion_idf1'])} | {_f(r['occlusion_id_switches'])} | {_f(r['occlusion_fragmentations'])} "
            f"| {_f(r['tracks_spanning_cut'])} | {r['identities']} / {r['people']} | {_f(r['bcubed_f'])} "
            f"| {_f(r['screentime_rel_error'])} |"
        )
    compared = [r for r in results["rows"] if "vs_baseline" in r]
    if compared:
        lines += [
            "",
            f"| vs {results['baseline']} | refine | stride | occl. IDF1 delta | IDF1 delta | ID switches x | wall x |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in compared:
            v = r["vs_baseline"]
            lines.append(
                f"| {r['tracker']} | {_onoff(r)} | {r['stride']} | {_f(v['occlusion_idf1_delta'])} "
                f"| {_f(v['idf1_delta'])} | {_f(v['id_switches_ratio'], 2)} | {_f(v['wall_ratio'], 2)} |"
            )
    if not all(r["scores_identical"] for r in results["rows"]):
        lines += ["", "Note: repetitions of some runs gave different scores (see trackers.json)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.micro import MicroStack
    from bench.run import evaluate, log, machine
    from services.common.config import Settings
    from services.tracker.registry import TRACKERS

    parser = argparse.ArgumentParser(prog="python -m bench.trackers", description=__doc__)
    parser.add_argument(
        "--trackers", default="", help=f"comma-separated (default: every registered: {','.join(TRACKERS)})"
    )
    parser.add_argument("--strides", default=",".join(map(str, DEFAULT_STRIDES)), help="comma-separated strides")
    parser.add_argument(
        "--refine",
        choices=("both", "on", "off"),
        default="both",
        help="track split/merge post-processing: on (as users run it), off (the tracker alone), or both",
    )
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every run (wall: median)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="trackers.json/.md here, work in OUT/out")
    args = parser.parse_args(argv)
    trackers = [t for t in args.trackers.split(",") if t] or list(TRACKERS)
    unknown = [t for t in trackers if t not in TRACKERS]
    if unknown:
        parser.error(f"unknown tracker(s) {', '.join(unknown)}; registered: {', '.join(TRACKERS)}")
    strides = [int(s) for s in args.strides.split(",") if s]
    refines = {"both": [False, True], "on": [True], "off": [False]}[args.refine]
    started = time.monotonic()
    work = args.out / "out"
    log("building the sample episode (once)")
    sample = ensure_sample(work / "sample", Settings.from_env().cache_dir / "media")
    truth = json.loads((sample / "ground_truth.json").read_text())
    video_s = truth["frame_count"] / truth["fps"]
    root = work / "trackers"
    if root.exists():
        shutil.rmtree(root)
    keys = [(t, s, r) for s in strides for r in refines for t in trackers]
    runs: dict[tuple[str, int, bool], list[dict[str, Any]]] = {k: [] for k in keys}
    with MicroStack(root, sample / "episode.mp4", sample / "enrol") as stack:
        for rep in range(args.reps):
            for tracker, stride, refine in keys:
                setting = f"{tracker} at stride {stride}, refine {'on' if refine else 'off'}"
                log(f"repetition {rep + 1}/{args.reps}: {setting}")
                run = stack.run(stride, tracker, refine)
                run["eval"] = evaluate(run["run_dir"], sample / "ground_truth.json")
                runs[(tracker, stride, refine)].append(run)
    rows = [row(t, s, runs[(t, s, r)], r) for t, s, r in keys]
    compare(rows)
    results = {
        "episode": f"Sample episode: {video_s:.0f} s, {truth['width']}x{truth['height']}, {truth['fps']} fps, "
        f"{len(truth['shots'])} shots ({sum(SUBSET in s.get('tags', []) for s in truth['shots'])} tagged {SUBSET})",
        "machine": machine(),
        "repetitions": args.reps,
        "baseline": BASELINE,
        "rows": rows,
        "runs": {f"{t}@{s}{'' if r else ',no-refine'}": v for (t, s, r), v in runs.items()},
        "bench_wall_s": time.monotonic() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trackers.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = markdown(results)
    (args.out / "trackers.md").write_text(table + "\n")
    print(table)
    log(f"done in {results['bench_wall_s'] / 60:.1f} min; wrote {args.out / 'trackers.json'} and trackers.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
