"""`python -m bench.run [--quick] [--out bench]`: the faceflow benchmark (see docs/performance.md).

Order matters on a shared 2-core machine: the three modes run interleaved, repetition by
repetition (micro, in-process, naive), so each ratio compares runs taken under the same load.
Full mode: 3 repetitions, scaling at 30 s / 2 min / 5 min, and the experiments; --quick: 1
repetition, 30 s / 2 min, no experiments (~10 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.episodes import ensure_hard, ensure_sample, loop_video, talking_head_video
from bench.experiments import experiments
from bench.micro import MicroStack
from bench.stats import median
from services.common.config import Settings
from services.orchestrator.run.options import default_stride

# Stride 0 asks for none: the default sampling (adaptive, docs/sampling.md),
# scored against every frame (stride 1) and the naive loop in the accuracy tables.
STRIDES = (0, 1, 2, 3, 5)
# The sample and the looped scaling episodes are 25 fps; the scaling runs ask for no stride (0), so
# they get the default sampling (adaptive, base stride default_stride(25)) and the 60-minute
# projection is the default's, from the measured linear rate. Stride 1 is projected from the
# sample-episode runs.
SAMPLE_FPS = 25.0
SCALING_STRIDE = 0
DEFAULT_BASE_STRIDE = default_stride(SAMPLE_FPS)
FULL_LENGTHS_S = (30, 120, 300)
QUICK_LENGTHS_S = (30, 120)


def worker(
    mode: str, video: Path, data_root: Path, stride: int = 1, env: dict[str, str] | None = None, **flags: Any
) -> dict[str, Any]:
    """Run bench.worker in a fresh process; return its JSON (its own VmHWM included)."""
    args = [
        sys.executable,
        "-m",
        "bench.worker",
        mode,
        "--video",
        str(video),
        "--data-root",
        str(data_root),
        "--stride",
        str(stride),
    ]
    for key, value in flags.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(args, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def evaluate(run_dir: str, ground_truth: Path) -> dict[str, Any]:
    from services.evaluation.metrics import evaluate as evaluate_run

    return evaluate_run(Path(run_dir), ground_truth).to_dict()


def parity(micro_dir: str, inproc_dir: str, ground_truth: Path) -> dict[str, Any]:
    """Scores of the two runs, and which scores and output files differ (expected: none)."""
    a, b = evaluate(micro_dir, ground_truth), evaluate(inproc_dir, ground_truth)
    differences = [key for key in a if a[key] != b[key]]
    files = {}
    for name in ("tracks.mot.txt", "identities.json", "screentime.json", "faces.npy"):
        files[name] = (Path(micro_dir) / name).read_bytes() == (Path(inproc_dir) / name).read_bytes()
    return {"identical": not differences, "differences": differences, "identical_files": files, "scores": a}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def compare_modes(sample: Path, work: Path, reps: int, results: dict[str, Any]) -> None:
    """Microservices, in-process and naive at stride 1, interleaved; then the stride sweep (the
    default sampling included)."""
    video, gt, enrol = sample / "episode.mp4", sample / "ground_truth.json", sample / "enrol"
    micro_runs: list[dict[str, Any]] = []
    inproc_runs: list[dict[str, Any]] = []
    naive_runs: list[dict[str, Any]] = []
    micro_root = work / "micro-sample"
    with MicroStack(micro_root, video, enrol) as stack:
        results["micro_startup_s"] = stack.startup_s
        for rep in range(reps):
            log(f"repetition {rep + 1}/{reps}: microservices")
            micro_runs.append(stack.run(1))
            log(f"repetition {rep + 1}/{reps}: in-process")
            inproc = worker("inprocess", video, work / f"inproc-{rep}", 1, enrol=enrol)
            inproc_runs.append({**inproc["runs"][0], "peak_rss_mb": inproc["peak_rss_mb"]})
            log(f"repetition {rep + 1}/{reps}: naive")
            naive = worker("naive", video, work / f"naive-{rep}", 1, facebank_root=micro_root)
            naive_runs.append({**naive["runs"][0], "peak_rss_mb": naive["peak_rss_mb"]})
        strides: dict[str, dict[str, Any]] = {}
        for stride in STRIDES:
            if stride == 1:
                run, wall = micro_runs[0], median(report.walls(micro_runs))
            else:
                log(f"microservices at stride {stride or 'default'}")
                run = stack.run(stride)
                wall = run["wall_s"]
            strides[str(stride)] = {
                "wall_s": wall,
                "x_realtime": 30.0 / wall,
                "projected_min_60": report.projected_minutes(wall, 30.0),
                "eval": evaluate(run["run_dir"], gt),
            }
        results["micro_sample_peak_rss_mb"] = stack.peak_rss_mb()
    video_s = float(json.loads(gt.read_text())["frame_count"]) / float(json.loads(gt.read_text())["fps"])
    for row in strides.values():
        row["x_realtime"] = video_s / row["wall_s"]
        row["projected_min_60"] = report.projected_minutes(row["wall_s"], video_s)
    results["runs"] = {"micro": micro_runs, "inprocess": inproc_runs, "naive": naive_runs}
    results["comparison"] = report.summarise_comparison(video_s, micro_runs, inproc_runs, naive_runs)
    results["comparison"]["inprocess"]["peak_rss_mb"] = median([r["peak_rss_mb"] for r in inproc_runs])
    results["comparison"]["naive"]["peak_rss_mb"] = median([r["peak_rss_mb"] for r in naive_runs])
    results["strides"] = strides
    results["parity"] = parity(micro_runs[0]["run_dir"], inproc_runs[0]["run_dir"], gt)
    results["naive_eval"] = evaluate(naive_runs[0]["run_dir"], gt)


def stage_breakdown(results: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """Seconds per stage on the sample: pipeline (manifest + stages measured alone) vs naive."""
    micro, naive, stages = results["runs"]["micro"], results["runs"]["naive"], results["stages"]
    frames = micro[0]["counts"]["frames_processed"]
    faces = naive[0]["counts"]["faces_embedded"]  # every face the detector returned

    def m(key: str) -> float:
        return median([r["timings_s"][key] for r in micro])

    def n(key: str) -> float:
        return median([r["stage_s"].get(key, 0.0) for r in naive])

    return {
        "decode (alone, OpenCV)": (stages["decode_ms_per_frame"] * frames / 1000, n("decode")),
        "shot-cut histograms (alone)": (stages["shot_cut_ms_per_frame"] * frames / 1000, n("shot_cut")),
        "detect (alone; pipeline batch 8, naive batch 1)": (
            stages["detect_b8_ms_per_frame_max_side_1280"] * frames / 1000,
            n("detect"),
        ),
        "align + quality (+ protobuf in pipeline, alone)": (
            stages["align_quality_proto_ms_per_face"] * faces / 1000,
            n("align_quality"),
        ),
        "embed calls (pipeline: overlapped, sampled faces)": (m("embed_calls_s"), n("embed")),
        "track (alone)": (stages["track_ms_per_frame"] * frames / 1000, n("track")),
        "decode+detect+track+embed stream (wall)": (
            m("detect_track_embed_s"),
            sum(n(k) for k in ("decode", "shot_cut", "detect", "align_quality", "embed", "track")),
        ),
        "cluster + label + screen time": (m("cluster_label_screentime_s"), n("cluster")),
        "write outputs": (m("write_s"), n("write")),
        "total (run_episode / naive loop)": (m("total_s"), median(report.walls(naive))),
    }


def scaling(sample: Path, work: Path, lengths: tuple[int, ...], results: dict[str, Any]) -> None:
    """A fresh stack per length (VmHWM never decreases), one run at SCALING_STRIDE."""
    points = []
    for seconds in lengths:
        video = loop_video(sample / "episode.mp4", work / "videos" / f"loop_{seconds}s.mp4", seconds)
        log(f"scaling: {seconds} s at the default sampling")
        with MicroStack(work / f"micro-scaling-{seconds}", video) as stack:
            run = stack.run(SCALING_STRIDE)
            rss = stack.peak_rss_mb()
        points.append(
            {
                "video_s": float(seconds),
                "stride": SCALING_STRIDE,
                "wall_s": run["wall_s"],
                "peak_rss_mb": rss,
                "counts": run["counts"],
                "timings_s": run["timings_s"],
            }
        )
    results["scaling"] = points
    results["scaling_fit"] = report.scaling_fit(points)
    # The same default on ordinary TV: the sample's talking-head shots looped to the longest length.
    seconds = max(lengths)
    calm = talking_head_video(sample, work / "videos" / "talking_heads.mp4")
    video = loop_video(calm, work / "videos" / f"talking_heads_{seconds}s.mp4", seconds)
    log(f"scaling: {seconds} s of talking-head shots at the default sampling")
    with MicroStack(work / "micro-talking-heads", video) as stack:
        run = stack.run(SCALING_STRIDE)
    results["talking_heads"] = {
        "video_s": float(seconds),
        "wall_s": run["wall_s"],
        "frames_processed": run["counts"]["frames_processed"],
        "projected_min_60": report.projected_minutes(run["wall_s"], float(seconds)),
    }


def scaling_only(sample: Path, work: Path, lengths: tuple[int, ...], out: Path) -> int:
    """Time and memory against episode length, alone: for a quiet moment on a shared machine."""
    results: dict[str, Any] = {"machine": machine(), "default_base_stride": DEFAULT_BASE_STRIDE}
    scaling(sample, work, lengths, results)
    results["machine_load_at_end"] = round(os.getloadavg()[0], 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps(results["scaling_fit"], indent=1))
    return 0


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores (shared; load {load:.1f} at start), Python {sys.version.split()[0]}"


def hard_episode(media: Path, work: Path, results: dict[str, Any]) -> None:
    """The hard episode (docs/evaluation.md) at the default sampling and at stride 1, in one process:
    recall per condition, identities, screen-time error per person, and the default's run time as a
    ratio to the sample's default run measured in the same bench."""
    hard = ensure_hard(work / "hard", media)
    video, gt, enrol = hard / "episode.mp4", hard / "ground_truth.json", hard / "enrol"
    runs = {}
    for stride in (0, 1):
        log(f"hard episode at stride {stride or 'default'}")
        run = worker("inprocess", video, work / f"hard-{stride}", stride, enrol=enrol)["runs"][0]
        runs[str(stride)] = {"wall_s": run["wall_s"], "eval": evaluate(run["run_dir"], gt)}
    log("sample at the default sampling, in one process (the hard episode's cost baseline)")
    sample = work / "sample"
    base = worker("inprocess", sample / "episode.mp4", work / "sample-inproc-0", 0, enrol=sample / "enrol")
    results["hard"] = {"strides": runs, "sample_default_inprocess_wall_s": base["runs"][0]["wall_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 30 s and 2 min only (~10 min)")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results.json/.md here, work in OUT/out")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: 3, --quick: 1)")
    parser.add_argument(
        "--experiments",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="thread and detector-size experiments (default: on in full mode)",
    )
    parser.add_argument(
        "--lengths", default=None, help="scaling episode lengths in seconds, comma-separated (default: by mode)"
    )
    parser.add_argument(
        "--scaling-only",
        action="store_true",
        help="only the scaling runs at the default stride (the 60-minute projection); writes OUT/scaling.json",
    )
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    lengths = tuple(int(s) for s in args.lengths.split(",")) if args.lengths else None
    work = args.out / "out"
    media = Settings.from_env().cache_dir / "media"
    started = time.monotonic()
    if args.scaling_only:
        return scaling_only(ensure_sample(work / "sample", media), work, lengths or FULL_LENGTHS_S, args.out)
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "default_base_stride": DEFAULT_BASE_STRIDE,
        "scaling_stride": SCALING_STRIDE,
    }
    log("building the sample episode (once)")
    sample = ensure_sample(work / "sample", media)
    for stale in work.glob("*"):
        if stale.is_dir() and stale.name not in ("sample", "hard", "videos"):
            shutil.rmtree(stale)
    compare_modes(sample, work, reps, results)
    log("per-stage costs")
    results["stages"] = worker("stages", sample / "episode.mp4", work / "stages")
    results["stage_breakdown"] = stage_breakdown(results)
    scaling(sample, work, lengths or (QUICK_LENGTHS_S if args.quick else FULL_LENGTHS_S), results)
    hard_episode(media, work, results)
    if args.experiments if args.experiments is not None else not args.quick:
        experiments(sample, work, 1 if args.quick else min(reps, 2), results)
    default = results["scaling_fit"]["projected_min_for_60_min"]
    results["targets"] = report.check_targets(
        results["comparison"],
        results["scaling_fit"],
        results["parity"]["identical"],
        default,
    )
    results["bench_wall_s"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    table = report.markdown(results)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    log(f"done in {results['bench_wall_s'] / 60:.1f} min; wrote {args.out / 'results.json'} and results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
