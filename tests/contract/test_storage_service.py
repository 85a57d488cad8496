"""StorageService (local backend) over real gRPC: episodes, runs, publication, facebank, bad ids,
upload admission, audit lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
from faceflow.v1 import common_pb2, storage_pb2

from services.cli.stack import LocalStack
from tests.contract.helpers import expect_status


def _put(storage, ep_id: str, run_id: str, name: str, data: bytes) -> storage_pb2.Artifact:
    ref = storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name)
    chunks = [storage_pb2.PutArtifactRequest(ref=ref)] + [
        storage_pb2.PutArtifactRequest(chunk=data[i : i + 7]) for i in range(0, len(data), 7)
    ]
    return storage.PutArtifact(iter(chunks))


def _get(storage, ep_id: str, run_id: str, name: str) -> bytes:
    ref = storage_pb2.ArtifactRef(ep_id=ep_id, run_id=run_id, name=name)
    return b"".join(m.chunk for m in storage.GetArtifact(storage_pb2.GetArtifactRequest(ref=ref)))


def _audit_lines(stack: LocalStack, action: str) -> list[dict[str, Any]]:
    """The storage service's audit lines for `action`, from its JSON log."""
    lines = []
    for text in stack.processes["storage"].log_path.read_text().splitlines():
        if text.startswith("{"):
            entry = json.loads(text)
            if entry.get("msg") == "audit" and entry.get("action") == action:
                lines.append(entry)
    return lines


def test_episode_lifecycle_and_run_publication(stubs: dict, stack: LocalStack, media: Path) -> None:
    storage = stubs["storage"]
    video = common_pb2.VideoInfo(fps=30, frame_count=72, width=640, height=360)
    episode = storage.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="store-1", source_path=str(media / "single_face.mp4"), video=video)
    )
    stored = Path(episode.video_uri)
    assert stored.read_bytes() == (media / "single_face.mp4").read_bytes()
    assert stored.is_relative_to(stack.data_root)
    again = storage.CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="store-1", source_path=str(media / "single_face.mp4"), video=video)
    )
    assert again.created_at == episode.created_at  # same video: idempotent
    expect_status(
        grpc.StatusCode.ALREADY_EXISTS,
        lambda: storage.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(ep_id="store-1", source_path=str(media / "no_face.mp4"), video=video)
        ),
        "already exists",
    )

    artifact = _put(storage, "store-1", "run-a", "tracks.mot.txt", b"1,1,0,0,10,10,0.9,-1,-1,-1\n")
    assert artifact.size_bytes == 27 and len(artifact.sha256) == 64
    # Not published yet: the current outputs do not exist.
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION, lambda: _get(storage, "store-1", "", "tracks.mot.txt"), "no completed run"
    )
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: storage.PublishRun(storage_pb2.PublishRunRequest(ep_id="store-1", run_id="run-a")),
        "manifest.json",
    )
    _put(storage, "store-1", "run-a", "manifest.json", b"{}")
    published = storage.PublishRun(storage_pb2.PublishRunRequest(ep_id="store-1", run_id="run-a")).episode
    assert published.current_run_id == "run-a"
    assert _get(storage, "store-1", "", "tracks.mot.txt").startswith(b"1,1,")
    assert (stack.data_root / "episodes" / "store-1" / "tracks.mot.txt").is_file()

    # A second run replaces the outputs; files it did not write disappear from the current view.
    _put(storage, "store-1", "run-b", "identities.json", b'{"identities": []}')
    _put(storage, "store-1", "run-b", "manifest.json", b"{}")
    storage.PublishRun(storage_pb2.PublishRunRequest(ep_id="store-1", run_id="run-b"))
    assert not (stack.data_root / "episodes" / "store-1" / "tracks.mot.txt").exists()
    assert _get(storage, "store-1", "run-a", "tracks.mot.txt")  # older runs are kept

    ids = [e.ep_id for e in storage.ListEpisodes(storage_pb2.ListEpisodesRequest()).episodes]
    assert "store-1" in ids
    deleted = storage.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="store-1"))
    assert (deleted.local_dirs_removed, deleted.s3_objects_removed) == (1, 0)
    assert not (stack.data_root / "episodes" / "store-1").exists()
    [audit] = [line for line in _audit_lines(stack, "delete_episode") if line["ep_id"] == "store-1"]
    assert audit["principal"].endswith("@local")  # the person the CLI credentials act for
    assert (audit["local_dirs_removed"], audit["s3_objects_removed"], audit["outcome"]) == (1, 0, "ok")
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="store-1")),
        "does not exist",
    )


