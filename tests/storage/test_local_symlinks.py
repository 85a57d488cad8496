"""The local backend never follows a symlink out of its data root (docs/storage.md, "Symlinks").

Each test plants links by hand, as an operator, another program or an attacker with access to the
volume could, and checks that nothing outside the root is read, served, listed, written or deleted.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from faceflow.v1 import common_pb2, storage_pb2

from services.common.errors import FailedPrecondition, NotFound
from services.storage.crops import list_track_crops
from services.storage.local import LocalStorage

VIDEO = common_pb2.VideoInfo(fps=25.0, frame_count=50, width=64, height=48, duration_s=2.0, codec="h264")
SECRET = b"TOP SECRET: not faceflow's to serve"
EP, RUN = "ep-1", "run-a"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every data root, holding a secret file and a secret folder."""
    folder = tmp_path / "outside"
    (folder / "dir").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "dir" / "secret.txt").write_bytes(SECRET)
    (folder / "dir" / "000001.jpg").write_bytes(SECRET)
    return folder


@pytest.fixture
def store(local_factory: Callable[..., LocalStorage], tmp_path: Path) -> LocalStorage:
    """An episode with a run (two real artifacts and a crop), serving signed URLs."""
    storage = local_factory(serve_urls=True)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"video" * 10)
    storage.create_episode(EP, str(video), VIDEO, "", False)
    for name, body in (("tracks.txt", b"tracks"), ("crops/track_000001/000001.jpg", b"jpg"), ("manifest.json", b"{}")):
        storage.put_artifact(EP, RUN, name, iter([body]))
    return storage


def run_dir(store: LocalStorage) -> Path:
    return store.root / "episodes" / EP / "runs" / RUN


def get(store: LocalStorage, name: str, run_id: str = RUN) -> bytes:
    return b"".join(store.get_artifact(EP, run_id, name))


def names(store: LocalStorage, prefix: str = "", run_id: str = RUN) -> list[str]:
    return [a.ref.name for a in store.list_artifacts(EP, run_id, prefix)]


def untouched(outside: Path) -> bool:
    return (
        (outside / "secret.txt").read_bytes() == SECRET
        and (outside / "dir" / "secret.txt").read_bytes() == SECRET
        and sorted(p.name for p in outside.iterdir()) == ["dir", "secret.txt"]
        and sorted(p.name for p in (outside / "dir").iterdir()) == ["000001.jpg", "secret.txt"]
    )


