"""The Link review operation (cross-episode links) on a reviewed view: validated, carried by merges."""

from __future__ import annotations

import numpy as np
import pytest
from faceflow.v1 import orchestrator_pb2

from services.common.errors import InvalidArgument, NotFound
from services.orchestrator.review.view import ReviewView, Track


def _view() -> ReviewView:
    tracks = {t: Track(t, np.arange(t * 10, t * 10 + 5), np.zeros((5, 4), np.float32)) for t in (1, 2, 3)}
    return ReviewView(tracks=tracks, identities={"id_0001": [1], "id_0002": [2], "id_0003": [3]})


def _link(identity: str, link_id: str) -> orchestrator_pb2.ReviewOp:
    return orchestrator_pb2.ReviewOp(link=orchestrator_pb2.ReviewOp.Link(identity_id=identity, link_id=link_id))


def test_link_and_unlink_are_recorded_per_identity() -> None:
    view = _view()
    view.apply(_link("id_0001", "lnk-0123456789ab"), 1)
    view.apply(_link("id_0002", ""), 2)
    assert view.links == {"id_0001": "lnk-0123456789ab", "id_0002": ""}


@pytest.mark.parametrize("bad", ["lnk-XYZ", "0123456789ab", "lnk-0123456789abc", "../x"])
def test_a_malformed_link_id_is_refused_and_changes_nothing(bad: str) -> None:
    view = _view()
    with pytest.raises(InvalidArgument, match="malformed link id"):
        view.apply(_link("id_0001", bad), 1)
    assert view.links == {}


def test_linking_an_unknown_identity_is_not_found() -> None:
    with pytest.raises(NotFound):
        _view().apply(_link("id_0009", "lnk-0123456789ab"), 1)


def test_a_merge_keeps_the_link_and_a_vanished_identity_loses_it() -> None:
    view = _view()
    view.apply(_link("id_0001", "lnk-0123456789ab"), 1)
    merge = orchestrator_pb2.ReviewOp.Merge(source_identity_id="id_0001", target_identity_id="id_0002")
    view.apply(orchestrator_pb2.ReviewOp(merge=merge), 2)
    assert view.links == {"id_0002": "lnk-0123456789ab"}
    view.apply(_link("id_0003", "lnk-aaaaaaaaaaaa"), 3)
    view.apply(orchestrator_pb2.ReviewOp(delete_track=orchestrator_pb2.ReviewOp.DeleteTrack(track_id=3)), 4)
    assert "id_0003" not in view.links
