"""Storage audit: one structured line per destructive call, with who, what, which ids and what went;
people record who enrolled them and who last added exemplars."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faceflow.v1 import common_pb2, storage_pb2

from services.common.auth import Principal, Role, acting_as, restore
from services.common.errors import NotFound
from services.common.logging import JsonFormatter
from services.storage.__main__ import STAGED_UPLOAD_TTL_S, sweep_staging_forever
from services.storage.local import LocalStorage
from services.storage.server import DELETE_ALL_PHRASE, StorageServicer

VIDEO = common_pb2.VideoInfo(fps=25.0, frame_count=50, width=64, height=48)
ALICE = Principal("alice", Role.ADMIN)
EXEMPLAR = storage_pb2.Exemplar(model_id="m@1", embedding=[1.0, 0.0])


@pytest.fixture
def backend(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


@pytest.fixture
def servicer(backend: LocalStorage) -> StorageServicer:
    return StorageServicer(backend)


@pytest.fixture
def as_alice() -> Iterator[None]:
    token = acting_as(ALICE)
    yield
    restore(token)


class Caller:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __enter__(self) -> None:
        self._token = acting_as(self.principal)

    def __exit__(self, *exc: object) -> None:
        restore(self._token)


def audits(caplog: pytest.LogCaptureFixture, thread: int | None = None) -> list[dict[str, Any]]:
    """The audit lines this test's thread logged so far, as the service's JSON log would render them
    (a sweep thread another test started may still be logging its own)."""
    formatter = JsonFormatter("storage")
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.getMessage() == "audit" and r.thread == (thread or threading.get_ident())
    ]


def episode(backend: LocalStorage, tmp_path: Path, ep_id: str) -> None:
    video = tmp_path / f"{ep_id}.mp4"
    video.write_bytes(ep_id.encode() * 10)
    backend.create_episode(ep_id, str(video), VIDEO, "", False)


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.storage.audit")


def test_delete_episode_logs_who_what_and_counts(
    servicer: StorageServicer, backend: LocalStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture, as_alice: None
) -> None:
    episode(backend, tmp_path, "ep-1")
    servicer.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="ep-1"), None)  # type: ignore[arg-type]
    [line] = audits(caplog)
    assert line["msg"] == "audit" and line["logger"] == "services.storage.audit" and line["service"] == "storage"
    assert {k: line[k] for k in ("principal", "action", "ep_id", "include_s3", "outcome")} == {
        "principal": "alice (admin)",
        "action": "delete_episode",
        "ep_id": "ep-1",
        "include_s3": False,
        "outcome": "ok",
    }
    assert (line["local_dirs_removed"], line["s3_objects_removed"]) == (1, 0)


def test_a_failed_delete_is_logged_as_failed(
    servicer: StorageServicer, caplog: pytest.LogCaptureFixture, as_alice: None
) -> None:
    with pytest.raises(NotFound):
        servicer.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="ep-none"), None)  # type: ignore[arg-type]
    [line] = audits(caplog)
    assert line["action"] == "delete_episode" and line["outcome"] == "failed"
    assert "does not exist" in line["error"] and "local_dirs_removed" not in line


def test_delete_all_episodes_logs_one_line_with_totals(
    servicer: StorageServicer, backend: LocalStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    episode(backend, tmp_path, "ep-1")
    episode(backend, tmp_path, "ep-2")
    with Caller(Principal("service", Role.SERVICE, acting_for="bob")):
        response = servicer.DeleteAllEpisodes(
            storage_pb2.DeleteAllEpisodesRequest(confirm=DELETE_ALL_PHRASE),
            None,  # type: ignore[arg-type]
        )
    assert response.episodes_deleted == 2
    [line] = audits(caplog)
    assert line["principal"] == "bob" and line["action"] == "delete_all_episodes" and line["outcome"] == "ok"
    assert (line["episodes_deleted"], line["local_dirs_removed"], line["s3_objects_removed"]) == (2, 2, 0)
    assert line["ep_ids"] == ["ep-1", "ep-2"]


def test_facebank_removals_are_audited_and_people_record_who_enrolled_them(
    servicer: StorageServicer, backend: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    add = storage_pb2.AddPersonRequest(show_id="show-1", name="Ada Lovelace", exemplars=[EXEMPLAR, EXEMPLAR])
    with Caller(Principal("service", Role.SERVICE, acting_for="bob")):
        created = servicer.AddPerson(add, None)  # type: ignore[arg-type]
    assert (created.enrolled_by, created.updated_by) == ("bob", "bob")
    add.append = True
    with Caller(Principal("carol", Role.REVIEWER)):
        appended = servicer.AddPerson(add, None)  # type: ignore[arg-type]
    assert (appended.enrolled_by, appended.updated_by) == ("bob", "carol (reviewer)")
    stored = backend.get_person("show-1", "ada-lovelace")  # persisted in the record, not only returned
    assert (stored.enrolled_by, stored.updated_by, len(stored.exemplars)) == ("bob", "carol (reviewer)", 4)
    assert audits(caplog) == []  # adding is not destructive

    with Caller(ALICE):
        servicer.RemoveExemplar(
            storage_pb2.RemoveExemplarRequest(
                show_id="show-1", person_id="ada-lovelace", exemplar_id=stored.exemplars[0].exemplar_id
            ),
            None,  # type: ignore[arg-type]
        )
        removed = servicer.RemovePerson(
            storage_pb2.RemovePersonRequest(show_id="show-1", person_id="ada-lovelace"),
            None,  # type: ignore[arg-type]
        )
    assert removed.exemplars_removed == 3
    exemplar_line, person_line = audits(caplog)
    assert exemplar_line["action"] == "remove_exemplar" and exemplar_line["principal"] == "alice (admin)"
    assert exemplar_line["exemplar_id"] == stored.exemplars[0].exemplar_id
    assert (exemplar_line["show_id"], exemplar_line["person_id"], exemplar_line["exemplars_removed"]) == (
        "show-1",
        "ada-lovelace",
        1,
    )
    assert person_line["action"] == "remove_person" and person_line["exemplars_removed"] == 3
    assert person_line["person_id"] == "ada-lovelace" and person_line["outcome"] == "ok"


def test_the_default_show_is_named_in_audit_lines(
    servicer: StorageServicer, backend: LocalStorage, caplog: pytest.LogCaptureFixture, as_alice: None
) -> None:
    backend.add_person("", "Alan Turing", [EXEMPLAR], False)
    servicer.RemovePerson(storage_pb2.RemovePersonRequest(person_id="alan-turing"), None)  # type: ignore[arg-type]
    [line] = audits(caplog)
    assert line["show_id"] == "default" and line["exemplars_removed"] == 1


def test_discarding_an_upload_is_audited(
    servicer: StorageServicer, backend: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    upload = backend.stage_upload("v.mp4", iter([b"video"]))
    with Caller(Principal("service", Role.SERVICE, acting_for="dave")):
        servicer.DiscardUpload(storage_pb2.DiscardUploadRequest(upload_id=upload.upload_id), None)  # type: ignore[arg-type]
    [line] = audits(caplog)
    assert (line["principal"], line["action"], line["upload_id"], line["uploads_removed"]) == (
        "dave",
        "discard_upload",
        upload.upload_id,
        1,
    )


def test_the_staging_sweep_is_audited_as_the_system(caplog: pytest.LogCaptureFixture) -> None:
    class Backend:
        def sweep_staging(self, older_than_s: float, now: Any = None) -> int:
            return 2

    sweeper = sweep_staging_forever(Backend(), interval_s=3600)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while not audits(caplog, sweeper.ident) and time.monotonic() < deadline:
        time.sleep(0.01)
    [line] = audits(caplog, sweeper.ident)
    assert (line["principal"], line["action"], line["uploads_removed"]) == ("system", "sweep_staging", 2)
    assert line["older_than_s"] == STAGED_UPLOAD_TTL_S
