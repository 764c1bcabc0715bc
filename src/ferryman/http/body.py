"""What a handler returns as a response body: a description, not a write.

A body is either a fixed sequence of parts (literal bytes and regions of open
files, whose total length is known up front) or an async stream of chunks,
whose total length may be declared (an object fetched from a store) or not.
The connection decides how to move it (sendfile for file regions, buffered
reads otherwise) and runs `cleanup` exactly once when
the transfer ends, however it ends: completed, aborted or cut by the peer.
That is what ties an open descriptor's (or a temporary file's) life to the
transfer rather than to the handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FileRegion:
    """`count` bytes of the open file `fd` starting at `offset`."""

    fd: int
    offset: int
    count: int


Part = bytes | FileRegion


class Body:
    """A response body description plus the cleanup that releases what it holds."""

    __slots__ = ("cleanup", "length", "parts", "stream")

    def __init__(
        self,
        parts: Sequence[Part] = (),
        *,
        stream: AsyncIterator[bytes] | None = None,
        length: int | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        """`length` declares a stream's total (sent with Content-Length, enforced)."""
        self.parts = parts
        self.stream = stream
        self.cleanup = cleanup
        self.length: int | None = (
            length
            if stream is not None
            else sum(p.count if isinstance(p, FileRegion) else len(p) for p in parts)
        )

    def release(self) -> None:
        """Run the cleanup once; later calls do nothing."""
        cleanup, self.cleanup = self.cleanup, None
        if cleanup is not None:
            cleanup()


EMPTY = Body()


class BodyReader(Protocol):
    """A request body as the handler sees it: pulled piece by piece."""

    done: bool  # the whole body has been read
    received: int  # bytes read so far

    async def read(self) -> bytes: ...  # the next piece; b"" at the end

    def __aiter__(self) -> AsyncIterator[bytes]: ...
