"""A real Triton Inference Server for the tests: the one PyPI's nvidia-pytriton bundles.

It runs from its own venv (.venv-triton, `make triton-venv`: pytriton needs numpy<2, the project
venv has numpy 2) with the cpu-python model repository generated from the model manifest, on free
loopback ports, and is stopped after the session. A missing server is a failure that says how to
install it, not a skip: a skipped backend test looks like a passing one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tritonclient.grpc as tgrpc

from deploy.triton.make_repo import RepoOptions, make_repo
from services.common.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_VENV = Path(os.environ.get("FACEFLOW_TRITON_VENV", REPO_ROOT / ".venv-triton"))
SETUP_HINT = "run `make triton-venv` (creates .venv-triton with nvidia-pytriton, onnxruntime and numpy<2)"
# Small batch limit for the embedder so real requests are split by the client (8 instead of 64).
TEST_MAX_BATCH = {"arcface_mbf": 8}
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TritonServer:
    grpc_url: str
    http_port: int
    log_path: Path
    repository: Path


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3.*/site-packages/pytriton/tritonserver/bin/tritonserver"))
    if not found:
        pytest.fail(f"no tritonserver in {venv}: {SETUP_HINT}")
    return found[-1].parents[3]


def _venv_python_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _backend_dir(site: Path, version: str, out: Path) -> Path:
    """Triton's python backend with the stub built for the venv's Python (as pytriton prepares it)."""
    dist = site / "pytriton" / "tritonserver"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        pytest.fail(f"nvidia-pytriton has no python backend stub for Python {version} ({stub}); {SETUP_HINT}")
    shutil.copytree(dist / "backends", out, dirs_exist_ok=True)
    shutil.copy2(stub, out / "python" / "triton_python_backend_stub")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    client = tgrpc.InferenceServerClient(url)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"tritonserver exited with {process.returncode}; log tail:\n{tail}\n{SETUP_HINT}")
            try:
                if client.is_server_ready(client_timeout=1):
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.2)
    finally:
        client.close()
    pytest.fail(f"tritonserver not ready within {START_TIMEOUT_S:g} s; log: {log_path}")


@pytest.fixture(scope="session")
def triton_settings() -> Settings:
    return Settings.from_env(backend="onnx")


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory, triton_settings: Settings) -> Iterator[TritonServer]:
    """tritonserver with the cpu-python repository of every manifest model, on loopback."""
    if not (TRITON_VENV / "bin" / "python").is_file():
        pytest.fail(f"Triton venv {TRITON_VENV} is missing: {SETUP_HINT}")
    site = _site_packages(TRITON_VENV)
    work = tmp_path_factory.mktemp("triton")
    repository = work / "models"
    options = RepoOptions(variant="cpu-python", max_batch=TEST_MAX_BATCH, cpu_threads=2, link=True)
    make_repo(triton_settings.manifest_path, repository, options)
    backends = _backend_dir(site, _venv_python_version(TRITON_VENV), work / "backends")
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    # The python backend stub imports numpy/onnxruntime from the first python on PATH.
    env["PATH"] = f"{TRITON_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    libs = str(site / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else libs
    env.pop("PYTHONPATH", None)
    command = [
        str(site / "pytriton" / "tritonserver" / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--exit-on-error=true",
        "--strict-readiness=true",
        "--log-verbose=0",
    ]
    log_path = work / "tritonserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"127.0.0.1:{grpc_port}"
    try:
        _wait_ready(process, url, log_path)
        yield TritonServer(grpc_url=url, http_port=http_port, log_path=log_path, repository=repository)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.returncode not in (0, -15):
            sys.stderr.write(f"tritonserver exited with {process.returncode}; log: {log_path}\n")
