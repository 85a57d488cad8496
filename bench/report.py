"""From raw runs to the numbers the issue asks for, the acceptance check and the markdown table.

Pure functions over plain dicts (the shape of bench/results.json), so they are unit-tested
without running anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.stats import fit_line, median, median_ratio, x_realtime

# The issue's acceptance targets.
TARGET_SPEEDUP_VS_NAIVE = 5.0  # stride 1 vs the naive loop (issue #15)
TARGET_MAX_OVERHEAD = 0.15
TARGET_EPISODE_MIN = 60.0
TARGET_MAX_PROJECTED_MIN = 10.0  # issue #15 (was 20 before adaptive sampling)
# "Memory flat": peak RSS of every service at 5 min within this fraction of its 30 s peak. 10 %
# leaves room for allocator noise but not for anything that keeps per-frame data.
TARGET_MAX_RSS_GROWTH = 0.10


def walls(runs: Sequence[dict[str, Any]]) -> list[float]:
    return [float(r["wall_s"]) for r in runs]


def summarise_comparison(
    video_s: float,
    micro: Sequence[dict[str, Any]],
    inprocess: Sequence[dict[str, Any]],
    naive: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Medians per mode and the per-repetition ratios (runs i of each mode ran side by side)."""
    out: dict[str, Any] = {"video_s": video_s, "repetitions": len(micro)}
    for name, runs in (("micro", micro), ("inprocess", inprocess), ("naive", naive)):
        wall = median(walls(runs))
        out[name] = {"wall_s": wall, "x_realtime": x_realtime(video_s, wall), "walls_s": walls(runs)}
    out["microservice_overhead"] = median_ratio(walls(micro), walls(inprocess)) - 1.0
    out["speedup_vs_naive"] = median_ratio(walls(naive), walls(micro))
    out["micro"]["faces_embedded_per_s"] = median(
        [r["counts"]["faces_embedded"] / max(r["timings_s"]["embed_calls_s"], 1e-9) for r in micro]
    )
    out["naive"]["faces_embedded_per_s"] = median(
        [r["counts"]["faces_embedded"] / max(r["stage_s"]["embed"], 1e-9) for r in naive]
    )
    return out


