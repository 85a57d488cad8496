"""`python -m bench.decode [--video PATH ...] [--h264] [--reps N] --out DIR`: what a decoded frame costs
(issue #15, "cheaper frames").

Per video, every variant decodes the first --max-frames (short files are looped to >= --min-frames), the
variants interleaved repetition by repetition so each sees the same machine load; the table shows
median wall and CPU (all threads) ms per source frame and the median per-repetition ratio to
"OpenCV read every frame". Variants: OpenCV read; OpenCV grab every frame with retrieve every 5th /
10th / never; PyAV (not a project dependency: imported from --avlib if not installed) decoding every
frame with thread_type AUTO or the default, converting to bgr24 every frame / every 10th (AUTO: / never);
and PyAV with codec_context.skip_frame NONREF / NONKEY, which shows how many frames such skipping
still returns. --h264 also re-encodes the first video with libx264 (B-frames, as broadcast files
have them) into DIR, since the sample episode is MPEG-4 part 2 without B-frames. Writes
DIR/decode.json and DIR/decode.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from bench.stats import median, median_ratio

BASELINE = "cv_read"
DEFAULT_VIDEO = Path("data/sample/episode.mp4")
MEDIA_DIR = Path(".cache/faceflow/media")
DEFAULT_AVLIB = Path("/tmp/avlib")
PICTURE_TYPES = {0: "?", 1: "I", 2: "P", 3: "B"}  # AVPictureType


@dataclass(frozen=True)
class Pass:
    """One decode pass over a file: frames the decoder handed back, frames converted to BGR."""

    returned: int
    converted: int


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    run: Callable[[Path, int], Pass]  # (file, source frames to decode at most) -> what came back


def load_av(avlib: Path) -> ModuleType | None:
    """PyAV if importable, else from avlib (a `pip install --target` folder), else None."""
    try:
        return importlib.import_module("av")
    except ImportError:
        if not avlib.is_dir():
            return None
        sys.path.insert(0, str(avlib))
        try:
            return importlib.import_module("av")
        except ImportError:
            return None


def cv_variant(retrieve_every: int) -> Callable[[Path, int], Pass]:
    """OpenCV: read() every frame (retrieve_every=1), or grab() all and retrieve() every n-th (0: never)."""

    def run(path: Path, limit: int) -> Pass:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        returned = converted = 0
        try:
            if retrieve_every == 1:
                while returned < limit:
                    ok, _ = cap.read()
                    if not ok:
                        break
                    returned += 1
                    converted += 1
            else:
                while returned < limit and cap.grab():
                    if retrieve_every and returned % retrieve_every == 0:
                        ok, _ = cap.retrieve()
                        converted += int(ok)
                    returned += 1
        finally:
            cap.release()
        return Pass(returned, converted)

    return run


def av_variant(
    av: ModuleType, thread_type: str | None, convert_every: int, skip: str | None
) -> Callable[[Path, int], Pass]:
    """PyAV: decode (thread_type None = PyAV's default), to_ndarray bgr24 every n-th returned frame (0: never)."""

    def run(path: Path, limit: int) -> Pass:
        returned = converted = 0
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if thread_type is not None:
                stream.thread_type = thread_type
            if skip is not None:
                stream.codec_context.skip_frame = skip
            end = limit / float(stream.average_rate)  # by time: with skip_frame, returned frames are not indices
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= end - 1e-6:
                    break
                if convert_every and returned % convert_every == 0:
                    frame.to_ndarray(format="bgr24")
                    converted += 1
                returned += 1
        return Pass(returned, converted)

    return run


def variants(av: ModuleType | None) -> list[Variant]:
    out = [
        Variant("cv_read", "OpenCV read every frame", cv_variant(1)),
        Variant("cv_grab_retrieve5", "OpenCV grab all, retrieve every 5th", cv_variant(5)),
        Variant("cv_grab_retrieve10", "OpenCV grab all, retrieve every 10th", cv_variant(10)),
        Variant("cv_grab_only", "OpenCV grab only", cv_variant(0)),
    ]
    if av is None:
        return out
    for thread_type, tag in (("AUTO", "auto"), (None, "default")):
        name = "AUTO" if thread_type else "default threads"
        out += [
            Variant(f"av_{tag}_bgr_all", f"PyAV {name}, bgr24 every frame", av_variant(av, thread_type, 1, None)),
            Variant(f"av_{tag}_bgr10", f"PyAV {name}, bgr24 every 10th", av_variant(av, thread_type, 10, None)),
        ]
    out.append(Variant("av_auto_decode_only", "PyAV AUTO, decode only", av_variant(av, "AUTO", 0, None)))
    for skip in ("NONREF", "NONKEY"):
        label = f"PyAV AUTO, skip_frame={skip}, bgr24 every returned frame"
        out.append(Variant(f"av_skip_{skip.lower()}", label, av_variant(av, "AUTO", 1, skip)))
    return out


def probe(path: Path, av: ModuleType | None) -> dict[str, Any]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    info: dict[str, Any] = {
        "path": str(path),
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        "fps": cap.get(cv2.CAP_PROP_FPS),
        "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
    }
    cap.release()
    if av is not None:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            info["codec"] = stream.codec_context.name
            info["default_thread_type"] = str(stream.thread_type)
            types: dict[str, int] = {}
            for frame in container.decode(stream):
                key = PICTURE_TYPES.get(int(frame.pict_type), str(frame.pict_type))
                types[key] = types.get(key, 0) + 1
            info["picture_types"] = types
    return info


def pixel_check(path: Path, av: ModuleType | None, index: int = 10) -> float | None:
    """Mean absolute difference between OpenCV's and PyAV's BGR of one frame (colour conversion may differ)."""
    if av is None:
        return None
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    cv_frame = None
    for _ in range(index + 1):
        ok, cv_frame = cap.read()
    cap.release()
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                av_frame = frame.to_ndarray(format="bgr24")
                break
    if cv_frame is None or cv_frame.shape != av_frame.shape:
        return None
    return float(np.abs(cv_frame.astype(np.int16) - av_frame.astype(np.int16)).mean())


def transcode_h264(av: ModuleType, source: Path, target: Path) -> Path:
    """Re-encode source with libx264 (its defaults: 3 B-frames, keyint 250), as a broadcast-like file."""
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream("libx264", rate=in_stream.average_rate)
        out_stream.width, out_stream.height = in_stream.codec_context.width, in_stream.codec_context.height
        out_stream.pix_fmt = "yuv420p"
        out_stream.codec_context.max_b_frames, out_stream.codec_context.gop_size = 3, 250
        out_stream.options = {"preset": "veryfast", "crf": "20"}
        out_stream.codec_context.time_base = 1 / in_stream.average_rate
        for index, frame in enumerate(src.decode(in_stream)):
            frame.pts, frame.time_base = index, out_stream.codec_context.time_base
            frame.pict_type = 0  # NONE: x264 would otherwise copy the source's I/P decisions
            for packet in out_stream.encode(frame):
                dst.mux(packet)
        for packet in out_stream.encode(None):
            dst.mux(packet)
    return target


def longer_720p(than: Path) -> Path | None:
    """The longest >= 720-line video under .cache/faceflow/media if it is longer than `than` (else None)."""
    cap = cv2.VideoCapture(str(than), cv2.CAP_FFMPEG)
    best = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), than)
    cap.release()
    for path in sorted(MEDIA_DIR.glob("*")):
        if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
            continue
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        height, frames = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if height >= 720 and frames > best[0]:
            best = (frames, path)
    return best[1] if best[1] != than else None


