"""The local stack: the five services as processes on loopback, started and stopped together.

`faceflow up` also supervises it (Supervisor): a process that exits is started again on the port it
had, after a growing delay, until one keeps failing; then everything stops. Stacks of single commands
and of tests are not supervised: a crash there is an error to see, not to hide.

It is authenticated like a cluster (services/common/auth.py): the stack's own issuer and service token
live in DATA_ROOT/auth (services/common/local_issuer.py); whoever runs it on this machine calls it
with the service token, as the trusted local CLI that may name files on this disk.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import ClientCredentials
from services.common.config import Settings
from services.common.errors import FaceflowError, Unavailable
from services.common.local_issuer import LocalIssuer
from services.common.server import CHANNEL_OPTIONS
from services.common.tls import TlsConfig, open_channel

if TYPE_CHECKING:
    from services.cli.envoy import EnvoyProxy
    from services.cli.seaweed import SeaweedServer

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
    module: str = ""  # services.<module>: "detector" for detector-2 too
    # The ports it was told to bind (0: any); a restart asks for the ones it had, even after a failed start.
    requested_port: int = 0
    requested_metrics_port: int = 0

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2]) if self.address else self.requested_port

    def exit_code(self) -> int | None:
        return self.process.poll()


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
        return local_credentials(self.issuer, acting_for)

    @property
    def logs(self) -> Path:
        return self.log_dir or self.data_root / "logs"

    def start(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.issuer.ensure()
        self.logs.mkdir(parents=True, exist_ok=True)
        wanted = [s for s in ORDER if s in self.services]
        try:
            for name in wanted:
                replicas = self.detector_replicas if name == "detector" else 1
                for replica in range(replicas):
                    self._spawn(name if replica == 0 else f"{name}-{replica + 1}", module=name)
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

    def add_replica(self, module: str) -> ServiceProcess:
        """Start one more process of a service (orchestrator-2, ...) beside the running stack; once SERVING.
        Replicas of the orchestrator share its job store: the data root's SQLite file or FACEFLOW_JOBS_DSN."""
        name = f"{module}-{len(self.replicas(module)) + 1}"
        self._spawn(name, module)
        self._wait_serving(self.processes[name])
        return self.processes[name]

    def restart(self, name: str, abort: Callable[[], bool] = lambda: False) -> ServiceProcess:
        """Start a service that exited again, on the port it had (its dependents keep its address) and
        the same metrics port; return once it is SERVING. Raises Unavailable if it exits or hangs while
        starting (then it is not running), or when `abort()` turns true meanwhile."""
        old = self.processes[name]
        if old.process.poll() is None:
            old.process.kill()
            old.process.wait()
        self._spawn(name, old.module, port=old.port, metrics_port=old.metrics_port or old.requested_metrics_port)
        service = self.processes[name]
        try:
            self._wait_serving(service, abort)
        except BaseException as error:
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()
            elif isinstance(error, Unavailable):
                raise Unavailable(f"exited with code {service.process.returncode} while starting") from None
            raise
        return service

    def supervised(self, name: str, abort: Callable[[], bool] = lambda: False) -> Supervised:
        """One of the stack's services, for a Supervisor."""

        def exited() -> str | None:
            code = self.processes[name].exit_code()
            return None if code is None else f"exited with code {code}"

        def restart() -> str:
            return self.restart(name, abort).address

        return Supervised(name, self.processes[name].log_path, exited, restart)

    def _spawn(self, name: str, module: str, port: int = 0, metrics_port: int = 0) -> None:
        for dep in DEPENDENCIES.get(module, ()):
            for replica in self.replicas(dep):
                if not replica.address:
                    self._wait_port(replica)
        port_file = self.logs / f"{name}.port"
        port_file.unlink(missing_ok=True)
        log_path = self.logs / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            f"services.{module}",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
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
            # glibc gives every thread that allocates its own arena and rarely returns them: with
            # gRPC's thread pools a detector grew 1.45x over ten sequential runs; two arenas: 1.15x
            # (make bench-admission).
            "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
            **self.extra_env,
            **self.issuer.service_env(),
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.processes[name] = ServiceProcess(
            name, process, port_file, log_path, module=module, requested_port=port, requested_metrics_port=metrics_port
        )

    def _wait_port(self, service: ServiceProcess, abort: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not service.port_file.is_file():
            self._check_alive(service)
            if abort():
                raise Unavailable(f"{service.name}: stopped while starting")
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
            raise Unavailable(
                f"{service.name} exited with code {service.process.returncode}; its log ({service.log_path}) "
                f"ends:\n{tail}"
            )

    def _wait_serving(self, service: ServiceProcess, abort: Callable[[], bool] = lambda: False) -> None:
        if not service.address:
            self._wait_port(service, abort)
        deadline = time.monotonic() + START_TIMEOUT_S
        with open_channel(service.address, self.tls()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(service)
                if abort():
                    raise Unavailable(f"{service.name}: stopped while starting")
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


# ---- supervision (`faceflow up`) -------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """A process that exits is started again after first_delay_s, then twice as long each time (at most
    max_delay_s); one that would need more than max_restarts restarts within window_s keeps failing."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0

    def delay(self, recent_restarts: int) -> float:
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** min(recent_restarts, 30)))