def scaling_fit(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Line through (minutes of video, wall s); RSS growth from the shortest to the longest episode."""
    minutes = [p["video_s"] / 60.0 for p in points]
    line = fit_line(minutes, [p["wall_s"] for p in points])
    shortest = min(points, key=lambda p: p["video_s"])
    longest = max(points, key=lambda p: p["video_s"])
    growth = {
        name: (longest["peak_rss_mb"][name] - mb) / mb
        for name, mb in shortest["peak_rss_mb"].items()
        if mb > 0 and name in longest["peak_rss_mb"]
    }
    return {
        "stride": points[0]["stride"],
        "s_per_video_min": line.slope,
        "intercept_s": line.intercept,
        "r2": line.r2,
        "projected_min_for_60_min": line.at(TARGET_EPISODE_MIN) / 60.0,
        "rss_growth": growth,
        "rss_short_mb": shortest["peak_rss_mb"],
        "rss_long_mb": longest["peak_rss_mb"],
        "short_s": shortest["video_s"],
        "long_s": longest["video_s"],
    }


def projected_minutes(wall_s: float, video_s: float, episode_min: float = TARGET_EPISODE_MIN) -> float:
    """Minutes for an episode of episode_min at the measured rate (proportional: no fixed cost)."""
    return wall_s / video_s * episode_min


def check_targets(
    summary: dict[str, Any], scaling: dict[str, Any] | None, parity_identical: bool, default_projection_min: float
) -> dict[str, dict[str, Any]]:
    """Each acceptance target: what it asks, what we measured, whether it is met."""
    targets = {
        "speedup_vs_naive_stride1": {
            "target": f">= {TARGET_SPEEDUP_VS_NAIVE:.1f}x",
            "measured": round(summary["speedup_vs_naive"], 2),
            "met": summary["speedup_vs_naive"] >= TARGET_SPEEDUP_VS_NAIVE,
        },
        "microservice_overhead": {
            "target": f"<= {TARGET_MAX_OVERHEAD:.0%}",
            "measured": f"{summary['microservice_overhead']:+.1%}",
            "met": summary["microservice_overhead"] <= TARGET_MAX_OVERHEAD,
        },
        "identical_accuracy": {"target": "identical", "measured": parity_identical, "met": parity_identical},
        "default_stride_60min_projection": {
            "target": f"<= {TARGET_MAX_PROJECTED_MIN:.0f} min",
            "measured": round(default_projection_min, 1),
            "met": default_projection_min <= TARGET_MAX_PROJECTED_MIN,
        },
    }
    if scaling is not None:
        worst = max(scaling["rss_growth"].values(), default=0.0)
        targets["memory_flat"] = {
            "target": f"peak RSS growth {scaling['short_s']:.0f} s -> {scaling['long_s']:.0f} s "
            f"<= {TARGET_MAX_RSS_GROWTH:.0%}",
            "measured": f"{worst:+.1%} (worst service)",
            "met": worst <= TARGET_MAX_RSS_GROWTH,
        }
    return targets


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} %"


def _stride_label(stride: str) -> str:
    return "default" if stride == "0" else stride


def accuracy_modes(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The evaluations the accuracy tables compare, where measured: the default sampling (stride 0),
    every frame (stride 1) and the naive loop (every frame, no batching)."""
    strides = results.get("strides") or {}
    evals = {
        "default": (strides.get("0") or {}).get("eval"),
        "stride 1": (strides.get("1") or {}).get("eval"),
        "naive": results.get("naive_eval"),
    }
    return {mode: e for mode, e in evals.items() if e}


def accuracy_markdown(modes: dict[str, dict[str, Any]]) -> list[str]:
    """One row per (mode, person): the mode's recall and IDF1, the person's screen-time error; then
    the recall of every scene tag per mode (e.g. "small-fast": a small face crossing fast)."""
    if not modes:
        return []
    lines = [
        "| mode | recall | IDF1 | person | GT s | predicted s | screen-time error |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for mode, e in modes.items():
        for p in e.get("persons", []):
            lines.append(
                f"| {mode} | {_fmt(e['recall'], 3)} | {_fmt(e['idf1'], 3)} | {p['person_id']} | "
                f"{_fmt(p['gt_seconds'])} | {_fmt(p['predicted_seconds'])} | {_pct(p['screentime_rel_error'])} |"
            )
    tags = sorted({tag for e in modes.values() for tag in e.get("subsets") or {}})
    if tags:
        lines += ["", "| scene tag | " + " | ".join(f"recall {m}" for m in modes) + " |"]
        lines.append("|---|" + "---:|" * len(modes))
        for tag in tags:
            recalls = [((e.get("subsets") or {}).get(tag) or {}).get("recall") for e in modes.values()]
            lines.append(f"| {tag} | " + " | ".join(_fmt(r, 3) for r in recalls) + " |")
    return [*lines, ""]


def hard_markdown(hard: dict[str, Any] | None) -> list[str]:
    """The hard episode per condition (issue #19): the same tables as the sample's, and its cost."""
    if not hard:
        return []
    label = {k: "default" if k == "0" else f"stride {k}" for k in hard["strides"]}
    modes = {label[k]: v["eval"] for k, v in hard["strides"].items()}
    lines = ["## The hard episode (small faces, hands, compression, blur, low light)", ""]
    for stride, row in hard["strides"].items():
        e = row["eval"]
        lines.append(
            f"- {label[stride]}: recall {_fmt(e['recall'], 3)}, IDF1 {_fmt(e['idf1'], 3)}, "
            f"{e['predicted_identity_count']} identities for {e['true_person_count']} people, "
            f"wall {_fmt(row['wall_s'], 1)} s"
        )
    default_wall = hard["strides"]["0"]["wall_s"]
    lines += [
        f"- the default's run time over the sample's default run (one process, same bench): "
        f"{default_wall / hard['sample_default_inprocess_wall_s']:.2f}x",
        "",
        *accuracy_markdown(modes),
    ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The human summary written to bench/results.md and printed at the end of a bench run."""
    s = results["comparison"]
    lines = [
        f"# faceflow bench ({results['mode']}, {s['repetitions']} repetition(s), medians)",
        "",
        f"Sample episode: {s['video_s']:.0f} s, 1280x720, 25 fps, stride 1. Machine: {results['machine']}.",
        "",
        "| mode | wall s | x realtime | faces embedded/s |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (
        ("micro", "microservices (5 processes, gRPC)"),
        ("inprocess", "same pipeline, one process"),
        ("naive", "naive sequential baseline"),
    ):
        m = s[name]
        lines.append(
            f"| {label} | {_fmt(m['wall_s'], 1)} | {_fmt(m['x_realtime'])} | {_fmt(m.get('faces_embedded_per_s'), 1)} |"
        )
    lines += [
        "",
        f"- microservice overhead vs in-process: **{s['microservice_overhead']:+.1%}**",
        f"- speedup vs naive: **{s['speedup_vs_naive']:.2f}x**",
        "",
    ]
    if results.get("stage_breakdown"):
        lines += ["| stage | micro (pipeline) s | naive s |", "|---|---:|---:|"]
        for stage, (micro_s, naive_s) in results["stage_breakdown"].items():
            lines.append(f"| {stage} | {_fmt(micro_s)} | {_fmt(naive_s)} |")
        lines.append("")
    if results.get("strides"):
        lines += [
            "| stride | wall s | x realtime | 60 min projected (min) | recall | precision | IDF1 | BCubed F | "
            "screen-time rel err |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for stride, row in sorted(results["strides"].items(), key=lambda kv: int(kv[0])):
            e = row["eval"]
            lines.append(
                f"| {_stride_label(stride)} | {_fmt(row['wall_s'], 1)} | {_fmt(row['x_realtime'])} | "
                f"{_fmt(row['projected_min_60'], 1)} | {_fmt(e['recall'], 3)} | {_fmt(e['precision'], 3)} | "
                f"{_fmt(e['idf1'], 3)} | {_fmt(e['bcubed_f'], 3)} | {_fmt(e['mean_abs_screentime_rel_error'], 3)} |"
            )
        lines.append("")
    lines += accuracy_markdown(accuracy_modes(results))
    if results.get("scaling"):
        lines += [
            "| episode | stride | wall s | x realtime | peak RSS MB (detector / embedder / orchestrator / "
            "tracker / storage) |",
            "|---:|---:|---:|---:|---|",
        ]
        for p in results["scaling"]:
            r = p["peak_rss_mb"]
            rss = " / ".join(_fmt(r.get(n), 0) for n in ("detector", "embedder", "orchestrator", "tracker", "storage"))
            lines.append(
                f"| {p['video_s']:.0f} s | {p['stride']} | {_fmt(p['wall_s'], 1)} | "
                f"{_fmt(p['video_s'] / p['wall_s'])} | {rss} |"
            )
        fit = results["scaling_fit"]
        lines += [
            "",
            f"- linear fit at stride {fit['stride']}: {fit['s_per_video_min']:.1f} s per minute of video "
            f"(+{fit['intercept_s']:.1f} s, r^2 {fit['r2']:.3f}); 60 min projected: "
            f"{fit['projected_min_for_60_min']:.1f} min",
            "",
        ]
    if results.get("talking_heads"):
        calm = results["talking_heads"]
        lines += [
            f"- talking-head shots only (the sample's untagged shots with faces >= 64 px, looped to "
            f"{calm['video_s']:.0f} s): {calm['wall_s']:.1f} s, {calm['frames_processed']} frames processed; "
            f"60 min projected: {calm['projected_min_60']:.1f} min",
            "",
        ]
    if results.get("parity"):
        p = results["parity"]
        lines += [
            f"- accuracy parity (microservices vs in-process, sample, stride 1): "
            f"{'identical' if p['identical'] else 'DIFFERENT: ' + ', '.join(p['differences'])}",
            "",
        ]
    lines += hard_markdown(results.get("hard"))
    if results.get("targets"):
        lines += ["| target | asked | measured | met |", "|---|---|---|---|"]
        for name, t in results["targets"].items():
            lines.append(f"| {name} | {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")
    return "\n".join(lines)
