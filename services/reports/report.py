"""The HTML report of a run: header, identity contact sheet, screen-time bars and timeline.

The report is one self-contained file (crops and charts as base64 data URIs, inline CSS, no
scripts, fonts or links to fetch) so it can be mailed, archived with the episode or opened on an
air-gapped review machine and look the same everywhere. Every string from the run is escaped:
labels are typed in by people and file contents are not trusted markup.

Usage: python -m services.reports.report RUN_DIR --out DIR [--episode EP_ID]
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.reports import charts, crops, run_files
from services.reports.cli import run_main

REPORT_NAME = "report.html"
# CSS pixels of a contact-sheet thumbnail: the crops' 4:5 shape at a size where a face is
# recognisable and eight fit beside the identity's text on a 1280 px page.
THUMB_WIDTH_PX = 64
THUMB_HEIGHT_PX = 80
UNKNOWN = "unknown"

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1f23;
  background: #fff; margin: 0; }
main, header, footer { max-width: 1216px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 16px; border-bottom: 1px solid #e3e5e8; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 14px; margin: 0 0 14px; }
dl.meta dt { color: #5b6270; } dl.meta dd { margin: 0; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid #eceef1; }
thead th { font-size: 12px; color: #5b6270; font-weight: 600; border-bottom: 2px solid #d9dce1; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
.name { font-weight: 600; } .muted, small { color: #6b7280; }
.tier { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; color: #fff; }
.tier-auto { background: #0072B2; } .tier-suggest { background: #B87800; } .tier-unknown { background: #6E6E6E; }
ol.suggestions { margin: 0; padding-left: 18px; }
td.faces { width: 548px; }
.crops { display: flex; gap: 4px; flex-wrap: nowrap; }
.crops img { width: 64px; height: 80px; object-fit: cover; border-radius: 3px; background: #f1f2f4; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #6b7280; font-size: 12px; margin-top: 4px; }
footer { color: #6b7280; font-size: 12px; padding-top: 8px; padding-bottom: 24px; }
"""


@dataclass(frozen=True)
class IdentityView:
    """Everything the report shows about one identity (identities.json joined with screentime.json)."""

    identity_id: str
    label: str | None
    tier: str
    similarity: float | None
    suggestions: list[dict[str, Any]]
    track_ids: list[int]
    seconds: float
    intervals: list[tuple[float, float]]

    def lane(self) -> charts.Lane:
        return charts.Lane(self.identity_id, self.label or UNKNOWN, self.tier, self.seconds, self.intervals)


@dataclass(frozen=True)
class RunData:
    """The contract files of one run, read once."""

    manifest: dict[str, Any]
    screentime: dict[str, Any]
    identities: list[IdentityView]
    cuts_s: list[float]

    @property
    def duration_s(self) -> float:
        video = self.manifest.get("video") or {}
        return float(video.get("duration_s") or self.screentime.get("duration_s") or 0.0)


def _identity_views(identities: dict[str, Any], screentime: dict[str, Any]) -> list[IdentityView]:
    """Identities ordered like screentime.json (longest first); any without screen time come last."""
    timed = {str(e["identity_id"]): e for e in screentime.get("identities", [])}
    order = {identity_id: rank for rank, identity_id in enumerate(timed)}
    views = []
    for entry in identities.get("identities", []):
        identity_id = str(entry["identity_id"])
        time = timed.get(identity_id, {})
        views.append(
            IdentityView(
                identity_id=identity_id,
                label=entry.get("label"),
                tier=str(entry.get("tier") or UNKNOWN),
                similarity=entry.get("similarity"),
                suggestions=list(entry.get("suggestions") or []),
                track_ids=[int(t) for t in entry.get("track_ids") or []],
                seconds=float(time.get("seconds") or 0.0),
                intervals=[(float(s), float(e)) for s, e in time.get("intervals") or []],
            )
        )
    return sorted(views, key=lambda v: (order.get(v.identity_id, len(order)), v.identity_id))


def shot_cuts(run_dir: Path) -> list[float]:
    """Seconds of the shot cuts the detector reported (a cut at 0 s is the start, not a cut)."""
    return [
        float(line["ts"])
        for line in run_files.iter_jsonl(run_dir, run_files.DETECTIONS)
        if line.get("shot_boundary") and float(line.get("ts") or 0.0) > 0.0
    ]


