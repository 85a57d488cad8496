"""The facebank on a local data root: facebank/<show_id>/<person_id>.json, one file per person (its
exemplars, embeddings tagged with model id), changed under the backend's lock, written atomically."""

from __future__ import annotations

import threading
from pathlib import Path

from faceflow.v1 import storage_pb2
from google.protobuf import json_format

from services.common.auth import audit_name
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import person_id_for, validate_id
from services.storage.backend import (
    DEFAULT_SHOW,
    person_with_exemplars,
    record_json,
    remove_exemplar_from,
    utc_timestamp,
)
from services.storage.local_root import DataRoot


class LocalFacebank:
    """The facebank half of the StorageBackend on a local data root (LocalStorage hands these calls here)."""

    def __init__(self, root: DataRoot, lock: threading.RLock) -> None:
        self._root = root
        # The backend's lock: it guards every read-modify-write of records in this process.
        self._lock = lock

    def _show_dir(self, show_id: str) -> Path:
        return self._root.path / "facebank" / validate_id("show", show_id or DEFAULT_SHOW)

    def _write_person(self, person: storage_pb2.Person) -> None:
        refusal = FailedPrecondition(
            f"the facebank of show {person.show_id!r} leads out of the data root; {person.name!r} was not saved"
        )
        self._root.write_file(
            self._show_dir(person.show_id) / f"{person.person_id}.json", [record_json(person)], refusal
        )

    def _find_person(self, show_id: str, person_id: str) -> storage_pb2.Person | None:
        path = self._show_dir(show_id) / f"{validate_id('person', person_id)}.json"
        try:
            return json_format.Parse(self._root.read_bytes(path, NotFound("")), storage_pb2.Person())
        except NotFound:
            return None

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        if not name.strip():
            raise InvalidArgument("person name is empty")
        if not exemplars:
            raise InvalidArgument(f"no usable exemplar for {name!r}: give at least one image with one clear face")
        person_id = person_id_for(name)
        by = by or audit_name()
        with self._lock:
            existing = self._find_person(show_id, person_id)
            person = person_with_exemplars(existing, person_id, name, show_id, exemplars, append, by, utc_timestamp())
            self._write_person(person)
            return person

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        people = []
        for name in self._root.children(self._show_dir(show_id)):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    found = self._find_person(show_id, name.removesuffix(".json"))
                except InvalidArgument:  # not a person id: not faceflow's
                    continue
                if found is not None:
                    people.append(found)
        return people

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        person = self._find_person(show_id, person_id)
        if person is None:
            raise NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")
        return person

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        with self._lock:
            person = remove_exemplar_from(self.get_person(show_id, person_id), exemplar_id)
            self._write_person(person)
            return person

    def remove_person(self, show_id: str, person_id: str) -> int:
        with self._lock:
            person = self.get_person(show_id, person_id)
            self._root.remove(self._show_dir(show_id) / f"{person_id}.json")
            return len(person.exemplars)