def test_a_linked_file_is_not_found_by_get_artifact_or_url(store: LocalStorage, outside: Path) -> None:
    (run_dir(store) / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(NotFound, match="leak.txt") as refused:
        get(store, "leak.txt")
    assert str(outside) not in str(refused.value)
    with pytest.raises(NotFound, match="leak.txt"):
        store.artifact_url(EP, RUN, "leak.txt", 60)
    assert get(store, "tracks.txt") == b"tracks"  # real artifacts still read


def test_a_signed_url_stops_serving_a_file_swapped_for_a_link(store: LocalStorage, outside: Path) -> None:
    url = store.artifact_url(EP, RUN, "crops/track_000001/000001.jpg", 60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"jpg"
    crop = run_dir(store) / "crops" / "track_000001" / "000001.jpg"
    crop.unlink()
    crop.symlink_to(outside / "secret.txt")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 404
    assert SECRET not in refused.value.read()


def test_a_signed_url_through_a_linked_folder_is_not_served(store: LocalStorage, outside: Path) -> None:
    url = store.artifact_url(EP, RUN, "crops/track_000001/000001.jpg", 60)
    crops = run_dir(store) / "crops"
    crops.rename(run_dir(store) / "crops-real")
    crops.mkdir()
    (crops / "track_000001").symlink_to(outside / "dir")  # the same URL now leads outside
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 404


def test_listings_skip_linked_files_and_never_enter_linked_folders(store: LocalStorage, outside: Path) -> None:
    (run_dir(store) / "leak.txt").symlink_to(outside / "secret.txt")
    (run_dir(store) / "linked").symlink_to(outside / "dir", target_is_directory=True)
    (run_dir(store) / "crops" / "track_000001" / "000002.jpg").symlink_to(outside / "secret.txt")
    (run_dir(store) / "crops" / "track_000002").symlink_to(outside / "dir", target_is_directory=True)
    assert names(store) == ["crops/track_000001/000001.jpg", "manifest.json", "tracks.txt"]
    assert names(store, "linked/") == []
    assert names(store, "crops/track_000002/") == []
    with pytest.raises(NotFound):
        get(store, "linked/secret.txt")
    with pytest.raises(NotFound):
        get(store, "crops/track_000002/000001.jpg")

    def crops(track_id: int) -> list[str]:
        request = storage_pb2.ListTrackCropsRequest(ep_id=EP, run_id=RUN, track_id=track_id)
        return [item.key for item in list_track_crops(store, request).items]

    assert crops(1) == ["crops/track_000001/000001.jpg"]
    assert crops(2) == []
    # An index that names the linked crop does not make it listed either.
    index = {
        "items": [
            {"key": f"crops/track_000001/00000{i}.jpg", "frame_idx": i, "ts": i / 25, "width": 8, "height": 8}
            for i in (1, 2)
        ]
    }
    store.put_artifact(EP, RUN, "crops/track_000001/index.json", iter([json.dumps(index).encode()]))
    assert crops(1) == ["crops/track_000001/000001.jpg"]
    assert untouched(outside)


def test_a_linked_file_inside_the_root_is_still_read(store: LocalStorage) -> None:
    (run_dir(store) / "alias.txt").symlink_to(run_dir(store) / "tracks.txt")
    assert get(store, "alias.txt") == b"tracks"
    assert "alias.txt" in names(store)


def test_publishing_never_links_a_file_from_outside(store: LocalStorage, outside: Path) -> None:
    (run_dir(store) / "leak.txt").symlink_to(outside / "secret.txt")
    store.publish_run(EP, RUN)
    current = store.root / "episodes" / EP
    assert (current / "tracks.txt").read_bytes() == b"tracks"
    assert not (current / "leak.txt").exists() and not (current / "leak.txt").is_symlink()
    assert names(store, run_id="") == ["crops/track_000001/000001.jpg", "manifest.json", "tracks.txt"]


def test_writes_never_go_through_a_linked_folder(store: LocalStorage, outside: Path) -> None:
    (run_dir(store) / "linked").symlink_to(outside / "dir", target_is_directory=True)
    with pytest.raises(FailedPrecondition, match="linked/new.txt") as refused:
        store.put_artifact(EP, RUN, "linked/new.txt", iter([b"x"]))
    assert str(outside) not in str(refused.value)
    (store.root / "episodes" / EP / "runs" / "run-b").symlink_to(outside / "dir", target_is_directory=True)
    with pytest.raises(FailedPrecondition):
        store.put_artifact(EP, "run-b", "tracks.txt", iter([b"x"]))
    # A link in the place of the file itself is replaced, not written through.
    (run_dir(store) / "over.txt").symlink_to(outside / "secret.txt")
    store.put_artifact(EP, RUN, "over.txt", iter([b"mine"]))
    assert not (run_dir(store) / "over.txt").is_symlink() and get(store, "over.txt") == b"mine"
    assert untouched(outside)


def test_a_linked_episode_folder_is_not_listed_read_or_deleted_through(store: LocalStorage, outside: Path) -> None:
    foreign = outside / "dir" / "ep-x"
    foreign.mkdir()
    (foreign / "episode.json").write_text(json.dumps({"ep_id": "ep-x", "created_at": "2024-01-01T00:00:00Z"}))
    (foreign / "runs" / RUN).mkdir(parents=True)
    (foreign / "runs" / RUN / "secret.txt").write_bytes(SECRET)
    link = store.root / "episodes" / "ep-x"
    link.symlink_to(foreign, target_is_directory=True)

    assert [e.ep_id for e in store.list_episodes()] == [EP]
    with pytest.raises(NotFound, match="ep-x"):
        store.get_episode("ep-x")
    with pytest.raises(NotFound):
        b"".join(store.get_artifact("ep-x", RUN, "secret.txt"))
    assert store.delete_episode("ep-x", False) == (0, 0)  # the link goes, what it points at stays
    assert not link.is_symlink() and not link.exists()
    assert (foreign / "episode.json").is_file() and (foreign / "runs" / RUN / "secret.txt").read_bytes() == SECRET


def test_deleting_an_episode_removes_links_inside_it_not_their_targets(store: LocalStorage, outside: Path) -> None:
    (run_dir(store) / "linked").symlink_to(outside / "dir", target_is_directory=True)
    (run_dir(store) / "leak.txt").symlink_to(outside / "secret.txt")
    (store.root / "episodes" / EP / "review").symlink_to(outside / "dir", target_is_directory=True)
    assert store.delete_episode(EP, False) == (1, 0)
    assert not (store.root / "episodes" / EP).exists()
    assert untouched(outside)


def test_the_facebank_ignores_linked_records_and_folders(
    local_factory: Callable[..., LocalStorage], outside: Path
) -> None:
    store = local_factory()
    exemplar = storage_pb2.Exemplar(model_id="m@1", embedding=[1.0, 0.0])
    store.add_person("show-1", "Ada Lovelace", [exemplar], False)
    (outside / "dir" / "eve.json").write_text(json.dumps({"person_id": "eve", "name": "Eve", "show_id": "show-1"}))
    (store.root / "facebank" / "show-1" / "eve.json").symlink_to(outside / "dir" / "eve.json")
    assert [p.person_id for p in store.list_people("show-1")] == ["ada-lovelace"]
    with pytest.raises(NotFound):
        store.get_person("show-1", "eve")
    with pytest.raises(NotFound):
        store.remove_person("show-1", "eve")
    assert (outside / "dir" / "eve.json").is_file()

    (store.root / "facebank" / "show-2").symlink_to(outside / "dir", target_is_directory=True)
    assert store.list_people("show-2") == []
    with pytest.raises(FailedPrecondition):
        store.add_person("show-2", "Grace Hopper", [exemplar], False)
    assert not (outside / "dir" / "grace-hopper.json").exists()
    (outside / "dir" / "eve.json").unlink()
    assert untouched(outside)


def test_staging_links_are_never_swept_or_discarded_through(
    local_factory: Callable[..., LocalStorage], outside: Path
) -> None:
    store = local_factory()
    staging = store.root / "staging"
    staging.mkdir()
    (staging / "up-0123456789abcdef").symlink_to(outside / "dir", target_is_directory=True)
    old = 1_000_000_000
    os.utime(staging / "up-0123456789abcdef", (old, old), follow_symlinks=False)
    with pytest.raises(NotFound):
        store.discard_upload("up-0123456789abcdef")
    with pytest.raises(NotFound):
        store.create_episode("ep-s", "", VIDEO, "", False, upload_id="up-0123456789abcdef")
    assert store.sweep_staging(3600) == 1  # the stale link goes; its target stays
    assert not (staging / "up-0123456789abcdef").is_symlink()
    assert untouched(outside)

    # A staging folder that is itself a link out of the root is left alone entirely.
    staging.rmdir()
    (outside / "dir" / "up-aaaaaaaaaaaaaaaa").mkdir()
    (outside / "dir" / "up-aaaaaaaaaaaaaaaa" / "video.mp4").write_bytes(b"theirs")
    os.utime(outside / "dir" / "up-aaaaaaaaaaaaaaaa" / "video.mp4", (old, old))
    os.utime(outside / "dir" / "up-aaaaaaaaaaaaaaaa", (old, old))
    staging.symlink_to(outside / "dir", target_is_directory=True)
    assert store.sweep_staging(3600) == 0
    assert (outside / "dir" / "up-aaaaaaaaaaaaaaaa" / "video.mp4").read_bytes() == b"theirs"
    with pytest.raises(FailedPrecondition):
        store.stage_upload("v.mp4", iter([b"data"]))
    assert sorted(p.name for p in (outside / "dir").iterdir()) == ["000001.jpg", "secret.txt", "up-aaaaaaaaaaaaaaaa"]


def test_review_records_behind_a_link_are_not_read_or_written(store: LocalStorage, outside: Path) -> None:
    (outside / "dir" / "000001.json").write_bytes(SECRET)
    (store.root / "episodes" / EP / "review").symlink_to(outside / "dir", target_is_directory=True)
    assert store.list_review_records(EP) == []
    with pytest.raises(FailedPrecondition):
        store.append_review_record(EP, 2, b"{}")
    assert not (outside / "dir" / "000002.json").exists()
    (outside / "dir" / "000001.json").unlink()
    assert untouched(outside)


def test_discarding_a_staged_link_removes_only_the_upload_folder(store: LocalStorage) -> None:
    episode_video = Path(store.get_episode(EP).video_uri)
    folder = store.root / "staging" / "up-0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "video.mp4").symlink_to(episode_video)  # inside the root: followed, but only the link goes
    store.discard_upload("up-0123456789abcdef")
    assert not folder.exists()
    assert episode_video.read_bytes() == b"video" * 10 and store.get_episode(EP).ep_id == EP
