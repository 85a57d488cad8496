"""A throwaway PostgreSQL server on 127.0.0.1, for tests and benchmarks that need a real one.

    with PostgresServer(tmp_dir) as server:
        store = PostgresStore(server.dsn)            # database "faceflow"
        other = server.create_database("replica2")   # another empty database, its DSN

Uses Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run
as root, so as root the cluster belongs to the `postgres` system user and its commands run through
`runuser`. Trust authentication is safe here only because the server listens on loopback and its
socket directory is private to this run. durable=False (tests) turns fsync off: faster, and a crash
of the machine would lose this scratch data, nothing else; durable=True (benchmarks) keeps
PostgreSQL's defaults, so a commit costs what it costs in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "apt-get install postgresql (make deps installs it)"
SERVER_USER = "postgres"


def find_bin_dir() -> Path:
    """The newest installed server's bin directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(f"PostgreSQL server binaries are missing in /usr/lib/postgresql: {INSTALL_HINT}")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _others_can_enter(path: Path) -> bool:
    """Whether a user other than the owner can reach `path` (pytest's tmp dirs are private to root)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


class PostgresServer:
    def __init__(self, tmp_dir: Path, durable: bool = False, database: str = "faceflow") -> None:
        self._bin = find_bin_dir()
        self._as_root = os.geteuid() == 0
        # As root the server user must reach its directory: in tmp_dir when it can, else in /tmp.
        parent = tmp_dir if not self._as_root or _others_can_enter(tmp_dir) else None
        self.dir = Path(tempfile.mkdtemp(prefix="faceflow-pg-", dir=parent))
        self._durable = durable
        self.database = database
        self.port = 0
        self._started = False

    @property
    def dsn(self) -> str:
        return self.dsn_of(self.database)

    def dsn_of(self, database: str) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}): {result.stderr}{result.stdout}{tail}"
            )

    def start(self) -> PostgresServer:
        if self._as_root:
            shutil.chown(self.dir, SERVER_USER, SERVER_USER)
        self.dir.chmod(0o700)
        data = self.dir / "data"
        initdb = ["initdb", "-D", str(data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8", "--locale=C"]
        self._run(*initdb, *([] if self._durable else ["--no-sync"]))
        settings = f"-k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self._durable:
            settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _attempt in range(3):  # the free port can be taken between our look and the server's bind
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(data),
                    "-l",
                    str(self.dir / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"{settings} -p {self.port}",
                    "start",
                )
                break
            except RuntimeError:
                if _attempt == 2:
                    raise
        self._started = True
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> str:
        """A new empty database; its DSN."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, name)
        return self.dsn_of(name)

    def stop(self) -> None:
        try:
            if self._started:
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
                self._started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
