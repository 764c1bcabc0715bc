"""Raw HTTP/1.1 exchanges for the checks before the fixed-request workloads.

A client library would hide what these checks are for: a HEAD or 304 answer
that carries body bytes anyway, a connection that is not usable after an
answer, a `Connection: close` the server does not honour. So the requests are
written as bytes and the answers read as bytes, framed by hand.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import BinaryIO

from settings import HOST

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class ExchangeError(Exception):
    """The answer could not be read as HTTP/1.x: the message says what was wrong."""


@dataclass(frozen=True)
class Answer:
    version: str  # "HTTP/1.1"
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def closes(self) -> bool:
        """The answer says the server will close the connection after it."""
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def request_bytes(method: str, path: str, port: int, headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_HEAD)
    if not line:
        raise ExchangeError("the connection closed before an answer")
    if not line.endswith(b"\n"):
        raise ExchangeError("an answer's line is too long")
    return line.rstrip(b"\r\n")


def read_answer(reader: BinaryIO, method: str) -> Answer:
    """One answer to a `method` request, body framed as RFC 9112 section 6.3 says."""
    status_line = _line(reader).decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.0", "HTTP/1.1") or not code.isdigit():
        raise ExchangeError(f"not a status line: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    while line := _line(reader):
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ExchangeError(f"not a header line: {line[:60]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    answer = Answer(version, int(code), headers, b"")
    return Answer(version, answer.status, headers, _read_body(reader, method, answer))


def _read_body(reader: BinaryIO, method: str, answer: Answer) -> bytes:
    if method == "HEAD" or answer.status in (204, 304) or answer.status < 200:
        return b""
    if "chunked" in (answer.header("transfer-encoding") or "").lower():
        return _read_chunked(reader)
    length = answer.header("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise ExchangeError(f"Content-Length {length!r}")
        body = reader.read(int(length))
        if len(body) != int(length):
            raise ExchangeError(f"body ends after {len(body)} of {length} bytes")
        return body
    return reader.read(MAX_BODY)  # delimited by the close


def _read_chunked(reader: BinaryIO) -> bytes:
    body = bytearray()
    while True:
        size_text = _line(reader).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ExchangeError(f"chunk size {size_text[:20]!r}") from None
        if size == 0:
            while _line(reader):  # trailer fields
                pass
            return bytes(body)
        body += reader.read(size)
        if len(body) > MAX_BODY or reader.read(2) != b"\r\n":
            raise ExchangeError("a chunk not ended by CRLF")


class Connection:
    """One client connection: send a request, read its answer, see whether it closed."""

    def __init__(self, port: int, tls: bool = False, timeout: float = 10.0) -> None:
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls:  # a self-signed certificate: not checked
            context = ssl._create_unverified_context()
            self.sock = context.wrap_socket(self.sock, server_hostname=HOST)
        self.reader = self.sock.makefile("rb")

    def ask(self, method: str, path: str, headers: tuple[str, ...] = ()) -> Answer:
        self.sock.sendall(request_bytes(method, path, self.port, headers))
        return read_answer(self.reader, method)

    def closed_by_server(self) -> bool:
        """True when the server closed its side (EOF) before the timeout; False when
        it kept the connection open, or sent more bytes."""
        try:
            return self.reader.read(1) == b""
        except TimeoutError:
            return False
        except (ConnectionResetError, ssl.SSLEOFError):
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
