"""Requests and request bodies built in-process, for tests that call handlers directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ferryman.http.parser import Request, RequestParser


def parsed_request(method: str, target: str, body: bytes = b"", **headers: str) -> Request:
    """The Request the parser makes of this message (header names: `If_Match=` for If-Match)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    parser = RequestParser()
    parser.receive(head.encode("latin-1") + b"\r\n" + body)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


class ReceivedBody:
    """A request body already received, as a handler pulls it."""

    def __init__(self, data: bytes) -> None:
        self.pieces = [data] if data else []
        self.done = False
        self.received = 0

    async def read(self) -> bytes:
        if not self.pieces:
            self.done = True
            return b""
        piece = self.pieces.pop(0)
        self.received += len(piece)
        return piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while piece := await self.read():
            yield piece
