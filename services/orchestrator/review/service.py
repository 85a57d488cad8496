"""Review operations over gRPC: validate against the reviewed view, append to the audit log, write
the reviewed outputs. The log is replayed onto whichever run is current, so a re-run keeps them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from faceflow.v1 import orchestrator_pb2, storage_pb2
from google.protobuf import json_format

from services.common.errors import AlreadyExists, FaceflowError, FailedPrecondition
from services.common.grpc_errors import translate_rpc_errors
from services.orchestrator.analysis.screentime import ScreenTimeSettings, merge_by_label, screen_time, total_seconds
from services.orchestrator.api.clients import ServiceClients
from services.orchestrator.review.carry import map_identity, map_tracks
from services.orchestrator.review.view import ReviewView, Track
from services.orchestrator.run.artifacts import read_artifact, upload_artifact

# Runs whose files are kept parsed in memory (the current run and the runs older records were made on).
RUN_CACHE_SIZE = 8
APPEND_ATTEMPTS = 5


@dataclass(frozen=True)
class RunData:
    run_id: str
    tracks: dict[int, Track]
    identities: dict[str, list[int]]
    labels: dict[str, str]
    fps: float
    stride: int
    duration_s: float
    gap_bridge_s: float
    cut_frames: np.ndarray
    processed_frames: np.ndarray  # a sighting covers the frames up to the next of these (adaptive sampling)
    raw_identities: dict[str, dict[str, Any]]
    embedding_model: str

    def base_view(self) -> ReviewView:
        return ReviewView(
            tracks=self.tracks,
            identities={k: list(v) for k, v in self.identities.items()},
            labels={k: (v, "facebank") for k, v in self.labels.items()},
        )


def load_run(clients: ServiceClients, ep_id: str, run_id: str) -> RunData:
    manifest = json.loads(read_artifact(clients, ep_id, run_id, "manifest.json"))
    identities = json.loads(read_artifact(clients, ep_id, run_id, "identities.json"))["identities"]
    tracks = {}
    for line in read_artifact(clients, ep_id, run_id, "tracks.jsonl").splitlines():
        row = json.loads(line)
        tracks[row["track_id"]] = Track(
            row["track_id"], np.asarray(row["frames"], np.int64), np.asarray(row["boxes"], np.float32).reshape(-1, 4)
        )
    processed = [json.loads(line) for line in read_artifact(clients, ep_id, run_id, "detections.jsonl").splitlines()]
    cuts = [d["frame"] for d in processed if d["shot_boundary"]]
    video = manifest["video"]
    return RunData(
        run_id=run_id,
        tracks=tracks,
        identities={i["identity_id"]: list(i["track_ids"]) for i in identities},
        labels={i["identity_id"]: i["label"] for i in identities if i.get("label")},
        fps=float(video["fps"]),
        stride=int(manifest["settings"]["stride"]),
        duration_s=float(video.get("duration_s", 0.0)),
        gap_bridge_s=float(manifest["settings"]["screen_time"]["gap_bridge_s"]),
        cut_frames=np.asarray(cuts, np.int64),
        processed_frames=np.asarray([d["frame"] for d in processed], np.int64),
        raw_identities={i["identity_id"]: i for i in identities},
        embedding_model=manifest.get("embedding_model", ""),
    )


@dataclass
class Record:
    seq: int
    at: str
    run_id: str
    op: orchestrator_pb2.ReviewOp | None
    undo_of: int
    anchors: dict[str, list[int]]  # identity id (in run_id) -> its tracks when the op was made
    reviewer: str = ""

    @classmethod
    def parse(cls, seq: int, raw: bytes) -> Record:
        data = json.loads(raw)
        op = json_format.ParseDict(data["op"], orchestrator_pb2.ReviewOp()) if data.get("op") else None
        return cls(
            seq,
            data["at"],
            data["run_id"],
            op,
            int(data.get("undo_of", 0)),
            data.get("anchors", {}),
            data.get("reviewer", ""),
        )

    def dump(self) -> bytes:
        op = json_format.MessageToDict(self.op, preserving_proto_field_name=True) if self.op else None
        return json.dumps(
            {
                "seq": self.seq,
                "at": self.at,
                "run_id": self.run_id,
                "op": op,
                "undo_of": self.undo_of,
                "anchors": self.anchors,
                "reviewer": self.reviewer,
            }
        ).encode()


def _identity_refs(op: orchestrator_pb2.ReviewOp) -> list[str]:
    kind = op.WhichOneof("op")
    inner: Any = getattr(op, kind) if kind else None
    refs = []
    for name in ("identity_id", "source_identity_id", "target_identity_id"):
        if inner is not None and hasattr(inner, name) and getattr(inner, name):
            refs.append(getattr(inner, name))
    return refs


def _translate(
    op: orchestrator_pb2.ReviewOp, record: Record, view: ReviewView, mapping: dict[int, int]
) -> orchestrator_pb2.ReviewOp:
    """The same operation in the ids of the view's run; FailedPrecondition when something has no counterpart."""
    translated = orchestrator_pb2.ReviewOp()
    translated.CopyFrom(op)
    kind = op.WhichOneof("op")
    if kind is None:
        raise FailedPrecondition("a review record holds no operation")
    inner: Any = getattr(translated, kind)
    for name in ("identity_id", "source_identity_id", "target_identity_id"):
        old = getattr(inner, name, "")
        if old:
            new = map_identity(view, record.anchors.get(old, []), mapping)
            if new is None:
                raise FailedPrecondition(f"identity {old} of run {record.run_id} has no counterpart in this run")
            setattr(inner, name, new)
    if getattr(inner, "track_id", 0):
        if inner.track_id not in mapping:
            raise FailedPrecondition(f"track {inner.track_id} of run {record.run_id} has no counterpart in this run")
        inner.track_id = mapping[inner.track_id]
    if kind == "split":
        missing = [t for t in inner.track_ids if t not in mapping]
        if missing:
            raise FailedPrecondition(f"tracks {missing} of run {record.run_id} have no counterpart in this run")
        inner.track_ids[:] = [mapping[t] for t in inner.track_ids]
    return translated


