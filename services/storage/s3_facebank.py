"""The facebank on S3: one JSON record per person ({prefix}/facebank/{show_id}/{person_id}.json),
changed only by compare-and-swap, so concurrent enrolments never lose each other's exemplars."""

from __future__ import annotations

from faceflow.v1 import storage_pb2

from services.common.auth import audit_name
from services.common.errors import InvalidArgument, NotFound
from services.common.ids import person_id_for, validate_id
from services.storage.backend import (
    DEFAULT_SHOW,
    person_with_exemplars,
    remove_exemplar_from,
    utc_timestamp,
)
from services.storage.s3_records import S3Keys, S3Records
from services.storage.s3_transport import S3Transport


def _missing(show_id: str, person_id: str) -> NotFound:
    return NotFound(f"person {person_id!r} is not in the facebank of show {show_id or DEFAULT_SHOW!r}")


class S3Facebank:
    """The facebank half of the StorageBackend on S3 (S3Storage hands these calls here)."""

    def __init__(self, s3: S3Transport, keys: S3Keys, records: S3Records) -> None:
        self._s3 = s3
        self._keys = keys
        self._records = records

    def add_person(
        self, show_id: str, name: str, exemplars: list[storage_pb2.Exemplar], append: bool, by: str = ""
    ) -> storage_pb2.Person:
        validate_id("show", show_id or DEFAULT_SHOW)
        by = by or audit_name()
        if not name.strip():
            raise InvalidArgument("person name is empty")
        if not exemplars:
            raise InvalidArgument(f"no usable exemplar for {name!r}: give at least one image with one clear face")
        person_id = person_id_for(name)

        def add(existing: storage_pb2.Person | None) -> tuple[storage_pb2.Person, bool]:
            return person_with_exemplars(
                existing, person_id, name, show_id, exemplars, append, by, utc_timestamp()
            ), True

        conflict = f"person {person_id!r} is being changed by other writers; retry adding {name!r}"
        return self._records.update(self._keys.person(show_id, person_id), storage_pb2.Person, add, conflict)

    def list_people(self, show_id: str) -> list[storage_pb2.Person]:
        prefix = self._keys.show(show_id) + "/"
        people = []
        for item in self._s3.list_keys(prefix):
            if "/" in item["Key"][len(prefix) :] or not item["Key"].endswith(".json"):
                continue
            found = self._records.read(item["Key"], storage_pb2.Person)
            if found is not None:  # removed between listing and reading
                people.append(found[0])
        return people

    def get_person(self, show_id: str, person_id: str) -> storage_pb2.Person:
        found = self._records.read(self._keys.person(show_id, validate_id("person", person_id)), storage_pb2.Person)
        if found is None:
            raise _missing(show_id, person_id)
        return found[0]

    def remove_exemplar(self, show_id: str, person_id: str, exemplar_id: str) -> storage_pb2.Person:
        key = self._keys.person(show_id, validate_id("person", person_id))

        def remove(person: storage_pb2.Person | None) -> tuple[storage_pb2.Person, bool]:
            if person is None:
                raise _missing(show_id, person_id)
            return remove_exemplar_from(person, exemplar_id), True

        conflict = f"person {person_id!r} is being changed by other writers; retry"
        return self._records.update(key, storage_pb2.Person, remove, conflict)

    def remove_person(self, show_id: str, person_id: str) -> int:
        person = self.get_person(show_id, person_id)
        self._s3.delete_keys([self._keys.person(show_id, person_id)])
        return len(person.exemplars)
