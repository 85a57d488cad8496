"""The review UI in a real browser: headless Chromium (Debian's) driven by npm playwright-core, through
the real Envoy to the real stack, on the sample episode. `make web` builds the UI first (make test does).

One scenario, in the order a reviewer works: sign in (a forged token first, refused), upload, run with
live progress, merge and rename (kept across a reload), track moves, screen time, facebank enrolment,
harvest, the Show page across three episodes (link, unlink, name, add to facebank), an error, a delete
the reviewer may not make, then deletes as an admin, and an expired token.
Tokens come from the stack's own issuer (LocalIssuer), as `faceflow auth token` mints them. The page
screenshots land in test-artifacts/web/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli.seaweed import SeaweedServer
from services.cli.stack import LocalStack
from services.cli.web import DIST_DIR, WebFrontend, web_frontend
from services.common.local_issuer import LocalIssuer

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
SCRIPT = Path(__file__).with_name("review_ui.mjs")
# Every 5th frame: the sample's 46 s run in well under a minute here, still a real run of every stage.
STRIDE = 5
SCENARIO_TIMEOUT_S = 600

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # no screenshot of an earlier run passes for this one's
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@dataclass(frozen=True)
class Site:
    frontend: WebFrontend
    tokens: dict[str, str]


def _tokens(data_root: Path) -> dict[str, str]:
    """A reviewer's and an admin's token from the stack's issuer, and one that expired an hour ago."""
    issuer = LocalIssuer.at(data_root)
    return {
        "reviewer": issuer.mint("reviewer", "web-reviewer", 3600),
        "admin": issuer.mint("admin", "web-admin", 3600),
        "expired": issuer.mint("reviewer", "web-reviewer", 60, now=time.time() - 3600),
    }


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A stack of its own: the scenario deletes every episode at the end."""
    data_root = tmp_path_factory.mktemp("web-stack")
    with LocalStack(data_root) as stack, web_frontend(stack, data_root) as running:
        yield Site(running, _tokens(data_root))


def _browse(site: Site, scenario: str, **config: object) -> dict:
    """Run one scenario of review_ui.mjs in headless Chromium; its result, or the failure with context."""
    node, chromium = shutil.which("node"), shutil.which("chromium")
    if not node or not chromium:
        pytest.fail("node and chromium are needed (.ci/run installs them: apt-get install npm chromium)")
    if not (DIST_DIR / "index.html").is_file():
        pytest.fail("the web UI is not built: run `make web` (make test does)")
    frontend = site.frontend
    config |= {
        "scenario": scenario,
        "url": frontend.url,
        "tokens": site.tokens,
        "webDir": str(REPO / "web"),
        "chromium": chromium,
        "outDir": str(ARTIFACTS),
    }
    run = subprocess.run(
        [node, str(SCRIPT), json.dumps(config)], capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S
    )
    lines = run.stdout.strip().splitlines()
    assert lines, f"the browser script printed nothing; stderr:\n{run.stderr[-3000:]}"
    result: dict = json.loads(lines[-1])
    envoy_log = frontend.envoy.log_path.read_text(errors="replace")[-2000:]
    assert "error" not in result, f"{result['error']}\nsteps done: {result['steps']}\nenvoy log tail:\n{envoy_log}"
    # The only console errors allowed are the browser's lines for calls a step expected to be refused.
    assert result["consoleErrors"] == [], result["consoleErrors"]
    return result


def test_review_ui_in_a_browser(frontend: Site, artifacts: Path, sample_episode: Path, media: Path) -> None:
    config = {
        "video": str(sample_episode / "episode.mp4"),
        "shortVideo": str(media / "single_face.mp4"),
        "stride": STRIDE,
        "name": "Test Person",
        "showName": "Show Person",
        "seedImages": [str(p) for p in sorted((sample_episode / "enrol" / "obama").glob("*"))]
        + [str(media / "multi_face.jpg")],
    }
    result = _browse(frontend, "review", **config)

    # The progress bar was read from the page while the stream was live: it moved, then ended full.
    assert len({value for value, _, _ in result["progress"]}) >= 3, result["progress"]
    assert result["cropsShown"] >= 2 and result["harvestedCrops"] >= 1
    assert result["loadMore"][1] > result["loadMore"][0]
    assert result["screenTimeSegments"] >= 1
    assert "Enrolled Barack Obama with 1 exemplar(s)" in result["enrolled"]
    assert any("multi_face.jpg" in r and "faces" in r for r in result["rejected"]), result["rejected"]
    assert "does not exist" in result["errorText"] and "no-such-episode" in result["errorText"]
    assert "1 local folder(s) and 0 S3 object(s) removed" in result["deleted"]
    # Sign-in: the hint, a forged token refused with a sentence, who is signed in, a refused delete in
    # the server's words (the episode stayed: the admin deleted it afterwards), an expired token.
    assert result["signInHint"] == "faceflow auth token --role reviewer"
    assert "unauthenticated" in result["invalidTokenError"], result["invalidTokenError"]
    assert "web-reviewer" in result["signedInAs"] and "reviewer" in result["signedInAs"], result["signedInAs"]
    assert "Not allowed" in result["deleteDenied"] and "admin" in result["deleteDenied"], result["deleteDenied"]
    assert "permission denied" in result["deleteDenied"], result["deleteDenied"]
    assert "expired" in result["expiredTokenError"].lower(), result["expiredTokenError"]
    # The Show page (#/shows/demo): sample S1E1, the same video again as sample-b S1E2, short S2E1.
    show = result["show"]
    assert show["columns"] == ["Person", "S1E1", "S1E2", "S2E1", "Total", "Share", "Episodes"], show["columns"]
    assert show["named"] == "Test Person" and show["spanning"], show
    assert show["linked"][0].startswith("sample/") and show["linked"][1].startswith("sample-b/"), show["linked"]
    assert re.fullmatch(r"unknown person #\d+", show["unlinked"]), show["unlinked"]
    assert all(float(cell) > 0 for cell in show["namedCells"]), show["namedCells"]
    assert all(float(cell) > 0 for cell in show["suggestedNamed"]), show["suggestedNamed"]
    assert re.match(r"Added [1-9]\d* face\(s\) of Test Person to the facebank of demo", show["facebank"]), show
    pages = ("signin", "signin-invalid", "episode", "faces", "faces-tracks", "screen-time", "facebank", "delete-denied")
    pages += ("show-page", "show-page-named", "faces-add-facebank")
    for page in (*pages, "episodes"):
        assert (ARTIFACTS / f"{page}.png").stat().st_size > 10_000, page
    _readme_image(ARTIFACTS / "faces.png", ARTIFACTS / "faces-review.png")


def test_s3_mode_crops_and_delete_in_a_browser(
    artifacts: Path, media: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Against a real S3 server (SeaweedFS on loopback): crops load from presigned URLs of the S3 endpoint,
    and deleting with the S3 choice reports the objects it removed."""
    root = tmp_path_factory.mktemp("web-s3")
    with (
        SeaweedServer(root / "seaweed") as s3,
        LocalStack(root / "cache", extra_env=s3.env()) as stack,
        web_frontend(stack, root) as frontend,
    ):
        site = Site(frontend, _tokens(root / "cache"))
        result = _browse(site, "s3", shortVideo=str(media / "single_face.mp4"))
    assert result["cropsShown"] >= 1 and result["cropUrl"].startswith(s3.endpoint_url), result["cropUrl"]
    removed = re.search(r"(\d+) S3 object\(s\) removed", result["deleted"])
    assert removed and int(removed.group(1)) > 0, result["deleted"]


def _readme_image(screenshot: Path, out: Path) -> None:
    """The faces page at 3/4 size in 256 colours: small enough to commit as docs/img/faces-review.png."""
    from PIL import Image

    with Image.open(screenshot) as image:
        small = image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
        small.quantize(256).save(out, optimize=True)
