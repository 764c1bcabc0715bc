"""A tiny HTTP/1.1 response reader over raw sockets, for tests that must see
exactly what went over the wire (pipelining, framing, errors, timeouts)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import BinaryIO


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


def read_response(stream: BinaryIO, *, head_request: bool = False) -> RawResponse:
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

    def request(
        self, raw: bytes, *, count: int = 1, head_request: bool = False
    ) -> list[RawResponse]:
        """Send raw bytes, read `count` responses."""
        self.send(raw)
        return [self.read(head_request=head_request) for _ in range(count)]

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> RawResponse:
        lines = [f"{method} {path} HTTP/1.1", "Host: test"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return self.request(raw, head_request=method == "HEAD")[0]

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