class ReviewService:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients
        self._runs: dict[tuple[str, str], RunData] = {}

    def _run(self, ep_id: str, run_id: str) -> RunData:
        key = (ep_id, run_id)
        if key not in self._runs:
            if len(self._runs) >= RUN_CACHE_SIZE:
                self._runs.pop(next(iter(self._runs)))
            self._runs[key] = load_run(self._clients, ep_id, run_id)
        return self._runs[key]

    def _records(self, ep_id: str) -> list[Record]:
        with translate_rpc_errors("storage"):
            listed = self._clients.storage.ListReviewRecords(storage_pb2.ListReviewRecordsRequest(ep_id=ep_id)).records
        return [Record.parse(r.seq, r.record) for r in listed]

    def _replay(
        self, ep_id: str, records: list[Record] | None = None
    ) -> tuple[RunData, ReviewView, list[Record], dict[int, str]]:
        with translate_rpc_errors("storage"):
            episode = self._clients.storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=ep_id))
        if not episode.current_run_id:
            raise FailedPrecondition(f"episode {ep_id!r} has no completed run to review yet")
        run = self._run(ep_id, episode.current_run_id)
        view = run.base_view()
        records = self._records(ep_id) if records is None else records
        undone = {r.undo_of for r in records if r.undo_of}
        problems: dict[int, str] = {}
        mappings: dict[str, dict[int, int]] = {}
        for record in records:
            if record.op is None or record.seq in undone:
                continue
            try:
                op = record.op
                if record.run_id != run.run_id:
                    if record.run_id not in mappings:
                        mappings[record.run_id] = map_tracks(self._run(ep_id, record.run_id).tracks, run.tracks)
                    op = _translate(op, record, view, mappings[record.run_id])
                view.apply(op, record.seq)
            except FaceflowError as error:
                problems[record.seq] = str(error)
        return run, view, records, problems

    def state(self, ep_id: str) -> orchestrator_pb2.ReviewState:
        run, view, records, problems = self._replay(ep_id)
        return self._state_proto(ep_id, run, view, records, problems)

    def log(self, ep_id: str) -> list[Record]:
        """The episode's review log as stored (cheap: one storage call, no replay)."""
        return self._records(ep_id)

    def reviewed(self, ep_id: str, log: list[Record] | None = None) -> tuple[RunData, ReviewView, list[Record]]:
        """The current run, its reviewed view and the review log (for callers reading across episodes);
        `log`: the log just read with `log()`, not read again."""
        run, view, records, _ = self._replay(ep_id, log)
        return run, view, records

    def screen_time(self, ep_id: str) -> orchestrator_pb2.ScreenTime:
        """Per identity and per name, with intervals: what the review page's reviewer sees now."""
        run, view, _, _ = self._replay(ep_id)
        return screen_time_proto(ep_id, run, view)

    def review(self, ep_id: str, op: orchestrator_pb2.ReviewOp) -> orchestrator_pb2.ReviewState:
        for _ in range(APPEND_ATTEMPTS):
            run, view, records, _ = self._replay(ep_id)
            anchors = {ref: list(view.identities.get(ref, [])) for ref in _identity_refs(op)}
            seq = (records[-1].seq if records else 0) + 1
            view.apply(op, seq)  # raises on bad input before anything is written
            record = Record(seq, _now(), run.run_id, op, 0, anchors, op.reviewer)
            if self._append(ep_id, record):
                return self._publish(ep_id)
        raise FailedPrecondition(f"the review log of {ep_id!r} is changing too fast; retry")

    def undo(self, ep_id: str, reviewer: str) -> orchestrator_pb2.ReviewState:
        for _ in range(APPEND_ATTEMPTS):
            run, _, records, _ = self._replay(ep_id)
            undone = {r.undo_of for r in records if r.undo_of}
            candidates = [r for r in records if r.op is not None and r.seq not in undone]
            if not candidates:
                raise FailedPrecondition(f"episode {ep_id!r} has no review operation to undo")
            record = Record(records[-1].seq + 1, _now(), run.run_id, None, candidates[-1].seq, {}, reviewer)
            if self._append(ep_id, record):
                return self._publish(ep_id)
        raise FailedPrecondition(f"the review log of {ep_id!r} is changing too fast; retry")

    def refresh(self, ep_id: str) -> None:
        """After a new run is published: carry the review log over to it, if there is one."""
        if self._records(ep_id):
            self._publish(ep_id)

    def _append(self, ep_id: str, record: Record) -> bool:
        try:
            with translate_rpc_errors("storage"):
                self._clients.storage.AppendReviewRecord(
                    storage_pb2.AppendReviewRecordRequest(ep_id=ep_id, seq=record.seq, record=record.dump())
                )
            return True
        except AlreadyExists:
            return False  # another reviewer took this seq: reload and re-validate

    def _publish(self, ep_id: str) -> orchestrator_pb2.ReviewState:
        """Write the reviewed identities and screen time into the current run and republish it."""
        run, view, records, problems = self._replay(ep_id)
        intervals = reviewed_intervals(run, view)  # once, for both the state and the contract files
        state = self._state_proto(ep_id, run, view, records, problems, intervals)
        upload_artifact(
            self._clients,
            ep_id,
            run.run_id,
            "review.json",
            json_format.MessageToJson(state, preserving_proto_field_name=True).encode(),
        )
        identities, screentime = reviewed_outputs(ep_id, run, view, intervals)
        upload_artifact(self._clients, ep_id, run.run_id, "identities.reviewed.json", identities)
        upload_artifact(self._clients, ep_id, run.run_id, "screentime.reviewed.json", screentime)
        with translate_rpc_errors("storage"):
            self._clients.storage.PublishRun(storage_pb2.PublishRunRequest(ep_id=ep_id, run_id=run.run_id))
        return state

    @staticmethod
    def _state_proto(
        ep_id: str,
        run: RunData,
        view: ReviewView,
        records: list[Record],
        problems: dict[int, str],
        intervals: dict[str, list[tuple[float, float]]] | None = None,
    ) -> orchestrator_pb2.ReviewState:
        intervals = intervals if intervals is not None else reviewed_intervals(run, view)
        undone = {r.undo_of for r in records if r.undo_of}
        return orchestrator_pb2.ReviewState(
            ep_id=ep_id,
            run_id=run.run_id,
            identities=[
                orchestrator_pb2.ReviewedIdentity(
                    identity_id=identity,
                    label=view.labels.get(identity, ("", ""))[0],
                    label_source=view.labels.get(identity, ("", ""))[1],
                    track_ids=sorted(tracks),
                    seconds=total_seconds(intervals[identity]),
                )
                for identity, tracks in sorted(view.identities.items(), key=lambda kv: -total_seconds(intervals[kv[0]]))
            ],
            log=[
                orchestrator_pb2.AuditEntry(
                    seq=r.seq,
                    at=r.at,
                    run_id=r.run_id,
                    op=r.op,
                    undo_of=r.undo_of,
                    undone=r.seq in undone,
                    not_applied=problems.get(r.seq, ""),
                )
                for r in records
            ],
            unassigned_track_ids=sorted(view.unassigned),
            deleted_track_ids=sorted(view.deleted),
        )


