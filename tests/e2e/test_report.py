"""The HTML report of a real run: self-contained, complete, and actually rendered by a real browser.

The e2e tests enrol one person and run the sample episode through the five services with the CLI,
write the report, check its HTML, then screenshot it in headless Chromium and find the timeline
chart and every identity's first face crop in the screenshot (template matching), so "the page
renders" means the contact sheet and the timeline are on screen, not just that a file exists.
The screenshot is kept in test-artifacts/report.png for people to look at.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.cli.stack import LocalStack
from services.common.errors import FailedPrecondition, NotFound
from services.reports import report, timeline

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "test-artifacts" / "report.png"
EPISODE = "report-test"
SHOW = "report-test"  # its own facebank, so other tests sharing the session stack cannot change the labels
PERSON = "Barack Obama"
WINDOW = (1280, 2400)
CHROMIUM_NAMES = ("chromium", "/usr/bin/chromium")
CHROMIUM_APT = (
    "install it with `apt-get install -y chromium fonts-dejavu-core` (Debian; on Ubuntu the apt package is a snap stub)"
)
CHROMIUM_TIMEOUT_S = 120
# Template-match score (normalised correlation) above which an image counts as found on screen:
# browser and OpenCV resample differently, so a visible image scores ~0.95, an absent one < 0.5.
FOUND_SCORE = 0.8
# Grey-level standard deviation below which a screenshot region counts as blank.
MIN_REGION_STD = 10.0
# The screenshot is searched at 1/4 scale for the (large) charts: 16x fewer pixels, same answer.
CHART_SEARCH_SCALE = 4

PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]* width="(\d+)" height="(\d+)"')
JPEG_URI = re.compile(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"')
ROW = re.compile(r'<tr id="identity-([^"]+)"[^>]*>(.*?)</tr>', re.S)


def faceflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def report_run(
    stack: LocalStack, sample_episode: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, float]:
    """(run folder, report.html, seconds to write the report) for the sample episode at stride 2."""
    env = {
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_DATA_ROOT": str(stack.data_root),  # this machine's user: the stack's service token
    }
    images = sorted(str(p) for p in (sample_episode / "enrol" / "obama").iterdir())
    added = faceflow("facebank", "add", "--show", SHOW, "--name", PERSON, *images, env=env)
    assert added.returncode == 0, added.stderr[-3000:]
    video = str(sample_episode / "episode.mp4")
    run = faceflow("run", video, "--episode", EPISODE, "--stride", "2", "--show", SHOW, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = stack.data_root / "episodes" / EPISODE
    started = time.monotonic()
    path = report.write_report(run_dir, tmp_path_factory.mktemp("report"), EPISODE)
    return run_dir, path, time.monotonic() - started


def _decode(b64: str, flags: int = cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), flags)
    assert image is not None, "an embedded image does not decode"
    return image


def _find(screen: np.ndarray, template: np.ndarray, scale: int = 1) -> tuple[float, tuple[int, int]]:
    """Best normalised-correlation score and top-left (x, y) of template in screen, in screen pixels."""
    if scale > 1:
        screen = cv2.resize(screen, (screen.shape[1] // scale, screen.shape[0] // scale), interpolation=cv2.INTER_AREA)
        template = cv2.resize(
            template, (template.shape[1] // scale, template.shape[0] // scale), interpolation=cv2.INTER_AREA
        )
    scores = cv2.matchTemplate(screen, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    return float(best), (x * scale, y * scale)


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"headless Chromium is needed to render the report and was not found as {CHROMIUM_NAMES}: {CHROMIUM_APT}"
    )


def _screenshot(html: Path, out: Path, profile: Path) -> None:
    command = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={out}",
        html.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and out.is_file(), f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"


@pytest.mark.e2e
def test_report_is_self_contained_and_shows_every_identity(report_run: tuple[Path, Path, float]) -> None:
    run_dir, path, _ = report_run
    text = path.read_text(encoding="utf-8")
    identities = json.loads((run_dir / "identities.json").read_text())["identities"]
    assert identities, "the run found no identities"
    assert any(i["label"] == PERSON for i in identities), "the enrolled person was not auto-named"
    assert PERSON in text
    assert not re.search(r"https?://", text, re.I), "the report must not reference the network"
    assert not re.search(r"<script|<link|@import|url\(", text, re.I)
    assert len(PNG_URI.findall(text)) == 2  # the screen-time bars and the timeline
    rows = dict(ROW.findall(text))
    for identity in identities:
        assert identity["identity_id"] in text
        crops = JPEG_URI.findall(rows[identity["identity_id"]])
        assert 1 <= len(crops) <= 8, identity["identity_id"]
        assert all(_decode(c).shape == (200, 160) for c in crops)  # the saved 4:5 crops


@pytest.mark.e2e
def test_timeline_export_of_the_real_run_adds_up_to_screentime_json(
    report_run: tuple[Path, Path, float], tmp_path: Path
) -> None:
    run_dir, _, _ = report_run
    rows, meta = timeline.load_rows(run_dir)
    screentime = json.loads((run_dir / "screentime.json").read_text())
    summed = timeline.totals(timeline.read_csv(timeline.write_csv(rows, tmp_path / "t.csv", meta["ep_id"])))
    for entry in screentime["identities"]:
        assert abs(summed.identities.get(entry["identity_id"], 0.0) - entry["seconds"]) <= 1e-6, entry
    for person in screentime["people"]:
        assert abs(summed.people[person["label"]] - person["seconds"]) <= 1e-6, person
    assert summed.people[PERSON] > 0


@pytest.mark.e2e
def test_report_renders_in_headless_chromium_with_contact_sheet_and_timeline(
    report_run: tuple[Path, Path, float], tmp_path: Path
) -> None:
    _, path, _ = report_run
    shot = tmp_path / "report.png"
    _screenshot(path, shot, tmp_path / "chromium-profile")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)

    screen = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert screen is not None and (screen.shape[1], screen.shape[0]) == WINDOW, screen.shape
    assert screen.std() > MIN_REGION_STD, "the screenshot is blank"
    text = path.read_text(encoding="utf-8")

    # The contact sheet: each identity's first crop is on screen where its row is.
    crop_tops = []
    for identity_id, row in ROW.findall(text):
        crop = cv2.resize(_decode(JPEG_URI.findall(row)[0]), (report.THUMB_WIDTH_PX, report.THUMB_HEIGHT_PX))
        score, (x, y) = _find(screen, crop)
        assert score >= FOUND_SCORE, f"the first crop of {identity_id} is not visible (score {score:.2f})"
        region = screen[y : y + report.THUMB_HEIGHT_PX, x : x + report.THUMB_WIDTH_PX]
        assert region.std() > MIN_REGION_STD, f"the crop of {identity_id} renders blank"
        crop_tops.append(y)
    assert crop_tops == sorted(crop_tops), "contact-sheet rows are out of order"

    # The timeline chart, at the size the page gives it, below the contact sheet and fully on screen.
    b64, width, height = PNG_URI.findall(text)[1]
    chart = cv2.resize(_decode(b64), (int(width), int(height)), interpolation=cv2.INTER_AREA)
    score, (x, y) = _find(screen, chart, CHART_SEARCH_SCALE)
    assert score >= FOUND_SCORE, f"the timeline is not visible in the screenshot (score {score:.2f})"
    assert y > crop_tops[-1] and y + int(height) <= WINDOW[1], (y, crop_tops)
    region = screen[y : y + int(height), x : x + int(width)]
    assert region.std() > MIN_REGION_STD and len(np.unique(region)) > 16, "the timeline renders blank"


def _tiny_run(run_dir: Path, label: str) -> None:
    """A minimal contract-conforming run with one identity and one crop, for the error paths."""
    crop_dir = run_dir / "crops" / "track_000001"
    crop_dir.mkdir(parents=True)
    crop = np.full((200, 160, 3), 90, np.uint8)
    cv2.circle(crop, (80, 100), 50, (40, 160, 220), -1)
    (crop_dir / "000000.jpg").write_bytes(cv2.imencode(".jpg", crop)[1].tobytes())
    item = {"key": "crops/track_000001/000000.jpg", "frame_idx": 0, "ts": 0.0, "width": 160, "height": 200}
    (crop_dir / "index.json").write_text(json.dumps({"track_id": 1, "items": [item]}))
    identity = {"identity_id": "id_0001", "label": label, "person_id": "p", "tier": "auto", "similarity": 0.9}
    (run_dir / "identities.json").write_text(json.dumps({"identities": [{**identity, "track_ids": [1]}]}))
    intervals = [[0.0, 1.0]]
    (run_dir / "screentime.json").write_text(
        json.dumps(
            {
                "ep_id": "tiny",
                "duration_s": 2.0,
                "semantics": "<b>x</b>",
                "identities": [{"identity_id": "id_0001", "label": label, "seconds": 1.0, "intervals": intervals}],
                "people": [{"label": label, "seconds": 1.0, "intervals": intervals}],
            }
        )
    )
    (run_dir / "detections.jsonl").write_text('{"frame": 0, "ts": 0.0, "shot_boundary": true, "faces": []}\n')
    (run_dir / "manifest.json").write_text(json.dumps({"ep_id": "tiny", "run_id": "r1", "video": {"duration_s": 2.0}}))


def test_every_string_from_the_run_is_escaped(tmp_path: Path) -> None:
    hostile = '<img src=x onerror="alert(1)"> & "Bob"'
    _tiny_run(tmp_path / "run", hostile)
    text = report.write_report(tmp_path / "run", tmp_path / "out", "<ep>").read_text()
    assert hostile not in text and "<ep>" not in text and "<b>x</b>" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &quot;Bob&quot;" in text
    assert len(JPEG_URI.findall(text)) == 1


def test_a_run_folder_without_a_contract_file_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        report.write_report(tmp_path / "missing", tmp_path / "out")
    for name in ("manifest.json", "identities.json", "screentime.json", "detections.jsonl"):
        run_dir = tmp_path / name
        _tiny_run(run_dir, "Ann")
        (run_dir / name).unlink()
        with pytest.raises(FailedPrecondition, match=re.escape(name)):
            report.write_report(run_dir, tmp_path / "out")
    assert not (tmp_path / "out" / report.REPORT_NAME).exists()  # nothing half-written


def test_command_line_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tiny_run(tmp_path / "run", "Ann")
    assert report.main([str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    assert report.main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_identities_without_saved_crops_say_so(tmp_path: Path) -> None:
    _tiny_run(tmp_path / "run", "Ann")
    shutil.rmtree(tmp_path / "run" / "crops")  # a run made with skip_crops
    text = report.write_report(tmp_path / "run", tmp_path / "out").read_text()
    assert "no crops saved" in text and not JPEG_URI.findall(text)
