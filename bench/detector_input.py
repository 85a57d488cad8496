"""`python -m bench.detector_input [--video PATH] [--truth PATH] [--reps N] --out DIR`: RetinaFace cost
and recall by network input size (issue #15: pick the input size per shot, batch, tune threads).

Cost: the detector as the service builds it (RetinaFaceSettings defaults but max_side and max_batch)
on 1280x720 frames of the sample episode, at max_side 1280/960/640/480, batch 1 and 8, onnxruntime
intra-op threads 1 and 2; all 16 settings interleaved per repetition, medians of wall and CPU time
(all threads) per frame, and of the model call alone. Recall: on every --every-th frame, confident
detections (and confident + tracker candidates) matched (IoU >= 0.3) to the ground-truth faces with
>= half the face visible, binned by the face's height in native 720p pixels; plus the faces found on
a few named frames. Writes DIR/detector_input.json and DIR/detector_input.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.stats import median, median_ratio
from services.common.backends import OnnxBackend
from services.common.boxes import iou_matrix
from services.common.model_manifest import ModelManifest
from services.detector.retinaface import MODEL_NAME, RetinaFaceDetector, RetinaFaceSettings, network_size

MODEL = Path(".cache/faceflow/models/retinaface_mnet025.onnx")
VIDEO = Path("data/sample/episode.mp4")
SIDES = (1280, 960, 640, 480)
BATCHES = (1, 8)
THREADS = (1, 2)
NAMED_FRAMES = (0, 120, 250, 420, 500, 700, 800, 900, 1000, 1080)
HEIGHT_BINS = (0, 35, 60, 100, 160, 300, 10_000)  # native-720p face height bins (px)
MATCH_IOU = 0.3
MIN_VISIBLE = 0.5


class TimedBackend:
    """An InferenceBackend wrapper that adds up the wall time spent in the model call."""

    def __init__(self, inner: OnnxBackend) -> None:
        self._inner = inner
        self.name, self.device = inner.name, inner.device
        self.seconds = 0.0

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = self._inner.infer(batch)
        self.seconds += time.perf_counter() - t0
        return out


def read_frames(video: Path, wanted: Iterable[int]) -> dict[int, np.ndarray]:
    todo = set(wanted)
    frames: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(video))
    index = 0
    while todo and cap.grab():
        if index in todo:
            ok, image = cap.retrieve()
            if ok:
                frames[index] = image
            todo.discard(index)
        index += 1
    cap.release()
    return frames


def truth_by_frame(truth: dict[str, Any]) -> dict[int, list[tuple[np.ndarray, float]]]:
    """frame -> [(box xyxy, visible fraction)]."""
    out: dict[int, list[tuple[np.ndarray, float]]] = {}
    for face in truth["faces"]:
        out.setdefault(int(face["frame"]), []).append((np.asarray(face["box"], np.float32), face["visible_fraction"]))
    return out


def match(gt_boxes: np.ndarray, det_boxes: np.ndarray) -> tuple[np.ndarray, int]:
    """Greedy IoU matching: (which GT faces were found, detections matching no GT face)."""
    found = np.zeros(len(gt_boxes), dtype=bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return found, len(det_boxes)
    iou = iou_matrix(gt_boxes, det_boxes)
    used: set[int] = set()
    for g, d in sorted(np.argwhere(iou >= MATCH_IOU).tolist(), key=lambda gd: -iou[gd[0], gd[1]]):
        if not found[g] and d not in used:
            found[g] = True
            used.add(d)
    return found, len(det_boxes) - len(used)


def gt_boxes(faces: list[tuple[np.ndarray, float]], min_visible: float) -> np.ndarray:
    return np.asarray([box for box, vis in faces if vis >= min_visible], np.float32).reshape(-1, 4)


def time_settings(
    detectors: dict[tuple[int, int, int], RetinaFaceDetector],
    backends: dict[int, TimedBackend],
    frames: Sequence[np.ndarray],
    reps: int,
) -> list[dict[str, Any]]:
    keys = list(detectors)
    wall: dict[tuple[int, int, int], list[float]] = {k: [] for k in keys}
    cpu: dict[tuple[int, int, int], list[float]] = {k: [] for k in keys}
    infer: dict[tuple[int, int, int], list[float]] = {k: [] for k in keys}
    for detector in detectors.values():  # warm-up: session init, priors cache, memory arenas
        detector.detect_batch(frames[: detector.settings.max_batch])
    for rep in range(reps):
        for key in keys[rep % len(keys) :] + keys[: rep % len(keys)]:
            backend = backends[key[2]]
            backend.seconds = 0.0
            w0, c0 = time.perf_counter(), time.process_time()
            detectors[key].detect_batch(frames)
            wall[key].append((time.perf_counter() - w0) / len(frames))
            cpu[key].append((time.process_time() - c0) / len(frames))
            infer[key].append(backend.seconds / len(frames))
        print(f"timing repetition {rep + 1}/{reps} done", flush=True)
    base = (1280, 1, 1)
    rows = []
    for key in keys:
        side, batch, threads = key
        net_h, net_w = network_size(720, 1280, side)
        rows.append(
            {
                "max_side": side,
                "network_input": f"{net_w}x{net_h}",
                "batch": batch,
                "threads": threads,
                "wall_ms_per_frame": 1000 * median(wall[key]),
                "cpu_ms_per_frame": 1000 * median(cpu[key]),
                "model_ms_per_frame": 1000 * median(infer[key]),
                "wall_ratio": median_ratio(wall[key], wall[base]),
                "cpu_ratio": median_ratio(cpu[key], cpu[base]),
            }
        )
    return rows


def recall_by_height(
    detectors: dict[int, RetinaFaceDetector],
    frames: dict[int, np.ndarray],
    truth: dict[int, list[tuple[np.ndarray, float]]],
) -> list[dict[str, Any]]:
    rows = []
    for side, detector in detectors.items():
        bins = len(HEIGHT_BINS) - 1
        total, found, found_cand = np.zeros(bins, int), np.zeros(bins, int), np.zeros(bins, int)
        false_pos = 0
        for index, frame in frames.items():
            gt = gt_boxes(truth.get(index, []), MIN_VISIBLE)
            which = np.clip(np.digitize(gt[:, 3] - gt[:, 1], HEIGHT_BINS) - 1, 0, bins - 1)
            dets = detector.detect_batch([frame], include_candidates=True)[0]
            confident = dets.xyxy[dets.confident]
            hit, _ = match(gt, confident)
            hit_cand, _ = match(gt, dets.xyxy)
            # False positives: confident boxes on no face at all (a mostly hidden face is not one).
            false_pos += match(gt_boxes(truth.get(index, []), 0.0), confident)[1]
            np.add.at(total, which, 1)
            np.add.at(found, which, hit.astype(int))
            np.add.at(found_cand, which, hit_cand.astype(int))
        rows.append(
            {
                "max_side": side,
                "bins_px": [f"{HEIGHT_BINS[i]}-{HEIGHT_BINS[i + 1]}" for i in range(bins)],
                "faces": total.tolist(),
                "found": found.tolist(),
                "found_with_candidates": found_cand.tolist(),
                "false_positives": false_pos,
                "frames": len(frames),
            }
        )
    return rows


def named_frames(
    detectors: dict[int, RetinaFaceDetector],
    frames: dict[int, np.ndarray],
    truth: dict[int, list[tuple[np.ndarray, float]]],
) -> list[dict[str, Any]]:
    rows = []
    for index, frame in sorted(frames.items()):
        gt = gt_boxes(truth.get(index, []), MIN_VISIBLE)
        row: dict[str, Any] = {"frame": index, "gt_heights_px": [round(float(h)) for h in gt[:, 3] - gt[:, 1]]}
        for side, detector in detectors.items():
            dets = detector.detect(frame)
            hit, _ = match(gt, dets.xyxy)
            extra = match(gt_boxes(truth.get(index, []), 0.0), dets.xyxy)[1]
            row[str(side)] = {"found": int(hit.sum()), "detections": len(dets), "unmatched": extra}
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# RetinaFace cost and recall by input size (1280x720 frames)",
        "",
        f"{report['timing_frames']} frames per measurement, {report['reps']} interleaved repetitions; ratios are",
        "medians of per-repetition ratios to max_side 1280, batch 1, 1 thread. CPU = all threads of the process.",
        "",
        "| max_side | input | batch | threads | ms/frame wall | ms/frame CPU | model call ms/frame | wall ratio |"
        " CPU ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["timing"]:
        lines.append(
            f"| {r['max_side']} | {r['network_input']} | {r['batch']} | {r['threads']} | {r['wall_ms_per_frame']:.1f} |"
            f" {r['cpu_ms_per_frame']:.1f} | {r['model_ms_per_frame']:.1f} | {r['wall_ratio']:.2f} |"
            f" {r['cpu_ratio']:.2f} |"
        )
    rec = report["recall"]
    lines += [
        "",
        f"## Faces found by native face height ({rec[0]['frames']} frames, every {report['every']}th; faces >= "
        f"{MIN_VISIBLE:.0%} visible; IoU >= {MATCH_IOU})",
        "",
        "found confident / found incl. tracker candidates / faces in the bin",
        "",
        "| max_side | " + " | ".join(f"{b} px" for b in rec[0]["bins_px"]) + " | unmatched confident |",
        "| --- | " + " | ".join("---" for _ in rec[0]["bins_px"]) + " | --- |",
    ]
    for r in rec:
        cells = [f"{f}/{c}/{t}" for f, c, t in zip(r["found"], r["found_with_candidates"], r["faces"], strict=True)]
        lines.append(f"| {r['max_side']} | " + " | ".join(cells) + f" | {r['false_positives']} |")
    lines += [
        "",
        "## Named frames: confident faces found (of GT faces >= half visible)",
        "",
        "| frame | GT heights px | " + " | ".join(str(s) for s in SIDES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in SIDES) + " |",
    ]
    for r in report["named_frames"]:
        cells = [f"{r[str(s)]['found']}/{len(r['gt_heights_px'])} (+{r[str(s)]['unmatched']})" for s in SIDES]
        lines.append(f"| {r['frame']} | {r['gt_heights_px']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.detector_input", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--truth", type=Path, help="default: ground_truth.json beside the video")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--timing-frames", type=int, default=16, help="frames per timed detect_batch call set")
    parser.add_argument("--every", type=int, default=5, help="recall on every n-th frame")
    args = parser.parse_args(argv)
    truth = json.loads((args.truth or args.video.with_name("ground_truth.json")).read_text())
    by_frame = truth_by_frame(truth)
    count = int(truth["frame_count"])
    timing_idx = np.linspace(0, count - 1, args.timing_frames).round().astype(int).tolist()
    recall_idx = list(range(0, count, args.every))
    named_idx = [i for i in NAMED_FRAMES if i < count]
    frames = read_frames(args.video, set(timing_idx) | set(recall_idx) | set(named_idx))
    if any(f.shape[:2] != (720, 1280) for f in frames.values()):
        raise SystemExit(f"{args.video} is not 1280x720")

    spec = ModelManifest.load(args.model.parent / "manifest.json").get(MODEL_NAME)
    backends = {t: TimedBackend(OnnxBackend(args.model, name=f"retinaface-t{t}", threads=t)) for t in THREADS}
    base = RetinaFaceSettings()
    detectors = {
        (side, batch, threads): RetinaFaceDetector(
            backends[threads], replace(base, max_side=side, max_batch=batch), spec
        )
        for threads in THREADS
        for batch in BATCHES
        for side in SIDES
    }
    timing = time_settings(detectors, backends, [frames[i] for i in timing_idx], args.reps)
    by_side = {side: detectors[(side, 1, 2)] for side in SIDES}
    report = {
        "video": str(args.video),
        "model": str(args.model),
        "reps": args.reps,
        "timing_frames": len(timing_idx),
        "every": args.every,
        "timing": timing,
        "recall": recall_by_height(by_side, {i: frames[i] for i in recall_idx}, by_frame),
        "named_frames": named_frames(by_side, {i: frames[i] for i in named_idx}, by_frame),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detector_input.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "detector_input.md").write_text(markdown(report))
    print((args.out / "detector_input.md").read_text())


if __name__ == "__main__":
    main()