def test_malformed_ids_and_names_never_touch_the_disk(stubs: dict, stack: LocalStack, media: Path) -> None:
    storage = stubs["storage"]
    before = sorted(p.relative_to(stack.data_root) for p in stack.data_root.rglob("*"))
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65):
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda b=bad: storage.CreateEpisode(
                storage_pb2.CreateEpisodeRequest(ep_id=b, source_path=str(media / "single_face.mp4"))
            ),
            "episode id",
        )
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT, lambda b=bad: storage.GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=b))
        )
    storage.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id="store-2", source_path=str(media / "single_face.mp4")))
    for name in ("../../etc/passwd", "/abs", "a//b", "a/../b"):
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT, lambda n=name: _put(storage, "store-2", "run-a", n, b"x"), "artifact name"
        )
    storage.DeleteEpisode(storage_pb2.DeleteEpisodeRequest(ep_id="store-2"))
    after = sorted(p.relative_to(stack.data_root) for p in stack.data_root.rglob("*"))
    assert [p for p in after if "episodes" in p.parts] == [p for p in before if "episodes" in p.parts]
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: storage.CreateEpisode(
            storage_pb2.CreateEpisodeRequest(ep_id="store-3", source_path="/no/such/video.mp4")
        ),
        "does not exist",
    )
    assert not (stack.data_root / "episodes" / "store-3").exists()


def test_facebank_people(stubs: dict) -> None:
    storage = stubs["storage"]
    exemplar = storage_pb2.Exemplar(model_id="m@1", embedding=[1.0, 0.0], source_name="a.jpg")
    person = storage.AddPerson(
        storage_pb2.AddPersonRequest(show_id="show-x", name="Ada Lovelace", exemplars=[exemplar])
    )
    assert person.person_id == "ada-lovelace" and person.exemplars[0].exemplar_id
    assert person.enrolled_by.endswith("@local") and person.updated_by == person.enrolled_by
    expect_status(
        grpc.StatusCode.ALREADY_EXISTS,
        lambda: storage.AddPerson(
            storage_pb2.AddPersonRequest(show_id="show-x", name="Ada Lovelace", exemplars=[exemplar])
        ),
    )
    grown = storage.AddPerson(
        storage_pb2.AddPersonRequest(show_id="show-x", name="Ada Lovelace", exemplars=[exemplar], append=True)
    )
    assert len(grown.exemplars) == 2
    kept = storage.RemoveExemplar(
        storage_pb2.RemoveExemplarRequest(
            show_id="show-x", person_id="ada-lovelace", exemplar_id=grown.exemplars[0].exemplar_id
        )
    )
    assert [e.exemplar_id for e in kept.exemplars] == [grown.exemplars[1].exemplar_id]
    expect_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: storage.RemoveExemplar(
            storage_pb2.RemoveExemplarRequest(
                show_id="show-x", person_id="ada-lovelace", exemplar_id=kept.exemplars[0].exemplar_id
            )
        ),
        "last exemplar",
    )
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: storage.RemoveExemplar(
            storage_pb2.RemoveExemplarRequest(show_id="show-x", person_id="ada-lovelace", exemplar_id="nope")
        ),
    )
    grown = storage.AddPerson(
        storage_pb2.AddPersonRequest(show_id="show-x", name="Ada Lovelace", exemplars=[exemplar], append=True)
    )
    assert [p.name for p in storage.ListPeople(storage_pb2.ListPeopleRequest(show_id="show-x")).people] == [
        "Ada Lovelace"
    ]
    removed = storage.RemovePerson(storage_pb2.RemovePersonRequest(show_id="show-x", person_id="ada-lovelace"))
    assert removed.exemplars_removed == 2
    expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: storage.GetPerson(storage_pb2.GetPersonRequest(show_id="show-x", person_id="ada-lovelace")),
    )


def test_upload_capacity_refuses_bad_sizes_and_reports_what_fits(stubs: dict) -> None:
    storage = stubs["storage"]
    gib = 1024**3  # the stack runs with the default limits: 64 GiB at most, 2 GiB headroom

    def check(size: int) -> storage_pb2.CheckUploadCapacityResponse:
        return storage.CheckUploadCapacity(storage_pb2.CheckUploadCapacityRequest(size_bytes=size))

    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: check(64 * gib + 1), "larger than 64 GiB")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: check(0), "positive")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: check(-5), "positive")
    try:
        fits = check(1).max_bytes
    except grpc.RpcError as error:  # a test machine with less than the headroom free
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "headroom" in error.details()
    else:
        assert 0 < fits <= 64 * gib