def load_run(run_dir: Path) -> RunData:
    """Read and join the files the report needs; a missing one is named in the error."""
    manifest = run_files.read_json(run_dir, run_files.MANIFEST)
    # Reviewers' corrections (renames, merges, moves) are what people want to see when they exist.
    identities = run_files.read_json(run_dir, run_files.reviewed(run_dir, run_files.IDENTITIES))
    screentime = run_files.read_json(run_dir, run_files.reviewed(run_dir, run_files.SCREENTIME))
    return RunData(manifest, screentime, _identity_views(identities, screentime), shot_cuts(run_dir))


# ---- HTML pieces -------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


def _similarity(value: object) -> str:
    return f"{float(value):.3f}" if isinstance(value, int | float) else "n/a"


def _meta_items(data: RunData, ep_id: str) -> list[tuple[str, str]]:
    """(term, already-escaped HTML) pairs of the header."""
    manifest = data.manifest
    video = manifest.get("video") or {}
    models = manifest.get("models") or {}
    settings = manifest.get("settings") or {}
    counts = manifest.get("counts") or {}
    detector = models.get("detector") or {}
    embedder = models.get("embedder") or {}

    def model(info: dict[str, Any]) -> str:
        if not info:
            return '<span class="muted">n/a</span>'
        where = " / ".join(str(info[k]) for k in ("backend", "device") if info.get(k))
        return f"<code>{esc(info.get('model_id') or info.get('name', ''))}</code> {esc(where)}"

    duration = data.duration_s
    return [
        ("Episode", f"<code>{esc(ep_id)}</code>"),
        ("Run", f"<code>{esc(manifest.get('run_id', 'n/a'))}</code>"),
        ("Video duration", esc(f"{duration:.2f} s ({_clock(duration)})")),
        (
            "Video",
            esc(
                f"{video.get('width', '?')}x{video.get('height', '?')} px, {video.get('fps', '?')} fps, "
                f"{video.get('frame_count', '?')} frames"
            ),
        ),
        ("Detector", f"{esc(settings.get('detector', 'n/a'))}: {model(detector)}"),
        ("Tracker", esc(settings.get("tracker", "n/a"))),
        ("Embedder", model(embedder)),
        ("Created", esc(manifest.get("created_at", "n/a"))),
        ("Stride", esc(f"every {settings.get('stride', '?')} frame(s)")),
        (
            "Counts",
            esc(
                f"{counts.get('faces', '?')} faces, {counts.get('tracks', '?')} tracks, "
                f"{len(data.identities)} identities, {len(data.cuts_s)} shot cuts"
            ),
        ),
    ]


def header_html(data: RunData, ep_id: str) -> str:
    items = "".join(f"<dt>{esc(term)}</dt><dd>{value}</dd>" for term, value in _meta_items(data, ep_id))
    return f'<header><h1>Screen-time report: {esc(ep_id)}</h1><dl class="meta">{items}</dl></header>'


def _suggestions_html(suggestions: Iterable[dict[str, Any]]) -> str:
    items = [
        f"<li>{esc(s.get('name') or s.get('person_id') or '?')} "
        f'<span class="muted">{esc(_similarity(s.get("similarity")))}</span></li>'
        for s in suggestions
    ]
    return f'<ol class="suggestions">{"".join(items)}</ol>' if items else '<span class="muted">none</span>'


def _crops_html(run_dir: Path, view: IdentityView) -> str:
    images = []
    for crop in crops.identity_crops(run_dir, view.track_ids):
        jpeg = crops.jpeg_bytes(crop)
        if jpeg is None:
            continue
        alt = f"{view.label or UNKNOWN} ({view.identity_id}), track {crop.track_id} at {crop.ts:.2f} s"
        images.append(
            f'<img src="{data_uri("image/jpeg", jpeg)}" alt="{esc(alt)}" title="{esc(alt)}" '
            f'width="{THUMB_WIDTH_PX}" height="{THUMB_HEIGHT_PX}">'
        )
    if not images:
        return '<span class="muted">no crops saved for these tracks</span>'
    return f'<div class="crops">{"".join(images)}</div>'


def _identity_row(run_dir: Path, view: IdentityView, duration_s: float) -> str:
    share = f"{100 * view.seconds / duration_s:.1f}% · " if duration_s > 0 else ""
    name = esc(view.label) if view.label else f'<span class="muted">{UNKNOWN}</span>'
    tier = esc(view.tier)
    return (
        f'<tr id="identity-{esc(view.identity_id)}" data-identity="{esc(view.identity_id)}">'
        f'<th scope="row"><span class="name">{name}</span><br><code>{esc(view.identity_id)}</code></th>'
        f'<td><span class="tier tier-{tier}">{tier}</span><br>'
        f'<span class="muted">similarity</span> {esc(_similarity(view.similarity))}</td>'
        f"<td>{_suggestions_html(view.suggestions)}</td>"
        f'<td class="num">{view.seconds:.2f} s<br><small>{esc(share)}{len(view.intervals)} interval(s) · '
        f"{len(view.track_ids)} track(s)</small></td>"
        f'<td class="faces">{_crops_html(run_dir, view)}</td></tr>'
    )


