"""The limit probe: bare uvloop + httptools answering every request with one fixed
1 KiB answer (the run's 1 KiB file, read once at the start).

No routing, no file system, no checks beyond the parser's: what a Python
server on this machine can do at most. It is still correct HTTP/1.1: Date
(once a second), Content-Length, keep-alive unless the request says close
(or is HTTP/1.0 without keep-alive), no body for HEAD, 400 and close on a
request the parser rejects, pipelined requests answered in order, reading
paused while the transport's buffer is full.
"""

from __future__ import annotations

import asyncio
import email.utils
from pathlib import Path

import httptools
import uvloop
from _common import announce, bound_socket, parse_args

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Answers:
    """The fixed answer's heads (keep-alive, HTTP/1.0 keep-alive, close) with the
    current Date, rebuilt once a second."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.heads: dict[str, bytes] = {}
        self.refresh()

    def refresh(self) -> None:
        date = email.utils.formatdate(usegmt=True)
        base = (
            "HTTP/1.1 200 OK\r\n"
            f"Date: {date}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {len(self.body)}\r\n"
        )
        self.heads = {
            "keep": (base + "\r\n").encode(),
            "keep-1.0": (base + "Connection: keep-alive\r\n\r\n").encode(),
            "close": (base + "Connection: close\r\n\r\n").encode(),
        }
        asyncio.get_running_loop().call_later(1, self.refresh)


class ProbeProtocol(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep = self.parser.should_keep_alive()
        if not keep:
            head = self.answers.heads["close"]
        elif self.parser.get_http_version() == "1.0":
            head = self.answers.heads["keep-1.0"]
        else:
            head = self.answers.heads["keep"]
        if self.parser.get_method() == b"HEAD":
            transport.write(head)
        else:
            transport.write(head + self.answers.body)
        if not keep:
            transport.close()

    # The transport's buffer is full: stop reading requests until it drains.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


async def serve(root: str, host: str) -> None:
    answers = Answers((Path(root) / "1k.bin").read_bytes())
    sock = bound_socket(host)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ProbeProtocol(answers), sock=sock, backlog=1024)
    announce(sock)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(serve(args.root, args.host))
