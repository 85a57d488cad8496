"""The review UI on the local stack: its static files on one loopback port, Envoy's gRPC-Web on another.

The UI is a static bundle (`make web` builds web/dist); it learns where Envoy is from `/config.json`,
served beside it. The two are different origins on purpose: Envoy then runs with exactly the CORS
policy the Helm chart ships (the UI's origin listed, nothing else), and the browser tests exercise it.
Crop images come straight from the storage service's signed file server (an <img> needs no CORS).

In the Helm chart the same server runs on its own (`python -m services.cli.web`, the `web` Deployment)
behind Envoy, which routes the UI's GET requests to it: UI and API share one origin there, and
/config.json says so (`--grpc-web-url /`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from services.cli.envoy import REPO_ROOT, EnvoyProxy, EnvoySettings
from services.cli.stack import LocalStack
from services.common.errors import FailedPrecondition, Unavailable
from services.common.local_issuer import AUDIENCE, ISSUER, LocalIssuer

DIST_DIR = REPO_ROOT / "web" / "dist"
CONFIG_PATH = "/config.json"
# The local issuer's public keys, where OIDC discovery would put them (what Envoy and the services trust).
JWKS_PATH = "/.well-known/jwks.json"


def _handler(
    dist: Path, config: Callable[[], bytes], csp: Callable[[], str], jwks: Callable[[], bytes]
) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path in (CONFIG_PATH, JWKS_PATH):
                body = config() if path == CONFIG_PATH else jwks()
                if not body:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def end_headers(self) -> None:
            # A rebuilt bundle must show on reload; the files are small and local.
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", csp())
            self.send_header("X-Content-Type-Options", "nosniff")
            super().end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet: Envoy logs the calls
            return

    return partial(Handler, directory=str(dist))  # type: ignore[return-value]


class StaticServer:
    """Serves a folder read-only, plus `config` as /config.json and the JWKS file (if given) at
    /.well-known/jwks.json, on loopback."""

    def __init__(self, dist: Path, host: str = "127.0.0.1", port: int = 0, jwks_file: Path | None = None) -> None:
        if not (dist / "index.html").is_file():
            raise FailedPrecondition(f"the web UI is not built ({dist}/index.html is missing): run `make web`")
        self.config: dict[str, str] = {}

        def jwks() -> bytes:
            return jwks_file.read_bytes() if jwks_file is not None and jwks_file.is_file() else b""

        try:
            handler = _handler(dist, lambda: json.dumps(self.config).encode(), self.content_security_policy, jwks)
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise Unavailable(
                f"the web UI cannot listen on {host}:{port}: {error.strerror}; pick another --web-port"
            ) from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_port)
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-ui", daemon=True)
        self._thread.start()

    def content_security_policy(self) -> str:
        """Scripts and styles from this server only; calls to Envoy only; crop images from any HTTP(S)
        origin (the storage file server, or an S3 endpoint: presigned URLs carry their own host)."""
        envoy = self.config.get("grpcWebUrl", "")
        if not envoy.startswith(("http://", "https://")):
            envoy = ""  # a path: the UI's own origin, which 'self' covers
        return (
            f"default-src 'self'; connect-src 'self' {envoy}; img-src 'self' data: blob: http: https:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
        ).replace("  ", " ")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class WebFrontend:
    url: str  # the UI; open this
    envoy: EnvoyProxy


@contextlib.contextmanager
def web_frontend(stack: LocalStack, work_dir: Path, port: int = 0, dist: Path = DIST_DIR) -> Iterator[WebFrontend]:
    """Envoy in front of the stack's orchestrator and storage, and the UI that talks to it. Envoy trusts
    the stack's own token issuer (DATA_ROOT/auth), as the services do."""
    issuer = LocalIssuer.at(stack.data_root).ensure()
    # The UI's port must be known before Envoy starts (its origin is Envoy's allowed one): bind first.
    static = StaticServer(dist, stack.host, port, jwks_file=issuer.jwks_path)
    try:
        origins = (static.url, f"http://localhost:{static.port}")
        settings = EnvoySettings(
            stack.address("orchestrator"),
            stack.address("storage"),
            allowed_origins=origins,
            jwt_issuer=ISSUER,
            jwt_audiences=(AUDIENCE,),
            jwks_file=str(issuer.jwks_path),
        )
        with EnvoyProxy(settings, work_dir / "envoy") as envoy:
            static.config["grpcWebUrl"] = envoy.url
            yield WebFrontend(static.url, envoy)
    finally:
        static.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the UI bundle until SIGTERM/SIGINT: the chart's `web` container (behind Envoy)."""
    parser = argparse.ArgumentParser(prog="python -m services.cli.web", description="faceflow review UI (static files)")
    parser.add_argument("--dist", type=Path, default=DIST_DIR, help="the built bundle (make web: web/dist)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (the chart: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--grpc-web-url",
        default="/",
        help="where the UI sends gRPC-Web calls, for /config.json: a URL, or / for its own origin (behind Envoy)",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = StaticServer(args.dist, args.host, args.port)
    except (FailedPrecondition, Unavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    server.config["grpcWebUrl"] = args.grpc_web_url
    print(json.dumps({"event": "web UI serving", "dist": str(args.dist), "port": server.port}), flush=True)
    stop.wait()
    server.stop()
    print(json.dumps({"event": "web UI stopped"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
