"""`faceflow run VIDEO` against a running stack uploads the video (faceflow.client): the stack keeps
its own copy, so the original may go before the episode is run again."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from faceflow.v1 import storage_pb2

from services.cli.stack import LocalStack
from services.common.local_issuer import LocalIssuer
from tests.e2e.test_jobs_cli import faceflow

pytestmark = pytest.mark.e2e


def test_run_uploads_a_copy_the_original_can_go(stack: LocalStack, stubs: dict, media: Path, tmp_path: Path) -> None:
    original = tmp_path / "to-upload.mp4"
    shutil.copyfile(media / "single_face.mp4", original)
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    # A user's token, as from another machine: a path could not be taken from it, only an upload.
    token = LocalIssuer.at(stack.data_root).mint("reviewer", "remote-user", 600)
    first = faceflow(stack, "run", str(original), "--episode", "cli-upload", "--stride", "5", token=token)
    assert first.returncode == 0, first.stderr[-3000:]
    episode = stubs["storage"].GetEpisode(storage_pb2.GetEpisodeRequest(ep_id="cli-upload"))
    assert episode.video_sha256 == digest

    original.unlink()
    again = faceflow(stack, "run", "--episode", "cli-upload", "--stride", "10", token=token)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "screen time" in again.stdout.lower() or again.stdout.strip(), again.stdout

    # A missing file is named before any call is made.
    missing = faceflow(stack, "run", str(tmp_path / "gone.mp4"), "--episode", "cli-missing")
    assert missing.returncode == 2 and "gone.mp4 does not exist" in missing.stderr


def test_run_from_an_s3_uri_needs_the_bucket(stack: LocalStack) -> None:
    """The shared stack keeps episodes on its disk: an s3:// source is refused with the reason."""
    refused = faceflow(stack, "run", "s3://videos/season-1/e01.mp4", "--episode", "cli-s3")
    assert refused.returncode == 2, refused.stderr
    assert "S3 storage backend" in refused.stderr