def screen_time_proto(ep_id: str, run: RunData, view: ReviewView) -> orchestrator_pb2.ScreenTime:
    """Per identity and per name, with intervals, of a reviewed view."""
    intervals = reviewed_intervals(run, view)
    labels = {identity: view.labels.get(identity, ("", ""))[0] or None for identity in view.identities}

    def row(identity: str, label: str | None, spans: list[tuple[float, float]]) -> orchestrator_pb2.ScreenTimeRow:
        return orchestrator_pb2.ScreenTimeRow(
            identity_id=identity,
            label=label or "",
            seconds=total_seconds(spans),
            intervals=[orchestrator_pb2.TimeInterval(start_s=s, end_s=e) for s, e in spans],
        )

    people = merge_by_label(intervals, labels)
    return orchestrator_pb2.ScreenTime(
        ep_id=ep_id,
        run_id=run.run_id,
        duration_s=run.duration_s,
        identities=[
            row(i, labels[i], intervals[i]) for i in sorted(intervals, key=lambda k: -total_seconds(intervals[k]))
        ],
        people=[row("", label, spans) for label, spans in sorted(people.items(), key=lambda kv: kv[0])],
    )


def reviewed_intervals(run: RunData, view: ReviewView) -> dict[str, list[tuple[float, float]]]:
    """Screen time of each reviewed identity, with the run's own timing settings."""
    frames = {identity: view.visible_frames(identity) for identity in view.identities}
    return screen_time(
        frames,
        run.fps,
        run.stride,
        run.duration_s,
        ScreenTimeSettings(run.gap_bridge_s),
        cut_frames=run.cut_frames,
        processed_frames=run.processed_frames,
    )


