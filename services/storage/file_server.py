"""Signed, expiring HTTP URLs for artifacts of the local backend: the local twin of S3 presigned URLs.

The review UI and reports fetch crops by URL in both modes; locally the storage service serves them
itself, read-only, on loopback, and only with a valid signature that has not expired. The server never
opens a path itself: `open_file` (LocalStorage.open_url_path) opens it through the backend's gate, so a
URL whose file was swapped for a link out of the data root gets 404 (docs/storage.md, "Symlinks").
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK_BYTES = 256 * 1024


@dataclass
class UrlSigner:
    """HMAC-SHA256 over path and expiry; the key is per process unless FACEFLOW_URL_SIGNING_KEY is set."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def signature(self, path: str, expires: int) -> str:
        return hmac.new(self.key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, base_url: str, path: str, expires_s: int, now: float | None = None) -> str:
        expires = int((now or time.time()) + expires_s)
        quoted = quote(path)
        return f"{base_url}{quoted}?expires={expires}&signature={self.signature(path, expires)}"

    def verify(self, path: str, expires: str, signature: str, now: float | None = None) -> bool:
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return False
        return hmac.compare_digest(self.signature(path, int(expires)), signature)


def _handler(signer: UrlSigner, open_file: Callable[[str], BinaryIO | None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            expires = query.get("expires", [""])[0]
            signature = query.get("signature", [""])[0]
            if not signer.verify(path, expires, signature):
                self.send_error(403, "missing, invalid or expired signature")
                return
            stream = open_file(path)
            if stream is None:
                self.send_error(404, "no such artifact")
                return
            with stream:
                self.send_response(200)
                self.send_header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
                self.send_header("Content-Length", str(os.fstat(stream.fileno()).st_size))
                self.send_header("Cache-Control", "private, max-age=300")
                self.end_headers()
                while chunk := stream.read(CHUNK_BYTES):
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:  # quiet: the gRPC side logs
            return

    return Handler


class FileServer:
    """Serves signed GETs of the files `open_file` opens for a URL path (None: 404); binds loopback by default."""

    def __init__(
        self,
        signer: UrlSigner,
        open_file: Callable[[str], BinaryIO | None],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(signer, open_file))
        self._server.daemon_threads = True
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="file-server", daemon=True)

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
