"""The StorageBackend contract, run against LocalStorage and S3Storage (real SeaweedFS): same behaviour."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from faceflow.v1 import common_pb2, storage_pb2

from services.common.auth import Principal, Role, acting_as, restore
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.storage.s3 import S3Storage
from tests.storage.conftest import MIB, BackendFactory, count_objects

VIDEO = common_pb2.VideoInfo(fps=25.0, frame_count=50, width=64, height=48, duration_s=2.0, codec="h264")
BAD_IDS = ["", "../x", "a/b", ".hidden", "x" * 65, "sp ace"]
BAD_NAMES = ["", "../a", "/abs", "a//b", "a/b/c/d/e", ".x", "a/../b"]


def make_video(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def read_uri(uri: str) -> bytes:
    """What the detector would read: a local path, or an HTTP(S) URL (presigned on S3)."""
    if uri.startswith(("http://", "https://")):
        with urllib.request.urlopen(uri, timeout=10) as response:
            return bytes(response.read())
    return Path(uri).read_bytes()


def tamper(url: str) -> str:
    """The same URL with one character of its signature changed."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    changed = []
    for key, value in query:
        if key.lower() in {"x-amz-signature", "signature"}:
            value = value[:-1] + ("0" if value[-1] != "0" else "1")
        changed.append((key, value))
    assert changed != query, f"no signature parameter in {url}"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(changed)))


def put(backend: Any, ep_id: str, run_id: str, name: str, body: bytes) -> storage_pb2.Artifact:
    return backend.put_artifact(ep_id, run_id, name, iter([body[i : i + 65536] for i in range(0, len(body), 65536)]))


def get(backend: Any, ep_id: str, run_id: str, name: str) -> bytes:
    return b"".join(backend.get_artifact(ep_id, run_id, name))


@pytest.fixture
def episode(backend: Any, tmp_path: Path) -> str:
    backend.create_episode("ep-1", str(make_video(tmp_path, "a.mp4", b"video-a" * 100)), VIDEO, "", False)
    return "ep-1"


def test_episode_create_get_list_idempotent_and_replace(backend: Any, tmp_path: Path) -> None:
    video_a = make_video(tmp_path, "a.mp4", b"video-a" * 100)
    created = backend.create_episode("ep-1", str(video_a), VIDEO, "", False)
    assert created.ep_id == "ep-1" and created.show_id == "default"
    assert created.video_sha256 == hashlib.sha256(video_a.read_bytes()).hexdigest()
    assert created.video.fps == 25.0 and created.current_run_id == ""
    assert read_uri(created.video_uri) == video_a.read_bytes()
    assert read_uri(created.video.uri) == video_a.read_bytes()

    fetched = backend.get_episode("ep-1")
    assert fetched.video_sha256 == created.video_sha256 and fetched.created_at == created.created_at
    again = backend.create_episode("ep-1", str(video_a), VIDEO, "", False)  # same bytes: idempotent
    assert again.created_at == created.created_at and again.video_sha256 == created.video_sha256

    backend.create_episode("ep-2", str(video_a), VIDEO, "show-x", False)
    assert [e.ep_id for e in backend.list_episodes()] == ["ep-1", "ep-2"]
    assert backend.get_episode("ep-2").show_id == "show-x"

    video_b = make_video(tmp_path, "b.mkv", b"video-b" * 120)
    with pytest.raises(AlreadyExists, match="ep-1"):
        backend.create_episode("ep-1", str(video_b), VIDEO, "", False)
    replaced = backend.create_episode("ep-1", str(video_b), VIDEO, "", True)
    assert replaced.video_sha256 == hashlib.sha256(video_b.read_bytes()).hexdigest()
    assert replaced.created_at == created.created_at
    assert read_uri(backend.get_episode("ep-1").video_uri) == video_b.read_bytes()

    with pytest.raises(NotFound):
        backend.get_episode("ep-missing")
    with pytest.raises(NotFound):
        backend.create_episode("ep-3", str(tmp_path / "missing.mp4"), VIDEO, "", False)
    assert [e.ep_id for e in backend.list_episodes()] == ["ep-1", "ep-2"]  # nothing half-created


