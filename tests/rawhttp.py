"""HTTP/1.1 on raw sockets, for tests that must see exactly what went over the wire
(pipelining, framing, errors, timeouts).

`request_bytes(method, target, headers, body)` is the one way a test builds a
request's bytes: the request line, `Host`, the headers in the order given,
`Content-Length` for a body, the blank line, the body. Bytes that must be
malformed on purpose (tests/integration/test_hostile.py) are written out as
literals instead. `Conn` is one client connection; `read_response` reads one
response from a stream.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

SENDS_A_BODY = frozenset({"PUT", "POST"})  # Content-Length even when the body is empty


def request_bytes(
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    host: str | None = "t",
    version: str = "HTTP/1.1",
) -> bytes:
    """One request as it goes on the wire. `host=None` sends no Host (unless `headers`
    has one); Content-Length is added for a body, or a PUT, unless `headers` frames
    the body itself (Content-Length or Transfer-Encoding)."""
    fields = dict(headers or {})
    named = {name.lower() for name in fields}
    lines = [f"{method} {target} {version}"]
    if host is not None and "host" not in named:
        lines.append(f"Host: {host}")
    if (body or method in SENDS_A_BODY) and named.isdisjoint(
        {"content-length", "transfer-encoding"}
    ):
        fields["Content-Length"] = str(len(body))
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def count(self, name: str) -> int:
        return sum(1 for k, _ in self.headers if k.lower() == name.lower())

    @property
    def whole(self) -> bool:
        """The body is as long as its Content-Length (False: the transfer was cut short)."""
        return len(self.body) == int(self.header("content-length") or "0")


def read_response(stream: BinaryIO, *, head_request: bool = False) -> RawResponse:
    """One response; a body framed by Content-Length is read up to it or to the end of the
    connection, whichever comes first (`RawResponse.whole` tells which)."""
    line = stream.readline(65536)
    if not line:
        raise ConnectionError("connection closed before a response")
    version, status, reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    response = RawResponse(int(status), reason, version)
    while True:
        line = stream.readline(65536)
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
        response.headers.append((name, value.strip()))
    if head_request or response.status in (204, 304) or response.status < 200:
        return response
    length = response.header("content-length")
    if response.header("transfer-encoding") == "chunked":
        chunks = []
        while True:
            size = int(stream.readline().split(b";")[0], 16)
            if size == 0:
                stream.readline()
                break
            chunks.append(stream.read(size))
            stream.readline()
        response.body = b"".join(chunks)
    elif length is not None:
        response.body = stream.read(int(length))
    else:
        response.body = stream.read()
    return response


class Conn:
    """One client connection; responses are read from one buffered stream, so
    bytes of a later (pipelined) response are never lost between calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream = sock.makefile("rb")

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read(self, *, head_request: bool = False) -> RawResponse:
        return read_response(self.stream, head_request=head_request)

    def request(self, method: str, target: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"") -> RawResponse:  # fmt: skip
        """Send one request (request_bytes), read its response."""
        self.send(request_bytes(method, target, headers, body))
        return self.read(head_request=method == "HEAD")

    def get(self, target: str, headers: Mapping[str, str] | None = None) -> RawResponse:
        return self.request("GET", target, headers)

    def exchange(self, raw: bytes, *, count: int = 1,
                 head_request: bool = False) -> list[RawResponse]:  # fmt: skip
        """Send raw bytes (one request, several pipelined, or a malformed one), read
        `count` responses."""
        self.send(raw)
        return [self.read(head_request=head_request) for _ in range(count)]

    def closed_by_peer(self, timeout: float) -> bool:
        """True if the server closes the connection (EOF or reset) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.stream.read1(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
