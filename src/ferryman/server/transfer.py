"""Moving a response body to the client: sendfile, buffered reads, streams.

Three body writers, chosen per response by `send_body`:

* zero-copy: the head goes out with MSG_MORE and file regions with
  os.sendfile(), both on a dup() of the connection's socket, beside the
  transport (uvloop has no loop.sendfile, and its transports refuse
  add_writer on their own socket; a duplicate works on both loops). The
  transport's buffer is flushed first so bytes never overtake each other.
* buffered: file regions are read in 256 KiB pieces and written through the
  transport, waiting on its flow control.
* stream: an async iterator of chunks, chunked-encoded on HTTP/1.1.

No file read blocks the event loop: before touching a region, a one-byte
preadv(RWF_NOWAIT) at each end tells whether its pages are cached; a cold
region is read in a worker thread first (which warms the page cache for
sendfile, or supplies the bytes for the buffered path).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from ferryman.http.body import Body, FileRegion, Part
from ferryman.pagecache import is_cached, read_nowait, warm

if TYPE_CHECKING:
    from ferryman.http.response import Framing

SENDFILE_CHUNK = 2 * 1024 * 1024  # probe and warm granularity for sendfile
READ_CHUNK = 256 * 1024  # buffered path: one read, one transport.write
_MSG_MORE = getattr(socket, "MSG_MORE", 0)


class TransferAborted(Exception):
    """The body could not be sent whole (peer gone, file shrank, timed out)."""


class Connection(Protocol):
    """What a body writer needs from the connection that owns it."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    body_sent: int

    async def drain(self) -> None: ...
    async def flush(self) -> None: ...
    async def writable(self, fd: int) -> None: ...
    def progress(self) -> None: ...
    def socket_writer(self) -> SocketWriter: ...


def inline_parts(parts: Sequence[Part]) -> bytes | None:
    """The whole body as bytes if every file region is cached; else None."""
    pieces: list[bytes] = []
    for part in parts:
        if isinstance(part, FileRegion):
            data = read_nowait(part.fd, part.offset, part.count)
            if data is None or len(data) != part.count:
                return None
            pieces.append(data)
        else:
            pieces.append(part)
    return b"".join(pieces)


# -- writers ------------------------------------------------------------------


async def send_body(conn: Connection, framing: Framing, body: Body, use_sendfile: bool) -> None:
    """Send the head and the whole body, counting body bytes in `conn.body_sent`.

    Raises TransferAborted when the body cannot be sent whole.
    """
    try:
        if body.stream is not None:
            await _send_stream(conn, framing, body.stream)
            return
        if use_sendfile and any(isinstance(p, FileRegion) for p in body.parts):
            try:
                writer = conn.socket_writer()
            except OSError:  # no descriptor left for the duplicate: copy instead
                writer = None
            if writer is not None:
                await _send_zero_copy(conn, writer, framing.head, body.parts)
                return
        await _send_buffered(conn, framing.head, body.parts)
    except (ConnectionError, OSError) as exc:
        raise TransferAborted(str(exc) or type(exc).__name__) from exc


async def _send_zero_copy(
    conn: Connection, writer: SocketWriter, head: bytes, parts: Sequence[Part]
) -> None:
    await conn.flush()
    pending = head  # literal bytes wait to be sent with MSG_MORE before a region
    pending_body = 0  # how many of them are body bytes (not the head)
    for part in parts:
        if isinstance(part, FileRegion):
            if pending:
                await writer.send(pending, more=True)
                conn.body_sent += pending_body
                pending, pending_body = b"", 0
            await writer.sendfile(part.fd, part.offset, part.count)
        else:
            pending += part
            pending_body += len(part)
    if pending:
        await writer.send(pending, more=False)
        conn.body_sent += pending_body


async def _send_buffered(conn: Connection, head: bytes, parts: Sequence[Part]) -> None:
    transport = conn.transport
    transport.write(head)
    for part in parts:
        if isinstance(part, FileRegion):
            await _copy_region(conn, part)
        else:
            transport.write(part)
            conn.body_sent += len(part)
        await conn.drain()


async def _copy_region(conn: Connection, region: FileRegion) -> None:
    offset, end = region.offset, region.offset + region.count
    while offset < end:
        want = min(READ_CHUNK, end - offset)
        data = read_nowait(region.fd, offset, want)
        if not data:  # cold (None), or b"": let the thread tell EOF from cold
            data = await asyncio.to_thread(os.pread, region.fd, want, offset)
            if not data:
                raise TransferAborted("file shrank while being sent")
        await conn.drain()  # the connection may be gone while the thread read
        conn.transport.write(data)
        conn.body_sent += len(data)
        offset += len(data)
        await conn.drain()


async def _send_stream(conn: Connection, framing: Framing, stream: AsyncIterator[bytes]) -> None:
    transport = conn.transport
    transport.write(framing.head)
    async for chunk in stream:
        if not chunk:
            continue
        await conn.drain()
        if framing.chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        conn.body_sent += len(chunk)
    if framing.chunked:
        transport.write(b"0\r\n\r\n")


class SocketWriter:
    """Writes straight to the connection's socket through a duplicate descriptor.

    One per connection, made at its first zero-copy body and closed with it.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        raw = conn.transport.get_extra_info("socket")
        self.sock = socket.socket(fileno=os.dup(raw.fileno()))
        self.fd = self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    async def send(self, data: bytes, *, more: bool) -> None:
        view = memoryview(data)
        flags = _MSG_MORE if more else 0
        while view:
            try:
                n = self.sock.send(view, flags)
            except (BlockingIOError, InterruptedError):
                await self.conn.writable(self.fd)
                continue
            view = view[n:]
            self.conn.progress()

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        end = offset + count
        checked_until = offset  # the region up to here was probed (and warmed if cold)
        while offset < end:
            if offset >= checked_until:
                step = min(SENDFILE_CHUNK, end - offset)
                if not is_cached(fd, offset, step):
                    await asyncio.to_thread(warm, fd, offset, step)
                checked_until = offset + step
            try:
                n = os.sendfile(self.fd, fd, offset, checked_until - offset)
            except (BlockingIOError, InterruptedError):
                await self.conn.writable(self.fd)
                continue
            if n == 0:
                raise TransferAborted("file shrank while being sent")
            offset += n
            self.conn.body_sent += n
            self.conn.progress()
