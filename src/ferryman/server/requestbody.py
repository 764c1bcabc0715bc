"""A request body, read when (and only as fast as) the handler asks for it.

The handler pulls chunks; each pull takes the next event from the
connection's parser, waiting for bytes when there are none. Nothing is read
ahead beyond the parser's buffer, whose size pauses the transport, so a large
upload costs one buffer, not its size. `Expect: 100-continue` is answered at
the first pull, so a handler that refuses a request before reading its body
(auth, preconditions, size) never invites the client to send it.

A body the handler leaves unread makes the connection close after the
answer: the byte stream can no longer be trusted to be at a request start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ferryman.errors import HttpError
from ferryman.http.parser import END_OF_MESSAGE, NEED_DATA, Data, Request

if TYPE_CHECKING:
    from ferryman.server.connection import HttpConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RequestBody:
    def __init__(self, conn: HttpConnection, request: Request, max_size: int) -> None:
        self.conn = conn
        self.request = request
        self.max_size = max_size
        self.received = 0
        self.done = not request.has_body
        # 100 Continue goes out at the first read, and only if the client waits for it.
        self._continue_sent = not (request.http11 and request.expect_continue)
        if request.content_length is not None and request.content_length > max_size > 0:
            self.too_large()

    def too_large(self) -> None:
        raise HttpError(
            413, "content_too_large", f"the body exceeds --max-upload-size ({self.max_size} bytes)"
        )

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises on a broken stream."""
        if self.done:
            return b""
        conn = self.conn
        if not self._continue_sent:
            self._continue_sent = True
            if not conn.closed:  # cut while the handler worked: the wait below fails
                conn.transport.write(_CONTINUE)
        while True:
            event = conn.parser.next_event()  # ProtocolError on a malformed body
            if event is NEED_DATA:
                await conn.wait_for_body()
                continue
            if isinstance(event, Data):
                self.received += len(event.data)
                if self.max_size and self.received > self.max_size:
                    self.too_large()
                return event.data
            if event is END_OF_MESSAGE:
                self.done = True
                return b""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk
