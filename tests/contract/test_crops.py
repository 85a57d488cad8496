"""Crops saved by a real run, listed with pagination and fetched through their signed URLs."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from faceflow.v1 import orchestrator_pb2, storage_pb2

from services.cli.stack import LocalStack
from services.orchestrator.run.sampler import SamplerSettings
from tests.contract.helpers import expect_status


@pytest.fixture(scope="module")
def cropped_episode(stubs: dict, media: Path) -> str:
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="crops-1", source_path=str(media / "WolfgangLanger_Pexels.mp4"))
    )
    final = list(
        stubs["orchestrator"].RunEpisode(
            orchestrator_pb2.SubmitJobRequest(ep_id="crops-1", options=orchestrator_pb2.RunOptions(stride=2))
        )
    )[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final.message
    return "crops-1"


def _page(stubs: dict, ep: str, **kw: object) -> storage_pb2.ListTrackCropsResponse:
    return stubs["storage"].ListTrackCrops(storage_pb2.ListTrackCropsRequest(ep_id=ep, track_id=1, **kw))


def test_crops_page_through_the_index_with_sample_and_limit(stubs: dict, cropped_episode: str) -> None:
    everything = _page(stubs, cropped_episode, limit=500)
    # ~20 s of track, one crop per sampler window: the whole index fits one page of 500.
    assert len(everything.items) >= 0.75 * 20 / SamplerSettings().window_s and everything.next_start_after == ""
    keys = [i.key for i in everything.items]
    assert keys == sorted(keys) and all(k.startswith("crops/track_000001/") for k in keys)
    paged, cursor = [], ""
    while True:
        page = _page(stubs, cropped_episode, sample=3, limit=4, start_after=cursor)
        assert len(page.items) <= 4
        paged += [i.key for i in page.items]
        cursor = page.next_start_after
        if not cursor:
            break
    assert paged == keys[::3]


def test_crop_urls_serve_4_5_jpegs_and_refuse_tampering(stubs: dict, cropped_episode: str) -> None:
    item = _page(stubs, cropped_episode, limit=1).items[0]
    assert (item.width, item.height) == (160, 200) and item.url.startswith("http://127.0.0.1:")
    body = urllib.request.urlopen(item.url, timeout=10).read()
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (200, 160, 3)
    tampered = item.url.replace("signature=", "signature=0")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    assert refused.value.code == 403
    escape = item.url.split("/artifacts/")[0] + "/artifacts/../../etc/passwd?expires=9999999999&signature=x"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(escape, timeout=10)


def test_listing_without_an_index_falls_back_to_the_object_listing(
    stubs: dict, stack: LocalStack, cropped_episode: str
) -> None:
    episode = stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id=cropped_episode))
    index = (
        stack.data_root
        / "episodes"
        / cropped_episode
        / "runs"
        / episode.current_run_id
        / "crops/track_000001/index.json"
    )
    saved = index.read_bytes()
    index.unlink()
    try:
        with_index = [i.key for i in _page(stubs, cropped_episode, limit=500).items]
        first = _page(stubs, cropped_episode, limit=5)
        second = _page(stubs, cropped_episode, limit=5, start_after=first.next_start_after)
        assert [i.key for i in first.items] + [i.key for i in second.items] == with_index[:10]
        assert first.items[0].ts == pytest.approx(first.items[0].frame_idx / episode.video.fps)
    finally:
        index.write_bytes(saved)


def test_bad_crop_requests(stubs: dict, cropped_episode: str) -> None:
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, lambda: _page(stubs, cropped_episode, limit=501), "limit")
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["storage"].ListTrackCrops(storage_pb2.ListTrackCropsRequest(ep_id=cropped_episode, track_id=0)),
        "track_id",
    )
    expect_status(grpc.StatusCode.NOT_FOUND, lambda: _page(stubs, "no-such-episode"))
    assert list(_page(stubs, cropped_episode, start_after="crops/track_000001/999999.jpg").items) == []


def test_delete_all_needs_the_phrase(stubs: dict) -> None:
    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stubs["storage"].DeleteAllEpisodes(storage_pb2.DeleteAllEpisodesRequest(confirm="yes")),
        "delete all episodes",
    )


def test_harvest_fills_in_crops_for_tracks_without_them(stubs: dict, stack: LocalStack, media: Path) -> None:
    stubs["orchestrator"].CreateEpisode(
        storage_pb2.CreateEpisodeRequest(ep_id="harvest-1", source_path=str(media / "single_face.mp4"))
    )
    final = list(
        stubs["orchestrator"].RunEpisode(
            orchestrator_pb2.SubmitJobRequest(ep_id="harvest-1", options=orchestrator_pb2.RunOptions(skip_crops=True))
        )
    )[-1]
    assert final.state == orchestrator_pb2.JOB_STATE_SUCCEEDED and final.summary.tracks == 1
    assert list(_page(stubs, "harvest-1").items) == []
    harvested = list(stubs["orchestrator"].HarvestCrops(orchestrator_pb2.HarvestCropsRequest(ep_id="harvest-1")))[-1]
    assert harvested.state == orchestrator_pb2.JOB_STATE_SUCCEEDED, harvested.message
    # A 2.4 s track, one crop per sampler window (1 s): 3 crops.
    assert harvested.summary.tracks_harvested == 1
    assert harvested.summary.crops_saved >= 2.4 // SamplerSettings().window_s
    items = _page(stubs, "harvest-1").items
    assert len(items) == harvested.summary.crops_saved and items[0].frame_idx == 0
    assert (stack.data_root / "episodes" / "harvest-1" / "crops" / "track_000001" / "index.json").is_file()
    again = list(stubs["orchestrator"].HarvestCrops(orchestrator_pb2.HarvestCropsRequest(ep_id="harvest-1")))[-1]
    assert again.summary.tracks_harvested == 0  # nothing left to fill in
