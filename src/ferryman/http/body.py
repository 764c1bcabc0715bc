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
from typing import Final, Protocol


class FileRegion:
    """`count` bytes of the open file `fd` starting at `offset`.

    A value: read-only (Final) and compared by its fields. Written out rather
    than a frozen dataclass, whose __init__ costs ten times more compiled
    (0.35 against 0.03 us), for a class made once per request.
    """

    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd: Final = fd
        self.offset: Final = offset
        self.count: Final = count

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileRegion)
            and self.fd == other.fd
            and self.offset == other.offset
            and self.count == other.count
        )

    def __hash__(self) -> int:
        return hash((self.fd, self.offset, self.count))

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, offset={self.offset}, count={self.count})"


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