def reviewed_outputs(
    ep_id: str, run: RunData, view: ReviewView, intervals: dict[str, list[tuple[float, float]]]
) -> tuple[bytes, bytes]:
    """identities.reviewed.json and screentime.reviewed.json: the output contract, after review."""
    labels = {identity: view.labels.get(identity, ("", ""))[0] or None for identity in view.identities}
    identities = []
    for identity, tracks in view.identities.items():
        raw = run.raw_identities.get(identity, {})
        label, source = view.labels.get(identity, ("", ""))
        identities.append(
            {
                "identity_id": identity,
                "label": label or None,
                "person_id": raw.get("person_id") if source == "facebank" else None,
                "tier": "review" if source == "review" else raw.get("tier", "unknown") if label else "unknown",
                "similarity": raw.get("similarity"),
                "suggestions": raw.get("suggestions", []),
                "track_ids": sorted(tracks),
            }
        )
    people = merge_by_label(intervals, labels)

    def rounded(values: list[tuple[float, float]]) -> list[list[float]]:
        return [[round(a, 4), round(b, 4)] for a, b in values]

    screentime = {
        "ep_id": ep_id,
        "fps": run.fps,
        "duration_s": round(run.duration_s, 4),
        "reviewed": True,
        "gap_bridge_s": run.gap_bridge_s,
        "identities": [
            {
                "identity_id": i,
                "label": labels[i],
                "seconds": round(total_seconds(intervals[i]), 4),
                "intervals": rounded(intervals[i]),
            }
            for i in sorted(view.identities, key=lambda k: -total_seconds(intervals[k]))
        ],
        "people": [
            {"label": label, "seconds": round(total_seconds(v), 4), "intervals": rounded(v)}
            for label, v in sorted(people.items())
        ],
    }
    identities_doc = {"embedding_model": run.embedding_model, "reviewed": True, "identities": identities}
    return json.dumps(identities_doc, indent=1).encode(), json.dumps(screentime, indent=1).encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
