"""The local stack: the five services as processes on loopback, started and stopped together.

It is authenticated like a cluster (services/common/auth.py): the stack's own issuer and service token
live in DATA_ROOT/auth (services/common/local_issuer.py); whoever runs it on this machine calls it
with the service token, as the trusted local CLI that may name files on this disk.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.errors import Unavailable
from services.common.local_issuer import LocalIssuer
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel

ORDER = ("storage", "tracker", "embedder", "detector", "orchestrator")
DEPENDENCIES = {"orchestrator": ("detector", "embedder", "tracker", "storage")}
# Seconds to wait for a service to report SERVING: model warm-up takes ~2 s here; a cold disk,
# a busy CI machine or a GPU session start can take far longer.
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log_path: Path
    address: str = ""
    metrics_port: int = 0


@dataclass
class LocalStack:
    data_root: Path
    services: tuple[str, ...] = ORDER
    host: str = "127.0.0.1"
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Detector processes; the orchestrator shards episodes across all of them.
    detector_replicas: int = 1
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return self.processes[name].address

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def issuer(self) -> LocalIssuer:
        return LocalIssuer.at(self.data_root)

    def credentials(self, acting_for: str = "") -> ClientCredentials:
        """The trusted local caller: the stack's service token, acting for this machine's user."""
        return ClientCredentials(
            service_token=self.issuer.service_token(), acting_for=acting_for or f"{_local_user()}@local"
        )

    def start(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.issuer.ensure()
        log_dir = self.log_dir or self.data_root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        wanted = [s for s in ORDER if s in self.services]
        try:
            for name in wanted:
                replicas = self.detector_replicas if name == "detector" else 1
                for replica in range(replicas):
                    self._spawn(name if replica == 0 else f"{name}-{replica + 1}", log_dir, module=name)
            for process in list(self.processes.values()):
                self._wait_serving(process)
        except BaseException:
            self.stop()
            raise

    def tls(self) -> TlsConfig | None:
        """The TLS client side of the stack's own settings (FACEFLOW_TLS_* in extra_env or the environment)."""
        return TlsConfig.from_settings(Settings.from_env({**os.environ, **self.extra_env}))

    def channel(self, name: str, credentials: ClientCredentials | None = None) -> grpc.Channel:
        """A channel to one of the stack's services, with TLS when the stack uses it, calling as the
        trusted local user unless other credentials (a user's token) are given."""
        return open_channel(self.address(name), self.tls(), CHANNEL_OPTIONS, credentials or self.credentials())

    def replicas(self, module: str) -> list[ServiceProcess]:
        return [p for n, p in self.processes.items() if n == module or n.startswith(module + "-")]

    def _spawn(self, name: str, log_dir: Path, module: str) -> None:
        for dep in DEPENDENCIES.get(module, ()):
            for replica in self.replicas(dep):
                if not replica.address:
                    self._wait_port(replica)
        port_file = log_dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        log_path = log_dir / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            f"services.{module}",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
        ]
        for dep in DEPENDENCIES.get(module, ()):
            args += [f"--{dep}-addr", ",".join(r.address for r in self.replicas(dep))]
        # The stack's own issuer always wins over FACEFLOW_AUTH_* meant for another deployment; local
        # file paths are allowed (only to service-token callers: this machine's user).
        env = {
            **os.environ,
            "FACEFLOW_ALLOW_LOCAL_SOURCES": "true",
            **self.extra_env,
            **self.issuer.service_env(),
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.processes[name] = ServiceProcess(name, process, port_file, log_path)

    def _wait_port(self, service: ServiceProcess) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not service.port_file.is_file():
            self._check_alive(service)
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{service.name} did not bind a port in {START_TIMEOUT_S:.0f} s; see {service.log_path}"
                )
            time.sleep(0.05)
        port, metrics = service.port_file.read_text().split()
        service.address = f"{self.host}:{port}"
        service.metrics_port = int(metrics)

    def _check_alive(self, service: ServiceProcess) -> None:
        if service.process.poll() is not None:
            tail = service.log_path.read_text(errors="replace")[-2000:]
            raise Unavailable(f"{service.name} exited with code {service.process.returncode}; its log ends:\n{tail}")

    def _wait_serving(self, service: ServiceProcess) -> None:
        if not service.address:
            self._wait_port(service)
        deadline = time.monotonic() + START_TIMEOUT_S
        with open_channel(service.address, self.tls()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(service)
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{service.name} is not SERVING after {START_TIMEOUT_S:.0f} s; see {service.log_path}"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM everything (graceful shutdown), then SIGKILL what is still running."""
        for service in reversed(list(self.processes.values())):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in self.processes.values():
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.processes.clear()


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