def test_staged_upload_becomes_the_episode_video(backend: Any) -> None:
    payload = b"staged-video" * 300
    staged = backend.stage_upload("clip.MOV", iter([payload[:1000], payload[1000:]]))
    assert staged.size_bytes == len(payload) and staged.sha256 == hashlib.sha256(payload).hexdigest()
    assert read_uri(staged.uri) == payload
    episode = backend.create_episode("ep-up", "", VIDEO, "", False, upload_id=staged.upload_id)
    assert episode.video_sha256 == staged.sha256
    assert read_uri(episode.video_uri) == payload
    with pytest.raises(NotFound):  # adopted uploads are gone
        backend.discard_upload(staged.upload_id)
    with pytest.raises(InvalidArgument):
        backend.stage_upload("empty.mp4", iter([]))
    other = backend.stage_upload("x.mp4", iter([b"abc"]))
    backend.discard_upload(other.upload_id)
    with pytest.raises(NotFound):
        backend.create_episode("ep-up2", "", VIDEO, "", False, upload_id=other.upload_id)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_invalid_argument(backend: Any, episode: str, tmp_path: Path, bad: str) -> None:
    video = str(make_video(tmp_path, "v.mp4", b"v"))
    calls = [
        lambda: backend.get_episode(bad),
        lambda: backend.create_episode(bad, video, VIDEO, "", False),
        lambda: backend.create_episode("ep-ok", video, VIDEO, bad or "../", False),
        lambda: backend.delete_episode(bad, True),
        lambda: backend.put_artifact(bad, "run-1", "a.json", iter([b"x"])),
        lambda: backend.put_artifact(episode, bad, "a.json", iter([b"x"])),
        lambda: list(backend.get_artifact(bad, "run-1", "a.json")),
        lambda: list(backend.get_artifact(episode, bad or "../", "a.json")),
        lambda: backend.list_artifacts(bad, "run-1", ""),
        lambda: backend.publish_run(episode, bad),
        lambda: backend.publish_run(bad, "run-1"),
        lambda: backend.get_person("default", bad),
        lambda: backend.list_people(bad or "../"),
        lambda: backend.add_person(bad or "../", "Ada", [storage_pb2.Exemplar(model_id="m")], False),
        lambda: backend.update_episode(bad, "show-1", 1, 1),
        lambda: backend.update_episode(episode, bad or "../", 1, 1),
        lambda: backend.list_episodes(bad or "../"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()
    assert [e.ep_id for e in backend.list_episodes()] == [episode]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_malformed_artifact_names_are_invalid_argument(backend: Any, episode: str, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        backend.put_artifact(episode, "run-1", bad, iter([b"x"]))
    with pytest.raises(InvalidArgument):
        list(backend.get_artifact(episode, "run-1", bad))
    with pytest.raises(InvalidArgument):
        backend.artifact_url(episode, "run-1", bad, 60)
    assert backend.list_artifacts(episode, "run-1", "") == []


def test_put_and_get_artifacts_small_and_multipart(backend_factory: BackendFactory, tmp_path: Path) -> None:
    # 5 MiB threshold/parts (S3's minimum part size): an 11 MiB artifact goes up in 3 parts.
    backend = backend_factory(multipart_threshold_bytes=5 * MIB, multipart_part_bytes=5 * MIB)
    backend.create_episode("ep-1", str(make_video(tmp_path, "a.mp4", b"a")), VIDEO, "", False)
    small = b'{"hello": "world"}\n'
    artifact = put(backend, "ep-1", "run-1", "detections.jsonl", small)
    assert artifact.size_bytes == len(small) and artifact.sha256 == hashlib.sha256(small).hexdigest()
    assert artifact.ref.name == "detections.jsonl" and artifact.ref.run_id == "run-1"
    assert get(backend, "ep-1", "run-1", "detections.jsonl") == small

    parts: list[str] = []
    if isinstance(backend, S3Storage):  # count the requests that really went out
        backend._s3.client.meta.events.register("before-call.s3.UploadPart", lambda **kw: parts.append("part"))
        backend._s3.client.meta.events.register("before-call.s3.PutObject", lambda **kw: parts.append("put"))
    large = os.urandom(11 * MIB + 123)
    artifact = put(backend, "ep-1", "run-1", "faces.npy", large)
    assert artifact.size_bytes == len(large) and artifact.sha256 == hashlib.sha256(large).hexdigest()
    chunks = list(backend.get_artifact("ep-1", "run-1", "faces.npy"))
    assert len(chunks) > 1 and b"".join(chunks) == large  # streamed, not one blob
    if isinstance(backend, S3Storage):
        assert parts == ["part"] * 3  # multipart: 5 + 5 + 1 MiB, no single PUT
        put(backend, "ep-1", "run-1", "small.json", b"{}")
        assert parts[-1] == "put"  # below the threshold: one PUT

    put(backend, "ep-1", "run-1", "crops/track_000001/000012.jpg", b"\xff\xd8jpeg")
    assert get(backend, "ep-1", "run-1", "crops/track_000001/000012.jpg") == b"\xff\xd8jpeg"
    with pytest.raises(NotFound):
        list(backend.get_artifact("ep-1", "run-1", "missing.json"))
    with pytest.raises(FailedPrecondition):  # no published run yet
        list(backend.get_artifact("ep-1", "", "detections.jsonl"))
    with pytest.raises(NotFound):
        put(backend, "ep-missing", "run-1", "a.json", b"x")


def test_list_artifacts_paginates_with_start_after_and_limit(backend: Any, episode: str) -> None:
    names = [
        "crops/track_000001/000001.jpg",
        "crops/track_000001/000002.jpg",
        "crops/track_000001/index.json",
        "crops/track_000002/000001.jpg",
        "detections.jsonl",
        "faces.jsonl",
        "faces.npy",
        "identities.json",
        "tracks.mot.txt",
    ]
    for name in reversed(names):
        put(backend, episode, "run-1", name, name.encode())
    listed = backend.list_artifacts(episode, "run-1", "")
    assert [a.ref.name for a in listed] == names
    assert all(a.ref.run_id == "run-1" and a.ref.ep_id == episode for a in listed)
    assert [a.size_bytes for a in listed] == [len(n) for n in names]

    pages, cursor = [], ""
    while True:
        page = backend.list_artifacts(episode, "run-1", "", start_after=cursor, limit=4)
        if not page:
            break
        assert len(page) <= 4
        pages.append([a.ref.name for a in page])
        cursor = page[-1].ref.name
    assert pages == [names[0:4], names[4:8], names[8:]]

    crops = backend.list_artifacts(episode, "run-1", "crops/track_000001/", start_after="", limit=2)
    assert [a.ref.name for a in crops] == names[0:2]
    after = backend.list_artifacts(episode, "run-1", "crops/track_000001/", start_after=names[1], limit=0)
    assert [a.ref.name for a in after] == [names[2]]
    assert backend.list_artifacts(episode, "run-other", "") == []
    assert backend.list_artifacts(episode, "", "") == []  # nothing published yet


def test_artifact_url_fetches_the_bytes_and_rejects_tampering(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory(serve_urls=True)
    episode = "ep-1"
    backend.create_episode(episode, str(make_video(tmp_path, "a.mp4", b"a")), VIDEO, "", False)
    body = b"screentime" * 50
    put(backend, episode, "run-1", "screentime.json", body)
    url = backend.artifact_url(episode, "run-1", "screentime.json", 120)
    assert url.startswith("http://127.0.0.1:")
    assert read_uri(url) == body
    with pytest.raises(urllib.error.HTTPError) as rejected:
        read_uri(tamper(url))
    assert rejected.value.code == 403
    with pytest.raises(NotFound):
        backend.artifact_url(episode, "run-1", "missing.json", 120)


def test_publish_run_needs_a_manifest_and_switches_the_current_run(backend: Any, episode: str) -> None:
    put(backend, episode, "run-1", "tracks.mot.txt", b"run-1 tracks")
    with pytest.raises(FailedPrecondition, match="manifest"):
        backend.publish_run(episode, "run-1")
    assert backend.get_episode(episode).current_run_id == ""
    put(backend, episode, "run-1", "manifest.json", b'{"run": 1}')
    assert backend.publish_run(episode, "run-1").current_run_id == "run-1"
    assert backend.get_episode(episode).current_run_id == "run-1"
    assert get(backend, episode, "", "tracks.mot.txt") == b"run-1 tracks"
    assert [a.ref.name for a in backend.list_artifacts(episode, "", "")] == ["manifest.json", "tracks.mot.txt"]

    put(backend, episode, "run-2", "tracks.mot.txt", b"run-2 tracks")
    put(backend, episode, "run-2", "manifest.json", b'{"run": 2}')
    assert backend.get_episode(episode).current_run_id == "run-1"  # unpublished runs change nothing
    assert backend.publish_run(episode, "run-2").current_run_id == "run-2"
    assert get(backend, episode, "", "tracks.mot.txt") == b"run-2 tracks"
    assert get(backend, episode, "run-1", "tracks.mot.txt") == b"run-1 tracks"  # runs are kept
    with pytest.raises(NotFound):
        backend.publish_run("ep-missing", "run-1")


def test_facebank_crud(backend: Any) -> None:
    exemplar = storage_pb2.Exemplar(model_id="arcface_mbf@abc", embedding=[0.1, 0.2], crop_jpeg=b"jpg", quality=0.9)
    person = backend.add_person("show-1", "Ada Lovelace", [exemplar], False)
    assert person.person_id == "ada-lovelace" and person.show_id == "show-1" and len(person.exemplars) == 1
    assert person.exemplars[0].exemplar_id
    with pytest.raises(AlreadyExists):
        backend.add_person("show-1", "Ada Lovelace", [exemplar], False)
    appended = backend.add_person("show-1", "Ada Lovelace", [exemplar], True)
    assert len(appended.exemplars) == 2
    backend.add_person("show-1", "Grace Hopper", [exemplar], False)
    backend.add_person("", "Alan Turing", [exemplar], False)  # the default show
    assert [p.person_id for p in backend.list_people("show-1")] == ["ada-lovelace", "grace-hopper"]
    assert [p.person_id for p in backend.list_people("")] == ["alan-turing"]
    fetched = backend.get_person("show-1", "ada-lovelace")
    assert fetched.name == "Ada Lovelace" and list(fetched.exemplars[0].embedding) == pytest.approx([0.1, 0.2])
    assert backend.remove_person("show-1", "ada-lovelace") == 2
    with pytest.raises(NotFound):
        backend.get_person("show-1", "ada-lovelace")
    with pytest.raises(NotFound):
        backend.remove_person("show-1", "ada-lovelace")
    with pytest.raises(InvalidArgument):
        backend.add_person("show-1", "  ", [exemplar], False)
    with pytest.raises(InvalidArgument):
        backend.add_person("show-1", "Nobody", [], False)
    assert [p.person_id for p in backend.list_people("show-1")] == ["grace-hopper"]


def test_people_record_who_enrolled_them_and_who_last_added_exemplars(backend: Any) -> None:
    exemplar = storage_pb2.Exemplar(model_id="m@1", embedding=[1.0, 0.0])
    token = acting_as(Principal("service", Role.SERVICE, acting_for="bob"))  # the orchestrator, for bob
    try:
        created = backend.add_person("show-1", "Ada Lovelace", [exemplar], False)
    finally:
        restore(token)
    assert (created.enrolled_by, created.updated_by) == ("bob", "bob")
    token = acting_as(Principal("carol", Role.REVIEWER))
    try:
        appended = backend.add_person("show-1", "Ada Lovelace", [exemplar], True)
    finally:
        restore(token)
    assert (appended.enrolled_by, appended.updated_by) == ("bob", "carol (reviewer)")
    stored = backend.get_person("show-1", "ada-lovelace")  # persisted in the record
    assert (stored.enrolled_by, stored.updated_by) == ("bob", "carol (reviewer)")
    [listed] = backend.list_people("show-1")
    assert listed.enrolled_by == "bob"
    outside_rpc = backend.add_person("show-1", "Grace Hopper", [exemplar], False)
    assert outside_rpc.enrolled_by == "system"
    explicit = backend.add_person("show-1", "Grace Hopper", [exemplar], True, by="erin")
    assert (explicit.enrolled_by, explicit.updated_by) == ("system", "erin")


def test_delete_episode_local_caches_always_s3_objects_only_when_asked(
    backend: Any, episode: str, s3_client: Any
) -> None:
    for name in ("detections.jsonl", "manifest.json", "crops/track_000001/000001.jpg"):
        put(backend, episode, "run-1", name, name.encode())
    backend.publish_run(episode, "run-1")
    if not isinstance(backend, S3Storage):
        assert backend.delete_episode(episode, False) == (1, 0)
        with pytest.raises(NotFound):
            backend.get_episode(episode)
        with pytest.raises(NotFound):
            backend.delete_episode(episode, True)
        return

    prefix = backend._keys.episode(episode) + "/"
    objects = count_objects(s3_client, prefix)
    assert objects == 5  # record, video, three artifacts
    cached = backend.cached_artifact(episode, "", "detections.jsonl")
    assert cached.read_bytes() == b"detections.jsonl"
    assert backend.delete_episode(episode, False) == (1, 0)
    assert not cached.exists()
    assert count_objects(s3_client, prefix) == objects  # every S3 object left in place
    assert backend.get_episode(episode).current_run_id == "run-1"
    assert backend.delete_episode(episode, True) == (0, objects)
    assert count_objects(s3_client, prefix) == 0
    with pytest.raises(NotFound):
        backend.get_episode(episode)
    with pytest.raises(NotFound):
        backend.delete_episode(episode, True)
    assert backend.list_episodes() == []


def test_two_writers_never_point_at_a_run_without_manifest(backend: Any, episode: str) -> None:
    """Two threads publish their own fresh runs 20 times each while a reader follows current_run_id."""
    rounds = 20
    errors: list[BaseException] = []
    seen: set[str] = set()
    done = threading.Event()

    def writer(tag: str) -> None:
        try:
            for i in range(rounds):
                run_id = f"run-{tag}-{i:02d}"
                put(backend, episode, run_id, "tracks.mot.txt", run_id.encode())
                with pytest.raises(FailedPrecondition):  # not finished yet: never published
                    backend.publish_run(episode, run_id)
                put(backend, episode, run_id, "manifest.json", run_id.encode())
                assert backend.publish_run(episode, run_id).current_run_id == run_id
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                current = backend.get_episode(episode).current_run_id
                if current:
                    seen.add(current)
                    assert get(backend, episode, "", "manifest.json") != b""
                    assert get(backend, episode, current, "manifest.json") == current.encode()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("a", "b")]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=30)
    assert not errors, errors[0]
    final = backend.get_episode(episode).current_run_id
    assert final in {f"run-a-{rounds - 1:02d}", f"run-b-{rounds - 1:02d}"}
    assert get(backend, episode, final, "manifest.json") == final.encode()
    assert seen  # the reader did observe published runs


def test_review_records_are_created_exactly_once(backend: Any, episode: str) -> None:
    assert backend.list_review_records(episode) == []
    assert backend.append_review_record(episode, 1, b'{"a": 1}') == 1
    with pytest.raises(AlreadyExists):
        backend.append_review_record(episode, 1, b'{"a": "other"}')
    with pytest.raises(InvalidArgument):
        backend.append_review_record(episode, 0, b"{}")
    with pytest.raises(NotFound):
        backend.append_review_record("ep-missing", 1, b"{}")
    winners: list[int] = []

    def race(i: int) -> None:
        try:
            backend.append_review_record(episode, 2, f'{{"writer": {i}}}'.encode())
            winners.append(i)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(winners) == 1
    backend.append_review_record(episode, 10, b"{}")
    records = backend.list_review_records(episode)
    assert [seq for seq, _ in records] == [1, 2, 10]
    assert records[0][1] == b'{"a": 1}' and records[1][1] == f'{{"writer": {winners[0]}}}'.encode()


def test_stale_staged_uploads_are_swept_and_fresh_ones_kept(backend: Any) -> None:
    import time

    fresh = backend.stage_upload("fresh.mp4", iter([b"fresh"]))
    assert backend.sweep_staging(3600) == 0  # just written: kept
    assert backend.sweep_staging(3600, now=time.time() + 7200) == 1  # two hours later: an orphan
    with pytest.raises(NotFound):
        backend.create_episode("ep-swept", "", VIDEO, "", False, upload_id=fresh.upload_id)
    kept = backend.stage_upload("kept.mp4", iter([b"kept"]))
    assert backend.sweep_staging(3600) == 0
    episode = backend.create_episode("ep-kept", "", VIDEO, "", False, upload_id=kept.upload_id)
    assert read_uri(episode.video_uri) == b"kept"


def test_an_episode_keeps_its_show_season_and_number_and_a_replaced_video_keeps_them(
    backend: Any, tmp_path: Path
) -> None:
    video_a = make_video(tmp_path, "a.mp4", b"video-a" * 100)
    created = backend.create_episode("ep-s1", str(video_a), VIDEO, "show-x", False, season=2, episode_number=5)
    assert (created.show_id, created.season, created.episode_number) == ("show-x", 2, 5)
    stored = backend.get_episode("ep-s1")
    assert (stored.show_id, stored.season, stored.episode_number) == ("show-x", 2, 5)
    [listed] = backend.list_episodes()
    assert (listed.season, listed.episode_number) == (2, 5)
    plain = backend.create_episode("ep-plain", str(video_a), VIDEO, "", False)
    assert (plain.show_id, plain.season, plain.episode_number) == ("default", 0, 0)

    # A new video with nothing said about the show, season or number: the episode keeps its own.
    video_b = make_video(tmp_path, "b.mp4", b"video-b" * 100)
    replaced = backend.create_episode("ep-s1", str(video_b), VIDEO, "", True)
    assert replaced.video_sha256 == hashlib.sha256(video_b.read_bytes()).hexdigest()
    assert (replaced.show_id, replaced.season, replaced.episode_number) == ("show-x", 2, 5)
    stored = backend.get_episode("ep-s1")
    assert (stored.show_id, stored.season, stored.episode_number) == ("show-x", 2, 5)
    # What a replacement does say is taken.
    video_c = make_video(tmp_path, "c.mp4", b"video-c" * 100)
    again = backend.create_episode("ep-s1", str(video_c), VIDEO, "show-y", True, season=3)
    assert (again.show_id, again.season, again.episode_number) == ("show-y", 3, 5)

    staged = backend.stage_upload("clip.mp4", iter([b"staged" * 50]))
    uploaded = backend.create_episode(
        "ep-s2", "", VIDEO, "show-x", False, upload_id=staged.upload_id, season=1, episode_number=10_000
    )
    assert (uploaded.show_id, uploaded.season, uploaded.episode_number) == ("show-x", 1, 10_000)
    assert backend.get_episode("ep-s2").episode_number == 10_000


@pytest.mark.parametrize(
    ("season", "number", "fragment"),
    [(-1, 1, "season"), (1001, 1, "season"), (1, -1, "episode_number"), (1, 10_001, "episode_number")],
)
def test_out_of_range_seasons_and_numbers_are_refused_naming_field_and_value(
    backend: Any, episode: str, tmp_path: Path, season: int, number: int, fragment: str
) -> None:
    value = season if fragment == "season" else number
    with pytest.raises(InvalidArgument, match=rf"{fragment} must be 0 \(not set\) to \d+, got {value}"):
        backend.update_episode(episode, "show-1", season, number)
    stored = backend.get_episode(episode)
    assert (stored.show_id, stored.season, stored.episode_number) == ("default", 0, 0)
    video = str(make_video(tmp_path, "v.mp4", b"another video"))
    with pytest.raises(InvalidArgument, match=fragment):
        backend.create_episode("ep-bad", video, VIDEO, "", False, season=season, episode_number=number)
    with pytest.raises(NotFound):
        backend.get_episode("ep-bad")  # nothing half-created


def test_update_episode_sets_show_season_and_number(backend: Any, episode: str) -> None:
    updated = backend.update_episode(episode, "show-1", 1000, 10_000)  # the largest taken
    assert (updated.ep_id, updated.show_id, updated.season, updated.episode_number) == (episode, "show-1", 1000, 10_000)
    assert read_uri(updated.video_uri) == b"video-a" * 100  # the whole record, video included
    stored = backend.get_episode(episode)
    assert (stored.show_id, stored.season, stored.episode_number) == ("show-1", 1000, 10_000)
    assert stored.video_sha256 == updated.video_sha256 and stored.created_at == updated.created_at
    assert backend.update_episode(episode, "show-1", 1000, 10_000).season == 1000  # unchanged: fine
    cleared = backend.update_episode(episode, "", 0, 0)  # no show named: the default show, numbers unset
    assert (cleared.show_id, cleared.season, cleared.episode_number) == ("default", 0, 0)
    with pytest.raises(NotFound, match="ep-missing"):
        backend.update_episode("ep-missing", "show-1", 1, 1)
    with pytest.raises(NotFound):
        backend.get_episode("ep-missing")  # an update never creates an episode


def test_list_episodes_of_one_show(backend: Any, tmp_path: Path) -> None:
    video = str(make_video(tmp_path, "a.mp4", b"video-a" * 100))
    backend.create_episode("ep-a", video, VIDEO, "show-x", False, season=1, episode_number=1)
    backend.create_episode("ep-b", video, VIDEO, "", False)
    backend.create_episode("ep-c", video, VIDEO, "show-x", False, season=1, episode_number=2)
    backend.create_episode("ep-d", video, VIDEO, "show-y", False)
    assert [e.ep_id for e in backend.list_episodes("show-x")] == ["ep-a", "ep-c"]
    assert [e.ep_id for e in backend.list_episodes("default")] == ["ep-b"]
    assert [e.ep_id for e in backend.list_episodes()] == ["ep-a", "ep-b", "ep-c", "ep-d"]
    assert [e.ep_id for e in backend.list_episodes("")] == ["ep-a", "ep-b", "ep-c", "ep-d"]
    assert backend.list_episodes("no-such-show") == []
    backend.update_episode("ep-d", "show-x", 2, 1)
    assert [e.ep_id for e in backend.list_episodes("show-x")] == ["ep-a", "ep-c", "ep-d"]
    assert backend.list_episodes("show-y") == []
    with pytest.raises(InvalidArgument, match="show id"):
        backend.list_episodes("../x")


def test_an_update_racing_publishes_loses_neither(backend: Any, episode: str) -> None:
    """One thread publishes runs in order while another sets seasons in order, for as long as the
    publisher runs. Each is the only writer of its field, so each must find its own last value still
    there before its next write, and the record must end with both last values."""
    runs = 15
    errors: list[BaseException] = []
    published = threading.Event()
    seasons: list[int] = []
    for i in range(runs):  # finished runs, ready to publish
        put(backend, episode, f"run-{i:02d}", "manifest.json", b"{}")

    def publisher() -> None:
        try:
            for i in range(runs):
                before = backend.get_episode(episode).current_run_id
                assert before == (f"run-{i - 1:02d}" if i else ""), f"publish of run-{i - 1:02d} was undone: {before}"
                assert backend.publish_run(episode, f"run-{i:02d}").current_run_id == f"run-{i:02d}"
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            published.set()

    def updater() -> None:
        try:
            season = 0
            while not published.is_set() or season < 10:
                before = backend.get_episode(episode)
                assert (before.season, before.episode_number) == (season, season * 10), "an update was undone"
                season += 1
                updated = backend.update_episode(episode, "show-race", season, season * 10)
                assert (updated.season, updated.episode_number) == (season, season * 10)
                seasons.append(season)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=publisher), threading.Thread(target=updater)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    final = backend.get_episode(episode)
    assert final.current_run_id == f"run-{runs - 1:02d}"
    assert (final.show_id, final.season, final.episode_number) == ("show-race", seasons[-1], seasons[-1] * 10)
