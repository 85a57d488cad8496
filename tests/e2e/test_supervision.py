"""`faceflow up` supervises its processes, on the real stack with real models: a detector killed with
SIGKILL comes back on its port and the next run succeeds; a process that keeps failing stops the whole
stack, naming it and its log; the CLI follows a run across an orchestrator restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
START_TIMEOUT_S = 300.0


class Up:
    """`faceflow up` as a subprocess; its console (stdout and stderr) read as it comes."""

    def __init__(self, data_root: Path, *args: str) -> None:
        self.data_root = data_root
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "--data-root", str(data_root), "up", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def console(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT_S, after: int = 0) -> re.Match[str]:
        """The first console line from line `after` on that matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no console line matches {pattern!r}; console:\n{self.console}")

    def address(self, service: str) -> str:
        return self.wait_for(rf"^{service}\s+(\S+:\d+)\s").group(1)

    def env(self) -> dict[str, str]:
        return {
            "FACEFLOW_ORCHESTRATOR_ADDR": self.address("orchestrator"),
            "FACEFLOW_STORAGE_ADDR": self.address("storage"),
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in service_pids(self.data_root):  # never leave services behind, whatever happened
            os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=10)
        return self.process.returncode


def service_pids(data_root: Path, module: str = "") -> list[int]:
    """Processes of `python -m services.<module>` serving this data root."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if str(data_root) in argv and any(a.startswith(f"services.{module}") for a in argv[1:3]):
            found.append(int(entry.name))
    return found


def only_pid(data_root: Path, module: str) -> int:
    pids = service_pids(data_root, module)
    assert len(pids) == 1, pids
    return pids[0]


def faceflow(
    data_root: Path, *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "--data-root", str(data_root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(tmp_path_factory.mktemp("up-data"))
    try:
        running.wait_for(r"^faceflow is up")
        yield running
    finally:
        code = running.stop()
        assert code == 0, running.console  # SIGTERM stops it gracefully


def test_a_killed_detector_comes_back_on_its_port_and_the_next_run_succeeds(up: Up, media: Path) -> None:
    video = str(media / "single_face.mp4")
    before = faceflow(up.data_root, "run", video, "--episode", "restart", "--stride", "5", env=up.env())
    assert before.returncode == 0, before.stderr[-3000:]
    address = up.address("detector")
    port = address.rpartition(":")[2]
    victim = only_pid(up.data_root, "detector")
    seen = len(up.lines)
    os.kill(victim, signal.SIGKILL)

    up.wait_for(r"^detector exited with code -9; restarting in 1 s \(restart 1\)$", timeout=30, after=seen)
    up.wait_for(rf"^detector is back on {re.escape(address)} \(restart 1\)$", timeout=START_TIMEOUT_S, after=seen)
    pid = only_pid(up.data_root, "detector")
    assert pid != victim
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[argv.index("--port") + 1] == port  # the same port: the orchestrator keeps its address
    log = (up.data_root / "logs" / "detector.log").read_text()
    assert "detector exited with code -9; restarting in 1 s (restart 1)" in log
    assert f"detector is back on {address} (restart 1)" in log

    # At once. The orchestrator's channel to the detector may still wait out gRPC's reconnect backoff
    # for a few seconds; the submit then fails with UNAVAILABLE and the CLI sends it again (same key).
    run = faceflow(up.data_root, "run", "--episode", "restart", "--stride", "5", env=up.env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"\b1 tracks, 1 identities\b", run.stdout), run.stdout
    if "could not submit" in run.stderr:
        assert "submitting again…" in run.stderr and "reconnected: submitted: job job-" in run.stderr, run.stderr


def test_a_run_is_followed_across_an_orchestrator_restart(up: Up, media: Path) -> None:
    """The CLI reconnects with WatchJob: with the job store the run goes on to its end; an orchestrator
    that forgot the job is reported as such."""
    seen = len(up.lines)
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "services.cli.main", "--data-root", str(up.data_root), "run"),
            *(str(media / "WolfgangLanger_Pexels.mp4"), "--episode", "across-restart", "--stride", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **up.env()},
        stdin=subprocess.DEVNULL,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(run.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("job job-") for line in stderr):  # printed once the job runs
            assert run.poll() is None and time.monotonic() < deadline, "".join(stderr)[-3000:]
            time.sleep(0.1)
        os.kill(only_pid(up.data_root, "orchestrator"), signal.SIGKILL)
        up.wait_for(r"^orchestrator is back on .* \(restart 1\)$", timeout=START_TIMEOUT_S, after=seen)
        stdout = run.stdout.read() if run.stdout else ""
        run.wait(timeout=600)
        reader.join(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    errors = "".join(stderr)
    assert "lost the orchestrator" in errors and "reconnecting to job job-" in errors, errors[-3000:]
    if run.returncode == 0:
        assert "reconnected: following job" in errors and "1 identities" in stdout, errors[-3000:]
    else:  # an orchestrator without a shared job store forgets the job: the CLI must say so
        assert re.search(r"job job-\w+ is gone", errors), errors[-3000:]


def test_a_process_that_keeps_failing_stops_everything(tmp_path: Path) -> None:
    """The detector's port taken by another program while it is down: every restart fails to bind."""
    running = Up(tmp_path / "data", "--max-restarts", "2")
    squatter = socket.socket()
    # Its old connections linger in TIME_WAIT; a listener without SO_REUSEPORT still keeps gRPC off the port.
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        running.wait_for(r"^faceflow is up")
        port = int(running.address("detector").rpartition(":")[2])
        os.kill(only_pid(running.data_root, "detector"), signal.SIGKILL)
        deadline = time.monotonic() + 0.9
        while True:  # the port is free once the killed process is gone; the restart is 1 s away
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the killed detector's port never came free"
                time.sleep(0.01)
        squatter.listen()
        code = running.process.wait(timeout=START_TIMEOUT_S)
    finally:
        squatter.close()
        running.stop()
    log = tmp_path / "data" / "logs" / "detector.log"
    assert code == 1, running.console
    assert "detector exited with code -9; restarting in 1 s (restart 1)" in running.console
    assert "detector failed to start again: exited with code 1 while starting; restarting in 2 s (restart 2)" in (
        running.console
    )
    assert (
        f"error: detector keeps failing: it failed to start again: exited with code 1 while starting after 2 "
        f"restarts within 5 minutes; see its log: {log}" in running.console
    )
    assert "stopping every service" in running.console
    assert "Failed to bind to address 127.0.0.1:" in log.read_text()
    assert "is back on" not in running.console  # never on another port
    assert service_pids(tmp_path / "data") == []  # every service stopped


def test_a_service_that_cannot_start_stops_up_at_once_naming_it(tmp_path: Path) -> None:
    """A bad setting fails the first start: no restarts (it would fail the same way), a clear exit."""
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "--data-root", str(tmp_path), "up"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env={**os.environ, "FACEFLOW_MODEL_THREADS": "-1"},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    named = re.search(r"^error: (\w+) exited with code 1; its log \((\S+)\) ends:$", result.stderr, re.M)
    assert named, result.stderr
    assert named.group(2) == f"{tmp_path}/logs/{named.group(1)}.log"
    assert "model_threads must be >= 0" in Path(named.group(2)).read_text() and "model_threads" in result.stderr
    assert "restarting" not in result.stderr
    assert service_pids(tmp_path) == []
