"""A body coded on the fly, off the event loop, in bounded memory.

The source is an identity Body (http/body.py): regions of open files and
literals, or an async stream (a store's object). Compression runs in worker
threads, one step at a time: a step reads (or takes) at most `STEP` bytes of
the source, feeds them to the coder and returns what came out. The loop only
hands bytes over, so a 100 MiB file never blocks it; and a transfer holds
one step's input, its output, the coder's window and the connection's write
buffer, whatever the file's size. The next step starts only when the
connection asks for more, that is once the client has taken the last chunk.

`coded_whole` codes a small body in one step, for an answer with a
Content-Length (and for the memory of coded bodies, app/compression.py).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Sequence

from ferryman.app.coders import PieceCoder, compress_whole
from ferryman.http.body import Body, FileRegion, Part

STEP = 256 * 1024  # source bytes per thread step


class SourceShrank(OSError):
    """A file being coded ended before the bytes its answer promised."""

    def __init__(self) -> None:
        super().__init__(errno.EIO, "file shrank while being compressed")


class _Parts:
    """A cursor over literal and file-region parts, read with pread (in a thread)."""

    __slots__ = ("_index", "_offset", "_parts")

    def __init__(self, parts: Sequence[Part]) -> None:
        self._parts = parts
        self._index = 0
        self._offset = 0  # within the current part

    @property
    def done(self) -> bool:
        return self._index >= len(self._parts)

    def read(self, limit: int) -> bytes:
        pieces: list[bytes] = []
        left = limit
        while left > 0 and self._index < len(self._parts):
            part = self._parts[self._index]
            if isinstance(part, FileRegion):
                want = min(left, part.count - self._offset)
                data = os.pread(part.fd, want, part.offset + self._offset) if want else b""
                if len(data) < want:
                    raise SourceShrank()
            else:
                data = part[self._offset : self._offset + left]
            pieces.append(data)
            left -= len(data)
            self._offset += len(data)
            length = part.count if isinstance(part, FileRegion) else len(part)
            if self._offset >= length:
                self._index += 1
                self._offset = 0
        return b"".join(pieces)


def _step(coder: PieceCoder, parts: _Parts) -> bytes:
    out = coder.feed(parts.read(STEP))
    if parts.done:
        out += coder.finish()
    return out


async def coded_stream(source: Body, coding: str) -> AsyncIterator[bytes]:
    """The coded bytes of `source`, step by step. Closes a source stream when it ends;
    the source's cleanup stays with whoever owns the Body."""
    coder = PieceCoder(coding)
    if source.stream is None:
        parts = _Parts(source.parts)
        if parts.done:
            yield coder.finish()
            return
        while not parts.done:
            out = await asyncio.to_thread(_step, coder, parts)
            if out:
                yield out
        return
    stream = source.stream
    try:
        held: list[bytes] = []
        size = total = 0
        async for chunk in stream:
            held.append(chunk)
            size += len(chunk)
            total += len(chunk)
            if size >= STEP:
                data, held, size = b"".join(held), [], 0
                out = await asyncio.to_thread(coder.feed, data)
                if out:
                    yield out
        if source.length is not None and total != source.length:
            raise SourceShrank()
        rest = b"".join(held)
        yield await asyncio.to_thread(_finish, coder, rest)
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def _finish(coder: PieceCoder, rest: bytes) -> bytes:
    return coder.feed(rest) + coder.finish()


async def coded_whole(source: Body, coding: str) -> bytes:
    """All of `source`, coded, in one thread step (a stream is gathered first)."""
    if source.stream is None:
        return await asyncio.to_thread(_code_parts, source.parts, coding)
    stream = source.stream
    try:
        data = b"".join([chunk async for chunk in stream])
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    if source.length is not None and len(data) != source.length:
        raise SourceShrank()
    return await asyncio.to_thread(compress_whole, coding, data)


def _code_parts(parts: Sequence[Part], coding: str) -> bytes:
    cursor = _Parts(parts)
    data = cursor.read(sum(p.count if isinstance(p, FileRegion) else len(p) for p in parts))
    return compress_whole(coding, data)
