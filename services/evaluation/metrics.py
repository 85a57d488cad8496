"""Score a faceflow run against sample-episode ground truth: detection, tracking, identities, screen time.

Reads a run's output contract and the sample episode's ground truth (services/evaluation/inputs.py).

Rules, chosen so the numbers mean what a viewer would expect:
- Only processed frames are scored (0, stride, 2*stride...; stride from manifest settings.stride).
- A GT face is *required* when visible_fraction >= 0.5. Less visible faces (behind an occluder,
  mostly outside the frame) are neither required nor penalised: a detection matching one is ignored.
- Matching is one-to-one per frame, Hungarian on IoU >= 0.5, required faces first, then the less
  visible ones (so a box on the hidden face of a crossing is ignored rather than a false positive).
- GT tracks for MOTA/IDF1/ID switches are (person, shot): a tracker is not expected to carry a
  track across a hard cut; re-identification across shots is scored by the identity metrics.
- An identity belongs to the person who owns the majority of its matched faces; a person's
  predicted screen time is the sum over the identities that belong to them.
- Scene subsets: every tag on a GT shot (ground_truth.json shots[].tags, e.g. "occlusion") gets the
  detection and tracking metrics again over the frames of the shots carrying it, with an accumulator
  of its own (so an ID switch is charged to the subset where it happens).
- A track spans a cut when its first and last frames lie in different GT shots; it must never happen.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from services.evaluation.inputs import GroundTruth, RunBox, RunOutput, load_ground_truth, load_run

MATCH_IOU = 0.5  # a detection matches a GT face from this IoU on
REQUIRED_VISIBLE_FRACTION = 0.5  # GT faces at least this visible must be found


@dataclass
class TrackingScores:
    """Detection and tracking metrics over a set of frames (the episode, or a tagged scene subset)."""

    frames_evaluated: int
    gt_faces_required: int
    true_positives: int
    false_positives: int
    recall: float | None
    precision: float | None
    idf1: float | None
    mota: float | None
    id_switches: int
    fragmentations: int


@dataclass
class PersonReport:
    person_id: str
    name: str
    gt_seconds: float
    predicted_seconds: float
    screentime_rel_error: float | None  # (predicted - gt) / gt
    identities: list[str]  # identities that belong to this person (majority)
    enrolled: bool
    label_coverage: float | None = None  # fraction of GT screen time carrying the right label
    wrong_label_seconds: float | None = None  # GT screen time carrying another name


@dataclass
class EvalReport:
    frames_evaluated: int
    stride: int
    gt_faces_required: int
    gt_faces_ignored: int
    detections: int
    true_positives: int
    false_positives: int
    ignored_detections: int
    recall: float | None
    precision: float | None
    idf1: float | None
    id_switches: int
    fragmentations: int
    mota: float | None
    true_person_count: int
    predicted_identity_count: int
    bcubed_precision: float | None
    bcubed_recall: float | None
    bcubed_f: float | None
    mean_abs_screentime_rel_error: float | None
    unenrolled_labelled_seconds: float  # screen time of people without enrolment that got a name
    persons: list[PersonReport] = field(default_factory=list)
    tracks_spanning_cut: int = 0  # output tracks whose frames straddle a GT shot boundary (must be 0)
    cut_spanning_track_ids: list[int] = field(default_factory=list)
    subsets: dict[str, TrackingScores] = field(default_factory=dict)  # scene tag -> the metrics on its frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        """A terminal summary: headline metrics, then one line per person."""

        def f(value: float | None, digits: int = 3) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:+.1f}"  # a signed percentage

        lines = [
            f"frames evaluated      {self.frames_evaluated} (stride {self.stride})",
            f"GT faces              {self.gt_faces_required} required, {self.gt_faces_ignored} ignored (<50% visible)",
            f"detections            {self.detections}: TP {self.true_positives}, FP {self.false_positives}, "
            f"ignored {self.ignored_detections}",
            f"recall / precision    {f(self.recall)} / {f(self.precision)}",
            f"IDF1 / MOTA           {f(self.idf1)} / {f(self.mota)}",
            f"ID switches / frags   {self.id_switches} / {self.fragmentations}",
            f"tracks spanning a cut {self.tracks_spanning_cut}"
            + (f" (tracks {', '.join(map(str, self.cut_spanning_track_ids))})" if self.cut_spanning_track_ids else ""),
            f"identities            {self.predicted_identity_count} predicted for {self.true_person_count} people",
            f"BCubed P / R / F      {f(self.bcubed_precision)} / {f(self.bcubed_recall)} / {f(self.bcubed_f)}",
            f"screen time error %   {pct(self.mean_abs_screentime_rel_error).lstrip('+')} (mean |error %| over people)",
            f"unenrolled labelled   {self.unenrolled_labelled_seconds:.2f} s",
            "",
            f"{'person':20s} {'GT s':>7s} {'pred s':>7s} {'error %':>8s} {'label cov':>9s} {'wrong s':>7s}  identities",
        ]
        for p in self.persons:
            lines.append(
                f"{p.person_id:20s} {p.gt_seconds:7.2f} {p.predicted_seconds:7.2f} "
                f"{pct(p.screentime_rel_error):>8s} {f(p.label_coverage):>9s} {f(p.wrong_label_seconds, 2):>7s}  "
                f"{','.join(p.identities) or '-'}"
            )
        if self.subsets:
            lines += [
                "",
                f"{'scenes':20s} {'frames':>6s} {'GT req':>6s} {'recall':>6s} {'prec':>6s} {'IDF1':>6s} "
                f"{'MOTA':>6s} {'IDsw':>5s} {'frags':>5s}",
            ]
            for tag, sub in sorted(self.subsets.items()):
                lines.append(
                    f"{tag:20s} {sub.frames_evaluated:6d} {sub.gt_faces_required:6d} {f(sub.recall):>6s} "
                    f"{f(sub.precision):>6s} {f(sub.idf1):>6s} {f(sub.mota):>6s} {sub.id_switches:5d} "
                    f"{sub.fragmentations:5d}"
                )
        return "\n".join(lines)


def iou_matrix(a: list[tuple[float, ...]], b: list[tuple[float, ...]]) -> np.ndarray:
    """(len(a), len(b)) IoU of x1y1x2y2 boxes."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    aa, bb = np.asarray(a, dtype=np.float64)[:, None, :], np.asarray(b, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(aa[..., 2], bb[..., 2]) - np.maximum(aa[..., 0], bb[..., 0]), 0, None)
    ih = np.clip(np.minimum(aa[..., 3], bb[..., 3]) - np.maximum(aa[..., 1], bb[..., 1]), 0, None)
    inter = iw * ih
    area_a = (aa[..., 2] - aa[..., 0]) * (aa[..., 3] - aa[..., 1])
    area_b = (bb[..., 2] - bb[..., 0]) * (bb[..., 3] - bb[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match(iou: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-IoU one-to-one pairs with IoU >= MATCH_IOU."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-np.where(iou >= MATCH_IOU, iou, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= MATCH_IOU]


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _norm(label: str) -> str:
    return re.sub(r"[\s\-]+", "_", label.strip().lower())


def _bcubed(pairs: list[tuple[str, str]]) -> tuple[float | None, float | None, float | None]:
    """BCubed precision, recall, F of (cluster, person) items."""
    if not pairs:
        return None, None, None
    joint = Counter(pairs)
    clusters = Counter(c for c, _ in pairs)
    persons = Counter(p for _, p in pairs)
    n = len(pairs)
    precision = sum(k * k / clusters[c] for (c, _), k in joint.items()) / n
    recall = sum(k * k / persons[p] for (_, p), k in joint.items()) / n
    return precision, recall, 2 * precision * recall / (precision + recall)


class _Tally:
    """Counts and a motmetrics accumulator over the frames fed to it."""

    def __init__(self) -> None:
        import motmetrics as mm  # heavy import (pandas), only when scoring

        self.accumulator = mm.MOTAccumulator(auto_id=False)
        self.frames = self.required = self.ignored = self.detections = 0
        self.tp = self.fp = self.ignored_dets = 0

    def add(
        self,
        frame: int,
        gt_tracks: list[int],
        hyp_tracks: list[int],
        distances: np.ndarray,
        counts: tuple[int, int, int, int, int, int],
    ) -> None:
        required, ignored, detections, tp, fp, ignored_dets = counts
        self.frames += 1
        self.required += required
        self.ignored += ignored
        self.detections += detections
        self.tp += tp
        self.fp += fp
        self.ignored_dets += ignored_dets
        self.accumulator.update(gt_tracks, hyp_tracks, distances, frameid=frame)

    def scores(self) -> TrackingScores:
        import motmetrics as mm

        if self.frames == 0:  # a subset the stride skipped entirely
            return TrackingScores(0, 0, 0, 0, None, None, None, None, 0, 0)
        summary = mm.metrics.create().compute(
            self.accumulator, metrics=["idf1", "num_switches", "num_fragmentations", "mota"], name="run"
        )

        def metric(name: str) -> float | None:
            value = float(summary[name].iloc[0])
            return None if math.isnan(value) else value

        return TrackingScores(
            frames_evaluated=self.frames,
            gt_faces_required=self.required,
            true_positives=self.tp,
            false_positives=self.fp,
            recall=_ratio(self.tp, self.required),
            precision=_ratio(self.tp, self.tp + self.fp),
            idf1=metric("idf1"),
            mota=metric("mota"),
            id_switches=int(summary["num_switches"].iloc[0]),
            fragmentations=int(summary["num_fragmentations"].iloc[0]),
        )


def tracks_spanning_cuts(boxes: dict[int, list[RunBox]], shot_starts: tuple[int, ...]) -> list[int]:
    """Ids of the tracks whose first and last frames lie in different shots."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for frame, frame_boxes in boxes.items():
        for box in frame_boxes:
            first[box.track_id] = min(first.get(box.track_id, frame), frame)
            last[box.track_id] = max(last.get(box.track_id, frame), frame)
    starts = np.asarray(shot_starts)
    return sorted(
        t
        for t in first
        if np.searchsorted(starts, first[t], side="right") != np.searchsorted(starts, last[t], side="right")
    )


def evaluate(run_dir: Path, ground_truth_path: Path) -> EvalReport:
    """Score the run in run_dir against ground_truth.json (see the module docstring for the rules)."""
    gt = load_ground_truth(ground_truth_path)
    run = load_run(run_dir)
    frames = range(0, gt.frame_count, run.stride)
    whole = _Tally()
    subsets = {tag: _Tally() for tag in sorted(gt.tag_frames)}
    matched: list[tuple[str, int]] = []  # (person_id, track_id) of every true positive
    person_frames: Counter[str] = Counter()
    for frame in frames:
        faces = gt.faces.get(frame, [])
        required = [g for g in faces if g.visible_fraction >= REQUIRED_VISIBLE_FRACTION]
        optional = [g for g in faces if g.visible_fraction < REQUIRED_VISIBLE_FRACTION]
        dets = run.boxes.get(frame, [])
        person_frames.update(g.person_id for g in required)
        iou_req = iou_matrix([g.box for g in required], [d.box for d in dets])
        pairs = _match(iou_req)
        used = {c for _, c in pairs}
        rest = [c for c in range(len(dets)) if c not in used]
        iou_opt = iou_matrix([g.box for g in optional], [dets[c].box for c in rest])
        dropped = {rest[c] for _, c in _match(iou_opt)}
        kept = [c for c in range(len(dets)) if c not in dropped]
        matched.extend((required[r].person_id, dets[c].track_id) for r, c in pairs)
        distances = 1.0 - iou_req[:, kept] if kept else np.empty((len(required), 0))
        distances = np.where(distances <= 1.0 - MATCH_IOU, distances, np.nan)
        update = (
            frame,
            [g.track for g in required],
            [dets[c].track_id for c in kept],
            distances,
            (len(required), len(optional), len(dets), len(pairs), len(kept) - len(pairs), len(dropped)),
        )
        whole.add(*update)
        for tag, tally in subsets.items():
            if frame in gt.tag_frames[tag]:
                tally.add(*update)
    scores = whole.scores()
    spanning = tracks_spanning_cuts(run.boxes, gt.shot_starts)

    def identity(track_id: int) -> str:
        return run.identity_of_track.get(track_id, f"track:{track_id}")

    bp, br, bf = _bcubed([(identity(t), p) for p, t in matched])
    seconds_per_frame = run.stride / gt.fps
    owner: dict[str, str] = {}
    for ident, counts in _counts_by_identity(matched, identity).items():
        owner[ident] = counts.most_common(1)[0][0]
    persons = _person_reports(gt, run, matched, identity, owner, person_frames, seconds_per_frame)
    errors = [abs(p.screentime_rel_error) for p in persons if p.screentime_rel_error is not None]
    unenrolled = sum(seconds_per_frame for p, t in matched if p not in gt.enrolled and run.labels.get(identity(t)))
    return EvalReport(
        frames_evaluated=len(frames),
        stride=run.stride,
        gt_faces_required=whole.required,
        gt_faces_ignored=whole.ignored,
        detections=whole.detections,
        true_positives=whole.tp,
        false_positives=whole.fp,
        ignored_detections=whole.ignored_dets,
        recall=scores.recall,
        precision=scores.precision,
        idf1=scores.idf1,
        id_switches=scores.id_switches,
        fragmentations=scores.fragmentations,
        mota=scores.mota,
        true_person_count=len(person_frames),
        predicted_identity_count=len(run.labels),
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f=bf,
        mean_abs_screentime_rel_error=float(np.mean(errors)) if errors else None,
        unenrolled_labelled_seconds=round(unenrolled, 6),
        persons=persons,
        tracks_spanning_cut=len(spanning),
        cut_spanning_track_ids=spanning,
        subsets={tag: tally.scores() for tag, tally in subsets.items()},
    )


def _counts_by_identity(matched: list[tuple[str, int]], identity: Callable[[int], str]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for person, track in matched:
        counts[identity(track)][person] += 1
    return counts


def _person_reports(
    gt: GroundTruth,
    run: RunOutput,
    matched: list[tuple[str, int]],
    identity: Callable[[int], str],
    owner: dict[str, str],
    person_frames: Counter[str],
    seconds_per_frame: float,
) -> list[PersonReport]:
    """Screen time and labelling per person; GT seconds are counted on the evaluated frames."""
    reports = []
    for person_id, name in gt.names.items():
        if person_frames[person_id] == 0:
            continue
        gt_seconds = person_frames[person_id] * seconds_per_frame
        mine = sorted(i for i, p in owner.items() if p == person_id)
        predicted = sum(run.seconds.get(i, 0.0) for i in mine)
        report = PersonReport(
            person_id=person_id,
            name=name,
            gt_seconds=round(gt_seconds, 6),
            predicted_seconds=round(predicted, 6),
            screentime_rel_error=(predicted - gt_seconds) / gt_seconds,
            identities=mine,
            enrolled=person_id in gt.enrolled,
        )
        if report.enrolled:
            right = wrong = 0
            accepted = {_norm(person_id), _norm(name)}
            for p, t in matched:
                if p != person_id:
                    continue
                label = run.labels.get(identity(t))
                if label and _norm(label) in accepted:
                    right += 1
                elif label:
                    wrong += 1
            report.label_coverage = right / person_frames[person_id]
            report.wrong_label_seconds = round(wrong * seconds_per_frame, 6)
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a faceflow run against ground_truth.json")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    args = parser.parse_args(argv)
    report = evaluate(args.run_dir, args.ground_truth)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(report.format_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