def bench_video(
    path: Path, todo: list[Variant], reps: int, min_frames: int, max_frames: int, av: ModuleType | None
) -> dict[str, Any]:
    info = probe(path, av)
    frames = min(info["frames"], max_frames) if max_frames > 0 else info["frames"]
    loops = max(1, math.ceil(min_frames / max(1, frames)))
    wall: dict[str, list[float]] = {v.name: [] for v in todo}
    cpu: dict[str, list[float]] = {v.name: [] for v in todo}
    passes: dict[str, Pass] = {}
    for rep in range(reps):
        order = todo[rep % len(todo) :] + todo[: rep % len(todo)]  # rotate: no variant always runs first
        for variant in order:
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(loops):
                passes[variant.name] = variant.run(path, frames)
            wall[variant.name].append(time.perf_counter() - w0)
            cpu[variant.name].append(time.process_time() - c0)
        print(f"{path.name}: repetition {rep + 1}/{reps} done", flush=True)
    source_frames = frames * loops
    rows = []
    for variant in todo:
        got = passes[variant.name]
        rows.append(
            {
                "variant": variant.name,
                "label": variant.label,
                "frames_returned": got.returned,
                "frames_converted": got.converted,
                "wall_ms_per_frame": 1000 * median(wall[variant.name]) / source_frames,
                "cpu_ms_per_frame": 1000 * median(cpu[variant.name]) / source_frames,
                "wall_ratio": median_ratio(wall[variant.name], wall[BASELINE]),
                "cpu_ratio": median_ratio(cpu[variant.name], cpu[BASELINE]),
                "walls_s": wall[variant.name],
            }
        )
    return {
        **info,
        "frames_used": frames,
        "loops": loops,
        "repetitions": reps,
        "pixel_mad_cv_vs_av": pixel_check(path, av),
        "rows": rows,
    }


