"""Requests and request bodies built in-process, for unit tests that call app/ directly.

`request(method, target, headers, body)` is the Request the real parser
makes of that message (Host: x unless given, Content-Length for a body), so a
unit test sees what a handler would. `unparsed_request` is the one way to
make a Request the parser would refuse (raw bytes in the target), for code
that must hold on its own. `ReceivedBody` is a request body as a handler
pulls it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from ferryman.http.parser import Request, RequestParser
from tests.rawhttp import request_bytes


def request(method: str = "GET", target: str = "/x", headers: Mapping[str, str] | None = None,
            body: bytes = b"") -> Request:  # fmt: skip
    """The Request the parser makes of this message."""
    parser = RequestParser()
    parser.receive(request_bytes(method, target, headers, body, host="x"))
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


def unparsed_request(method: str, target: bytes,
                     headers: Mapping[str, str] | None = None) -> Request:  # fmt: skip
    """A Request made without the parser, `target` byte for byte (Host: x, no body)."""
    fields = {"host": "x"} | {name.lower(): value for name, value in (headers or {}).items()}
    path, _, query = target.partition(b"?")
    return Request(method, target, path, query, True, fields, True, "none", None)


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
