"""The reviewed view of a run: identities after reviewers' operations, applied in order.

Operations are validated against the view before anything changes, so a bad request (unknown
identity, merging an identity into itself, moving a track that does not exist, joining two people
seen in the same frame) raises and leaves the view - and the audit log - untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from faceflow.v1 import orchestrator_pb2

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

MAX_NAME_LENGTH = 128
# A cross-episode link id (services/orchestrator/shows/): made by the orchestrator, never typed.
LINK_ID = re.compile(r"^lnk-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Track:
    track_id: int
    frames: np.ndarray  # (n,) processed frames, sorted
    boxes: np.ndarray  # (n, 4)


@dataclass
class ReviewView:
    tracks: dict[int, Track]
    identities: dict[str, list[int]]  # identity id -> track ids
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # identity -> (label, source)
    unassigned: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    deleted_faces: set[tuple[int, int]] = field(default_factory=set)
    # identity -> its cross-episode link decided by a reviewer ("" = linked to nobody); absent: undecided
    links: dict[str, str] = field(default_factory=dict)

    def identity_of(self, track_id: int) -> str | None:
        for identity, members in self.identities.items():
            if track_id in members:
                return identity
        return None

    def frames_of(self, identity: str) -> np.ndarray:
        parts = [self.tracks[t].frames for t in self.identities[identity]]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def visible_frames(self, identity: str) -> np.ndarray:
        """Frames an identity is on screen, minus faces a reviewer deleted."""
        frames = [
            f
            for t in self.identities[identity]
            for f in self.tracks[t].frames.tolist()
            if (t, f) not in self.deleted_faces
        ]
        return np.unique(np.asarray(frames, np.int64))

    # ---- checks -----------------------------------------------------------------------------

    def _identity(self, identity: str) -> list[int]:
        if identity not in self.identities:
            known = ", ".join(sorted(self.identities)) or "none"
            raise NotFound(f"identity {identity!r} does not exist in this run (known: {known})")
        return self.identities[identity]

    def _track(self, track_id: int) -> Track:
        if track_id not in self.tracks:
            raise NotFound(f"track {track_id} does not exist in this run")
        if track_id in self.deleted:
            raise FailedPrecondition(f"track {track_id} was deleted; undo the deletion first")
        return self.tracks[track_id]

    def _no_shared_frame(self, identity: str, tracks: list[int]) -> None:
        """Two faces in one frame are two people: refuse to put them in one identity."""
        theirs = np.unique(np.concatenate([self.tracks[t].frames for t in tracks])) if tracks else np.zeros(0)
        shared = np.intersect1d(self.frames_of(identity), theirs)
        if shared.size:
            raise FailedPrecondition(
                f"identity {identity} and track(s) {sorted(tracks)} appear together in frame {int(shared[0])}: "
                "they cannot be the same person"
            )

    # ---- operations -------------------------------------------------------------------------

    def apply(self, op: orchestrator_pb2.ReviewOp, seq: int) -> None:
        kind = op.WhichOneof("op")
        if kind is None:
            raise InvalidArgument("the review operation is empty")
        getattr(self, f"_{kind}")(getattr(op, kind), f"id_r{seq:04d}")

    def _rename(self, op: orchestrator_pb2.ReviewOp.Rename, _: str) -> None:
        self._identity(op.identity_id)
        name = op.name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"a name must have 1-{MAX_NAME_LENGTH} characters, got {op.name!r}")
        self.labels[op.identity_id] = (name, "review")

    def _merge(self, op: orchestrator_pb2.ReviewOp.Merge, _: str) -> None:
        if op.source_identity_id == op.target_identity_id:
            raise InvalidArgument(f"cannot merge identity {op.source_identity_id!r} into itself")
        source = self._identity(op.source_identity_id)
        self._identity(op.target_identity_id)
        self._no_shared_frame(op.target_identity_id, source)
        self.identities[op.target_identity_id].extend(source)
        del self.identities[op.source_identity_id]
        moved_label = self.labels.pop(op.source_identity_id, None)
        if op.target_identity_id not in self.labels and moved_label is not None:
            self.labels[op.target_identity_id] = moved_label
        moved_link = self.links.pop(op.source_identity_id, None)
        if op.target_identity_id not in self.links and moved_link is not None:
            self.links[op.target_identity_id] = moved_link

    def _move_track(self, op: orchestrator_pb2.ReviewOp.MoveTrack, new_id: str) -> None:
        self._track(op.track_id)
        target = op.target_identity_id or new_id
        if op.target_identity_id:
            self._identity(target)
            if self.identity_of(op.track_id) == target:
                raise InvalidArgument(f"track {op.track_id} is already in identity {target}")
            self._no_shared_frame(target, [op.track_id])
        self._detach(op.track_id)
        self.identities.setdefault(target, []).append(op.track_id)

    def _remove_track(self, op: orchestrator_pb2.ReviewOp.RemoveTrack, _: str) -> None:
        self._track(op.track_id)
        if self.identity_of(op.track_id) is None:
            raise FailedPrecondition(f"track {op.track_id} is not in any identity")
        self._detach(op.track_id)
        self.unassigned.add(op.track_id)

    def _delete_track(self, op: orchestrator_pb2.ReviewOp.DeleteTrack, _: str) -> None:
        self._track(op.track_id)
        self._detach(op.track_id)
        self.unassigned.discard(op.track_id)
        self.deleted.add(op.track_id)

    def _delete_face(self, op: orchestrator_pb2.ReviewOp.DeleteFace, _: str) -> None:
        track = self._track(op.track_id)
        if op.frame not in set(track.frames.tolist()):
            raise NotFound(f"track {op.track_id} has no face in frame {op.frame}")
        self.deleted_faces.add((op.track_id, op.frame))

    def _split(self, op: orchestrator_pb2.ReviewOp.Split, new_id: str) -> None:
        members = self._identity(op.identity_id)
        chosen = list(dict.fromkeys(op.track_ids))
        outside = [t for t in chosen if t not in members]
        if not chosen or outside or len(chosen) == len(members):
            raise InvalidArgument(
                f"split needs some but not all tracks of {op.identity_id} ({sorted(members)}); got {sorted(chosen)}"
            )
        for track_id in chosen:
            members.remove(track_id)
        self.identities[new_id] = chosen

    def _link(self, op: orchestrator_pb2.ReviewOp.Link, _: str) -> None:
        self._identity(op.identity_id)
        if op.link_id and not LINK_ID.match(op.link_id):
            raise InvalidArgument(f"malformed link id {op.link_id!r}: expected lnk- and 12 hex digits, or empty")
        self.links[op.identity_id] = op.link_id

    def _detach(self, track_id: int) -> None:
        identity = self.identity_of(track_id)
        if identity is not None:
            self.identities[identity].remove(track_id)
            if not self.identities[identity]:
                del self.identities[identity]
                self.labels.pop(identity, None)
                self.links.pop(identity, None)
        self.unassigned.discard(track_id)
