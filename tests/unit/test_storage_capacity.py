"""Upload admission: CheckUploadCapacity's arithmetic (fake free space) and StageUpload stopping at the headroom."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from faceflow.v1 import storage_pb2

from services.common.config import Settings
from services.common.errors import InvalidArgument, ResourceExhausted
from services.storage import local_staging as local_module
from services.storage.backend import UploadLimits
from services.storage.local import LocalStorage
from services.storage.s3 import S3Settings, S3Storage
from services.storage.server import StorageServicer

GIB = 1024**3
MIB = 1024**2


@pytest.fixture
def free(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The data root's free bytes, as shutil.disk_usage reports them: set state["free"] in a test."""
    state = {"free": 20 * GIB, "calls": 0}

    def disk_usage(path: object) -> object:
        state["calls"] += 1
        return shutil._ntuple_diskusage(1000 * GIB, 1000 * GIB - state["free"], state["free"])  # type: ignore[attr-defined]

    monkeypatch.setattr(local_module.shutil, "disk_usage", disk_usage)
    return state


def store(tmp_path: Path, max_gib: float = 64, headroom_gib: float = 2) -> LocalStorage:
    limits = UploadLimits(max_bytes=int(max_gib * GIB), headroom_bytes=int(headroom_gib * GIB))
    return LocalStorage(tmp_path / "data", limits=limits)


def staged(storage: LocalStorage) -> list[Path]:
    folder = storage.root / "staging"
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_limits_come_from_the_service_settings() -> None:
    settings = Settings.from_env({"FACEFLOW_MAX_UPLOAD_BYTES": "5000", "FACEFLOW_UPLOAD_HEADROOM_BYTES": "7"})
    assert UploadLimits.from_settings(settings) == UploadLimits(max_bytes=5000, headroom_bytes=7)
    assert UploadLimits.from_settings(Settings()) == UploadLimits(max_bytes=64 * GIB, headroom_bytes=2 * GIB)


@pytest.mark.parametrize("size", [0, -1, -(2**40)])
def test_sizes_that_are_not_positive_are_invalid(tmp_path: Path, free: dict[str, int], size: int) -> None:
    with pytest.raises(InvalidArgument, match="positive"):
        store(tmp_path).check_upload_capacity(size)


def test_a_size_above_the_maximum_is_invalid_and_names_the_limit_in_gib(tmp_path: Path, free: dict[str, int]) -> None:
    free["free"] = 500 * GIB
    storage = store(tmp_path, max_gib=10)
    assert storage.check_upload_capacity(10 * GIB) == 10 * GIB  # exactly the maximum is taken
    with pytest.raises(InvalidArgument, match=r"larger than 10 GiB, the largest video"):
        storage.check_upload_capacity(10 * GIB + 1)


def test_free_space_minus_headroom_is_what_fits(tmp_path: Path, free: dict[str, int]) -> None:
    storage = store(tmp_path)
    assert storage.check_upload_capacity(1) == 18 * GIB  # 20 free - 2 headroom
    assert storage.check_upload_capacity(18 * GIB) == 18 * GIB
    with pytest.raises(ResourceExhausted) as refused:
        storage.check_upload_capacity(19 * GIB)
    assert str(refused.value) == (
        "the store has 20 GiB free; an upload of 19 GiB would leave less than the 2 GiB headroom"
    )
    free["free"] = int(1.5 * GIB)  # already below the headroom: nothing fits
    with pytest.raises(ResourceExhausted, match="the store has 1.5 GiB free; an upload of 1 bytes"):
        storage.check_upload_capacity(1)


def test_the_maximum_caps_what_fits_on_a_large_disk(tmp_path: Path, free: dict[str, int]) -> None:
    free["free"] = 900 * GIB
    assert store(tmp_path, max_gib=64).check_upload_capacity(1) == 64 * GIB


def test_uploads_in_staging_count_against_free_space(tmp_path: Path, free: dict[str, int]) -> None:
    storage = store(tmp_path)
    first = storage.stage_upload("a.mp4", iter([b"x" * MIB]))  # copied again when adopted
    assert storage.check_upload_capacity(1) == 18 * GIB - MIB
    with pytest.raises(ResourceExhausted, match=r"1 MiB|held by uploads in staging"):
        storage.check_upload_capacity(18 * GIB)
    storage.discard_upload(first.upload_id)
    assert storage.check_upload_capacity(18 * GIB) == 18 * GIB


def test_staging_stops_when_the_disk_would_drop_below_the_headroom(
    tmp_path: Path, free: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "SPACE_CHECK_BYTES", MIB)
    storage = store(tmp_path, headroom_gib=1)
    start = 1 * GIB + 3 * MIB  # room for 3 MiB above the headroom
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:
        for _ in range(20):  # 20 MiB offered
            free["free"] = start - sent["bytes"]  # the disk fills as the upload is written
            sent["bytes"] += 256 * 1024
            yield b"v" * (256 * 1024)

    with pytest.raises(ResourceExhausted, match=r"ran out of room while receiving 'big.mp4'.*1 GiB must stay free"):
        storage.stage_upload("big.mp4", chunks())
    assert sent["bytes"] <= 5 * MIB  # stopped within one check window of the headroom
    assert staged(storage) == []  # nothing left behind
    assert free["calls"] >= 3  # checked as it went, not only at the start


def test_a_small_upload_is_checked_once_and_kept(tmp_path: Path, free: dict[str, int]) -> None:
    storage = store(tmp_path)
    upload = storage.stage_upload("small.mp4", iter([b"a" * 1000, b"b" * 1000]))
    assert upload.size_bytes == 2000 and free["calls"] == 1


def test_staging_refuses_past_the_configured_maximum(tmp_path: Path, free: dict[str, int]) -> None:
    storage = LocalStorage(tmp_path / "data", limits=UploadLimits(max_bytes=1000, headroom_bytes=0))
    with pytest.raises(InvalidArgument, match="exceeds 1000 bytes"):
        storage.stage_upload("v.mp4", iter([b"x" * 600, b"x" * 600]))
    assert staged(storage) == []


def test_s3_checks_only_the_maximum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_disk(path: object) -> object:
        raise AssertionError("the S3 backend has no disk to measure")

    monkeypatch.setattr(shutil, "disk_usage", no_disk)
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test")
    s3 = S3Storage(
        S3Settings(bucket="faceflow-tests", endpoint_url="http://127.0.0.1:9", local_cache_dir=tmp_path),
        session,
        limits=UploadLimits(max_bytes=5 * GIB, headroom_bytes=2 * GIB),
    )
    assert s3.check_upload_capacity(5 * GIB) == 5 * GIB
    assert s3.check_upload_capacity(1) == 5 * GIB
    with pytest.raises(InvalidArgument, match="larger than 5 GiB"):
        s3.check_upload_capacity(5 * GIB + 1)
    with pytest.raises(InvalidArgument, match="positive"):
        s3.check_upload_capacity(0)


def test_the_rpc_returns_what_fits(tmp_path: Path, free: dict[str, int]) -> None:
    servicer = StorageServicer(store(tmp_path))

    def call(size: int) -> storage_pb2.CheckUploadCapacityResponse:
        request = storage_pb2.CheckUploadCapacityRequest(size_bytes=size)
        return servicer.CheckUploadCapacity(request, None)  # type: ignore[arg-type]

    assert call(GIB).max_bytes == 18 * GIB
    with pytest.raises(ResourceExhausted):
        call(19 * GIB)
