"""What a show's roll-up costs as the show grows: GetShowScreenTime at 3, 10 and 30 episodes.

One real run of the sample episode (stride 5) is made on a fresh local stack; its episode folder is then
cloned into shows of 3, 10 and 30 episodes (the run's face embeddings jittered per clone, so no two
episodes are identical), with the stack stopped while the store is written. Per show size:

- cold: the first GetShowScreenTime (every episode's review log replayed, its embeddings read);
- warm: the median of the next calls (embeddings and figures cached, one review-log read per episode);
- after a review: one episode renamed, then the next call (that episode re-read, the others cached);
- link only: the cross-episode linking itself (shows/links.py) on that many unknown identities.

Ratios are against the 3-episode show measured in the same run.

    python -m bench.shows [--sizes 3,10,30] [--video PATH] [--out bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.cli.stack import LocalStack
from services.orchestrator.shows.links import Unknown, link_unknowns

SOURCE = "source"
WARM_CALLS = 5
JITTER = 0.02  # per-dimension noise on each face embedding of a clone (a clone's identities stay ~0.99 alike)


def _clone(root: Path, ep_id: str, show: str, number: int, rng: np.random.Generator) -> None:
    source = root / "episodes" / SOURCE
    target = root / "episodes" / ep_id
    shutil.copytree(source, target, copy_function=_link_or_copy)
    record = json.loads((target / "episode.json").read_text())
    record.update(ep_id=ep_id, show_id=show, season=1, episode_number=number)
    record["video_uri"] = str(target / "video.mp4")
    record["video"]["uri"] = str(target / "video.mp4")
    (target / "episode.json").write_text(json.dumps(record, indent=2))
    for path in [target / "faces.npy", *target.glob("runs/*/faces.npy")]:
        embeddings = np.load(path)
        jittered = embeddings + rng.normal(scale=JITTER, size=embeddings.shape).astype(np.float32)
        jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
        np.save(path, jittered.astype(np.float32))
    shutil.rmtree(target / "review", ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    """The video is hard-linked (read only, and the largest file); every other file is a copy of its own."""
    if Path(source).suffix == ".mp4":
        try:
            Path(target).hardlink_to(source)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def _timed(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(sizes: list[int], video: Path) -> dict[str, object]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="faceflow-shows-") as tmp:
        root = Path(tmp)
        with LocalStack(root) as stack, stack.channel("orchestrator") as channel:
            orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            orchestrator.CreateEpisode(
                storage_pb2.CreateEpisodeRequest(ep_id=SOURCE, source_path=str(video), show_id="source-show")
            )
            request = orchestrator_pb2.SubmitJobRequest(
                ep_id=SOURCE, options=orchestrator_pb2.RunOptions(stride=5, skip_crops=True)
            )
            final = list(orchestrator.RunEpisode(request))[-1]
            if final.state != orchestrator_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"the source run failed: {final.message}")
        for size in sizes:
            for number in range(1, size + 1):
                _clone(root, f"show{size}-ep{number:02d}", f"show-{size}", number, rng)
        rows = []
        with LocalStack(root) as stack, stack.channel("orchestrator") as channel:
            orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            for size in sizes:
                ask = orchestrator_pb2.GetShowScreenTimeRequest(show_id=f"show-{size}")
                cold = _timed(lambda ask=ask: orchestrator.GetShowScreenTime(ask))
                warm = statistics.median(
                    _timed(lambda ask=ask: orchestrator.GetShowScreenTime(ask)) for _ in range(WARM_CALLS)
                )
                result = orchestrator.GetShowScreenTime(ask)
                unknown = [r for r in result.people if not r.label]
                first = unknown[0].identities[0].identity
                rename = orchestrator_pb2.ReviewOp.Rename(identity_id=first.identity_id, name="Host")
                op = orchestrator_pb2.ReviewOp(rename=rename)
                orchestrator.Review(orchestrator_pb2.ReviewRequest(ep_id=first.ep_id, op=op))
                after_review = _timed(lambda ask=ask: orchestrator.GetShowScreenTime(ask))
                identities = sum(len(r.identities) for r in unknown)
                rows.append(
                    {
                        "episodes": size,
                        "unknown_identities": identities,
                        "unknown_rows": len(unknown),
                        "cold_s": round(cold, 4),
                        "warm_s": round(warm, 4),
                        "after_review_s": round(after_review, 4),
                        "link_only_s": round(_link_only(identities, size, rng), 5),
                    }
                )
    base = rows[0]
    for row in rows:
        for key in ("cold_s", "warm_s", "after_review_s", "link_only_s"):
            row[key.replace("_s", "_vs_first")] = round(row[key] / max(base[key], 1e-9), 2)  # type: ignore[operator]
    return {"video": str(video), "sizes": sizes, "rows": rows}


def _link_only(identities: int, episodes: int, rng: np.random.Generator) -> float:
    """The linking step alone, on as many unit vectors (512-d) spread over as many episodes."""
    vectors = rng.normal(size=(identities, 512))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    unknowns = [Unknown(i % episodes, vectors[i], None) for i in range(identities)]
    return statistics.median(_timed(lambda: link_unknowns(unknowns)) for _ in range(WARM_CALLS))


def markdown(results: dict[str, object]) -> str:
    lines = [
        "# Show roll-up cost (GetShowScreenTime) as the show grows",
        "",
        "Produced by `make bench-shows` (bench/shows.py): clones of one real run of the sample episode.",
        "Ratios are against the smallest show of the same run.",
        "",
        "| episodes | unknown identities | rows | cold s | warm s | after a review s | link only ms "
        "| cold x | warm x |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['episodes']} | {r['unknown_identities']} | {r['unknown_rows']} | {r['cold_s']:.3f} | "
            f"{r['warm_s']:.3f} | {r['after_review_s']:.3f} | {1000 * r['link_only_s']:.2f} | "
            f"{r['cold_vs_first']:.1f} | {r['warm_vs_first']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3,10,30")
    parser.add_argument("--video", type=Path, default=Path("data/sample/episode.mp4"))
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args()
    results = measure([int(s) for s in args.sizes.split(",")], args.video.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shows.json").write_text(json.dumps(results, indent=1))
    (args.out / "shows.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
