"""A minimal gRPC-Web client (binary format, HTTP/1.1 POST): what a browser's grpc-web library sends.

Written here rather than taken from sonora because sonora pins an older urllib3 that the project
venv must not get, and because the test should see the wire format itself: every message is a frame
of 1 flag byte + 4-byte big-endian length + payload; the trailers come last in a frame with flag
0x80, as `name:value\\r\\n` lines. A call that fails before any message may instead be
"trailers-only": grpc-status in the HTTP response headers and an empty body.
"""

from __future__ import annotations

import http.client
import struct
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "application/grpc-web+proto"
TRAILER_FLAG = 0x80


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def parse_trailers(block: bytes) -> dict[str, str]:
    trailers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            trailers[name.strip().lower()] = value.strip()
    return trailers


@dataclass
class GrpcWebCall:
    """One call in flight; iterate `messages()` to read the response frames as they arrive."""

    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection
    trailers: dict[str, str] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)  # monotonic time each message was read

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.response.getheaders()}

    @property
    def grpc_status(self) -> int | None:
        """From the trailer frame, else from the headers (a trailers-only response)."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return urllib.parse.unquote(self.trailers.get("grpc-message", self.headers.get("grpc-message", "")))

    def _read_exactly(self, n: int) -> bytes:
        data = self.response.read(n)
        if len(data) != n:
            raise EOFError(f"gRPC-Web body ended inside a frame ({len(data)} of {n} bytes)")
        return data

    def messages(self) -> Iterator[bytes]:
        """Each data frame's payload as soon as its bytes are in; trailers are kept on the call."""
        try:
            while True:
                header = self.response.read(5)
                if not header:
                    return
                if len(header) < 5:
                    header += self._read_exactly(5 - len(header))
                flag, length = struct.unpack(">BI", header)
                payload = self._read_exactly(length)
                if flag & TRAILER_FLAG:
                    self.trailers.update(parse_trailers(payload))
                    continue
                self.arrivals.append(time.monotonic())
                yield payload
        finally:
            self.connection.close()


def start_call(
    address: str,
    method: str,
    request: bytes,
    origin: str | None = None,
    timeout: float = 60.0,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> GrpcWebCall:
    """POST one request message to `/package.Service/Method` and return once the headers are in.
    `token` goes out as `authorization: Bearer <token>`, as the web UI sends it; `headers` are added as given."""
    connection = http.client.HTTPConnection(address, timeout=timeout)
    sent = {"content-type": CONTENT_TYPE, "x-grpc-web": "1", "accept": CONTENT_TYPE}
    if origin:
        sent["origin"] = origin
    if token:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    connection.request("POST", method, body=frame(request), headers=sent)
    return GrpcWebCall(connection.getresponse(), connection)


def unary(
    address: str,
    method: str,
    request: bytes,
    origin: str | None = None,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[GrpcWebCall, list[bytes]]:
    call = start_call(address, method, request, origin, token=token, headers=headers)
    return call, list(call.messages())