def contact_sheet_html(run_dir: Path, data: RunData) -> str:
    rows = "".join(_identity_row(run_dir, view, data.duration_s) for view in data.identities)
    if not rows:
        rows = '<tr><td colspan="5" class="muted">no identities in this run</td></tr>'
    return (
        '<section id="contact-sheet"><h2>Identities</h2><table><thead><tr>'
        '<th scope="col">Identity</th><th scope="col">Tier</th><th scope="col">Suggestions</th>'
        f'<th scope="col">Screen time</th><th scope="col">Faces (evenly over its tracks)</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def people_html(screentime: dict[str, Any], duration_s: float) -> str:
    """Per-person totals: the union over identities carrying the name, so never more than the video."""
    people = screentime.get("people") or []
    if not people:
        return ""
    rows = "".join(
        f'<tr><th scope="row">{esc(p.get("label"))}</th><td class="num">{float(p.get("seconds") or 0):.2f} s</td>'
        f'<td class="num">{(100 * float(p.get("seconds") or 0) / duration_s if duration_s else 0):.1f}%</td>'
        f'<td class="num">{len(p.get("intervals") or [])}</td></tr>'
        for p in people
    )
    return (
        '<section id="people"><h2>People</h2><table><thead><tr><th scope="col">Person</th>'
        '<th scope="col">Screen time</th><th scope="col">Share</th><th scope="col">Intervals</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _figure_html(section_id: str, title: str, png: bytes, alt: str, caption: str) -> str:
    width, height = charts.png_css_size(png)
    return (
        f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2><figure>'
        f'<img src="{data_uri("image/png", png)}" alt="{esc(alt)}" width="{width}" height="{height}">'
        f"<figcaption>{esc(caption)}</figcaption></figure></section>"
    )


def charts_html(data: RunData) -> str:
    lanes = [view.lane() for view in data.identities]
    bars = charts.screen_time_bars(lanes, data.duration_s)
    plot = charts.timeline(lanes, data.duration_s, data.cuts_s)
    return _figure_html(
        "screen-time",
        "Screen time per identity",
        bars,
        "horizontal bar chart of the seconds on screen of each identity",
        "Bar colour = naming tier (auto: named without review; suggest: candidates offered; unknown).",
    ) + _figure_html(
        "timeline",
        "Timeline",
        plot,
        "timeline with one lane per identity showing when it is on screen, and the shot cuts",
        "One lane per identity; bars are on-screen intervals; thin vertical lines are shot cuts.",
    )


def render_html(run_dir: Path, data: RunData, ep_id: str) -> str:
    semantics = data.screentime.get("semantics") or ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>faceflow report: {esc(ep_id)}</title><style>{STYLE}</style></head><body>"
        f"{header_html(data, ep_id)}<main>{contact_sheet_html(run_dir, data)}{charts_html(data)}"
        f"{people_html(data.screentime, data.duration_s)}</main>"
        "<footer><p>Screen time is the length of the union of on-screen intervals: overlapping tracks of one "
        "identity count once, and a person's time is the union over the identities carrying their name, "
        f"never the sum. Run semantics: {esc(semantics)}</p></footer></body></html>\n"
    )


def _write_atomically(path: Path, text: str) -> None:
    """A reader (or a browser refresh) never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would make the report unreadable to a web server or a colleague.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_report(run_dir: Path, out_dir: Path, ep_id: str | None = None) -> Path:
    """Write out_dir/report.html for the run in run_dir; ep_id defaults to the manifest's."""
    data = load_run(run_dir)
    episode = ep_id or str(data.manifest.get("ep_id") or run_dir.name)
    path = out_dir / REPORT_NAME
    _write_atomically(path, render_html(run_dir, data, episode))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.reports.report", description="Write the self-contained HTML report of a run."
    )
    parser.add_argument("run_dir", type=Path, help="a run folder: DATA_ROOT/episodes/EP_ID[/runs/RUN_ID]")
    parser.add_argument("--out", type=Path, required=True, help="folder to write report.html into")
    parser.add_argument("--episode", help="episode id shown in the report (default: the manifest's)")
    args = parser.parse_args(argv)
    return run_main(lambda: print(write_report(args.run_dir, args.out, args.episode)))


if __name__ == "__main__":
    sys.exit(main())