def markdown(results: list[dict[str, Any]], av_version: str | None) -> str:
    lines = [
        "# Decode cost per source frame",
        "",
        f"OpenCV {cv2.__version__}, PyAV {av_version or 'not available'}. ms are per source frame (wall, and CPU",
        "of all threads); ratios are medians of per-repetition ratios to `OpenCV read every frame`.",
    ]
    for video in results:
        types = video.get("picture_types", {})
        lines += [
            "",
            f"## {video['path']} ({video['width']}x{video['height']}, {video.get('codec', '?')}, "
            f"picture types {types})",
            "",
            f"First {video['frames_used']} of {video['frames']} frames, {video['loops']} loop(s) per pass, "
            f"{video['repetitions']} repetitions.",
            "",
            "| variant | returned/frames | ms/frame wall | ms/frame CPU | wall ratio | CPU ratio |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in video["rows"]:
            lines.append(
                f"| {r['label']} | {r['frames_returned']}/{video['frames_used']} | {r['wall_ms_per_frame']:.2f} | "
                f"{r['cpu_ms_per_frame']:.2f} | {r['wall_ratio']:.2f} | {r['cpu_ratio']:.2f} |"
            )
        if video["pixel_mad_cv_vs_av"] is not None:
            lines += ["", f"Mean |OpenCV - PyAV| BGR on frame 10: {video['pixel_mad_cv_vs_av']:.3f} levels."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video",
        type=Path,
        action="append",
        help="repeatable; default: the sample episode, plus the longest >=720p file in .cache/faceflow/media if longer",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--min-frames", type=int, default=300, help="loop shorter files to at least this many")
    parser.add_argument("--max-frames", type=int, default=300, help="decode at most this many per pass (0: all)")
    parser.add_argument("--h264", action="store_true", help="also time an x264 (B-frame) re-encode of the first video")
    parser.add_argument("--avlib", type=Path, default=DEFAULT_AVLIB, help="pip --target folder holding PyAV")
    args = parser.parse_args(argv)
    av = load_av(args.avlib)
    args.out.mkdir(parents=True, exist_ok=True)
    videos: list[Path] = args.video or [DEFAULT_VIDEO]
    if not args.video and (extra := longer_720p(videos[0])) is not None:
        videos.append(extra)
    if args.h264 and av is not None:
        videos.append(transcode_h264(av, videos[0], args.out / f"{videos[0].stem}_x264.mp4"))
    todo = variants(av)
    results = [bench_video(path, todo, args.reps, args.min_frames, args.max_frames, av) for path in videos]
    av_version = getattr(av, "__version__", None) if av else None
    report = {"opencv": cv2.__version__, "pyav": av_version, "baseline": BASELINE, "videos": results}
    (args.out / "decode.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "decode.md").write_text(markdown(results, av_version))
    print((args.out / "decode.md").read_text())


if __name__ == "__main__":
    main()