@dataclass
class Supervised:
    """One process a Supervisor keeps running."""

    name: str
    log_path: Path
    # None while it runs, else how it ended ("exited with code -9").
    exited: Callable[[], str | None]
    # Start it again where it was (same ports); return where it serves. Raises if it cannot start.
    restart: Callable[[], str]
    restarts: list[float] = field(default_factory=list)  # clock times of its recent restarts
    due: float | None = None  # when its pending restart is


class KeepsFailing(Unavailable):
    """A supervised process exited again after max_restarts restarts within the policy's window."""


class Supervisor:
    """Call check() every half second or so: it restarts what exited (with backoff), reports every exit
    and restart through `report` and in the process's own log, and raises KeepsFailing when one keeps
    failing. `abort()` true (Ctrl-C) stops it from starting anything."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        report: Callable[[str], None] = print,
        abort: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.children: list[Supervised] = []
        self._report = report
        self._abort = abort
        self._clock = clock

    def add(self, child: Supervised) -> None:
        self.children.append(child)

    def watch_stack(self, stack: LocalStack) -> None:
        for name in stack.processes:
            self.add(stack.supervised(name, self._abort))

    def watch_seaweed(self, s3: SeaweedServer) -> None:
        self.add(supervised_seaweed(s3))

    def watch_envoy(self, envoy: EnvoyProxy) -> None:
        self.add(supervised_envoy(envoy))

    def check(self) -> None:
        for child in self.children:
            if self._abort():
                return
            if child.due is None:
                how = child.exited()
                if how is not None:
                    self._exited(child, how)
            elif self._clock() >= child.due:
                self._restart(child)

    def _exited(self, child: Supervised, how: str) -> None:
        now = self._clock()
        child.restarts = [t for t in child.restarts if now - t < self.policy.window_s]
        count = len(child.restarts)
        if count >= self.policy.max_restarts:
            message = (
                f"{child.name} keeps failing: it {how} after {count} restart{'s' if count != 1 else ''} "
                f"within {_span(self.policy.window_s)}; see its log: {child.log_path}"
            )
            _note(child, message)
            raise KeepsFailing(message)
        delay = self.policy.delay(count)
        self._say(child, f"{child.name} {how}; restarting in {delay:g} s (restart {count + 1})")
        child.due = now + delay

    def _restart(self, child: Supervised) -> None:
        child.due = None
        child.restarts.append(self._clock())
        try:
            where = child.restart()
        except (FaceflowError, OSError) as error:
            if self._abort():
                return
            first_line = (str(error).splitlines() or [type(error).__name__])[0].rstrip(":; ")
            self._exited(child, f"failed to start again: {first_line}")
            return
        self._say(child, f"{child.name} is back on {where} (restart {len(child.restarts)})")

    def _say(self, child: Supervised, message: str) -> None:
        self._report(message)
        _note(child, message)


def _note(child: Supervised, message: str) -> None:
    """A line in the process's own log, shaped like the services' JSON lines."""
    entry = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "level": "warning",
        "service": child.name,
        "logger": "faceflow.up",
        "msg": message,
    }
    try:
        with child.log_path.open("a") as log:
            log.write(json.dumps(entry) + "\n")
    except OSError:
        pass  # the console has it


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} s"


def supervised_seaweed(s3: SeaweedServer) -> Supervised:
    """SeaweedFS restarts on the same ports with the same data and keys (SeaweedServer.restart)."""

    def restart() -> str:
        return s3.restart().endpoint_url

    return Supervised("s3", s3.log_path, lambda: None if s3.running else "(SeaweedFS) exited", restart)


def supervised_envoy(envoy: EnvoyProxy) -> Supervised:
    """Envoy restarts on the listener and admin ports it had (the UI's config names them)."""

    def exited() -> str | None:
        process = envoy.process
        if process is None:
            return "is not running"
        code = process.poll()
        return None if code is None else f"exited with code {code}"

    def restart() -> str:
        envoy.stop()
        envoy.settings = dataclasses.replace(
            envoy.settings, listen=envoy.address, admin=envoy.admin_url.removeprefix("http://")
        )
        envoy.start()
        return envoy.address

    return Supervised("envoy", envoy.log_path, exited, restart)


def local_user() -> str:
    """This machine's user name, for audit lines ("local" when the system has none for the uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def local_credentials(issuer: LocalIssuer, acting_for: str = "") -> ClientCredentials:
    """A data root's service token, acting for this machine's user: the trusted local CLI."""
    return ClientCredentials(service_token=issuer.service_token(), acting_for=acting_for or f"{local_user()}@local")
