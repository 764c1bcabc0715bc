"""Moving a response body to the client: sendfile, buffered reads, streams.

Three body writers, chosen per response by `send_body` (or, for a zero-copy
send that may start at once, by `zero_copy_now`, whose caller needs a task
only for what the socket does not take at once):

* zero-copy: the head goes out with send() and file regions with
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
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ferryman.errors import FerrymanError
from ferryman.http.body import Body, FileRegion, Part
from ferryman.pagecache import read_nowait, read_nowait_into
from ferryman.server.zerocopy import FileShrank, SocketWriter, ZeroCopySend

if TYPE_CHECKING:
    from ferryman.http.response import Framing

READ_CHUNK = 256 * 1024  # buffered path: one read, one transport.write


class TransferAborted(Exception):
    """The body could not be sent whole (peer gone, file shrank, timed out)."""


class Connection(Protocol):
    """What a body writer needs from the connection that owns it."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    body_sent: int

    @property
    def closed(self) -> bool: ...  # nothing more may be sent

    async def drain(self) -> None: ...
    async def flush(self) -> None: ...
    async def send_while_writable(self, fd: int, send: Callable[[], str]) -> str: ...
    def progress(self) -> None: ...
    def socket_writer(self) -> SocketWriter | None: ...


def inline_answer(
    head: bytes, parts: Sequence[Part], length: int | None, small: int
) -> bytes | bytearray | None:
    """The head and the whole body in one buffer for one write, when that beats sendfile.

    A body of at most `small` (--small-body) bytes always does. So does a body
    of several small regions (multipart/byteranges) up to four times that: one
    copy from the page cache costs less than a sendfile and a send per region.
    None when the body is larger, or a region is not all in the page cache.
    """
    if length is None or length > small:
        if length is None or length > 4 * small:
            return None
        if any(isinstance(p, FileRegion) and p.count > small for p in parts):
            return None
    return inline_parts(parts, head)


def inline_parts(parts: Sequence[Part], head: bytes = b"") -> bytes | bytearray | None:
    """`head`, then every part, in one buffer if every file region is cached; else None.

    The regions are read straight into their place in it: no copy per region,
    none to join them, none to put the head in front. Bytes alone (a body kept
    in memory) are joined to the head, which copies them once.
    """
    if not any(isinstance(part, FileRegion) for part in parts):
        return head + b"".join(parts)  # type: ignore[arg-type]  # no regions: all bytes
    total = len(head)
    for part in parts:
        total += part.count if isinstance(part, FileRegion) else len(part)
    buffer = bytearray(total)
    buffer[: len(head)] = head
    at = len(head)
    with memoryview(buffer) as view:
        for part in parts:
            if isinstance(part, FileRegion):
                count = part.count
                if count and read_nowait_into(part.fd, view[at : at + count], part.offset) != count:
                    return None  # cold, or the file is shorter: the sendfile path tells which
                at += count
            else:
                view[at : at + len(part)] = part
                at += len(part)
    return buffer


# -- writers ------------------------------------------------------------------


async def send_body(
    conn: Connection,
    framing: Framing,
    body: Body,
    use_sendfile: bool,
) -> None:
    """Send the head and the whole body, counting body bytes in `conn.body_sent`.

    Raises TransferAborted when the body cannot be sent whole.
    """
    try:
        if conn.closed:  # cut before this task first ran: not even the head goes out
            raise ConnectionResetError("connection lost")
        if body.stream is not None:
            await _send_stream(conn, framing, body.stream, body.length)
            return
        if use_sendfile and any(isinstance(p, FileRegion) for p in body.parts):
            await conn.flush()  # then zero_copy_now finds the transport's buffer empty
            send = zero_copy_now(conn, framing, body, use_sendfile)
            if send is not None:
                await send.finish()
                return
        await _send_buffered(conn, framing.head, body.parts)
    except SEND_FAILURES as exc:
        raise aborted(exc) from exc


# What ends a transfer midway. FerrymanError: a stream's source failed (a store
# fetch cut short); the head is gone, so the only honest answer is an aborted transfer.
SEND_FAILURES = (ConnectionError, OSError, FileShrank, FerrymanError)


def aborted(exc: BaseException) -> TransferAborted:
    return TransferAborted(str(exc) or type(exc).__name__)


def zero_copy_now(
    conn: Connection, framing: Framing, body: Body, use_sendfile: bool
) -> ZeroCopySend | None:
    """The zero-copy send of this answer, when it may start at once; else None.

    It may when the body is file regions and the transport holds nothing that
    must go first. The caller then runs its first `advance()` right away and
    needs a task only if that one blocks (a full socket, cold pages): most
    answers of a connection kept alive are out before the loop's next turn.
    """
    if not use_sendfile or body.stream is not None:
        return None
    if conn.transport.get_write_buffer_size() or not any(
        isinstance(p, FileRegion) for p in body.parts
    ):
        return None
    writer = conn.socket_writer()
    if writer is None:
        return None
    return ZeroCopySend(conn, writer, framing.head, body.parts)


async def finish_zero_copy(send: ZeroCopySend, state: str) -> None:
    """Carry on a zero-copy send whose first `advance()` returned `state`."""
    try:
        await send.finish(state)
    except SEND_FAILURES as exc:
        raise aborted(exc) from exc


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


async def _send_stream(
    conn: Connection, framing: Framing, stream: AsyncIterator[bytes], length: int | None
) -> None:
    """Chunks as they come; a declared length is a promise, checked both ways.

    The stream is closed however the send ends, so an upstream fetch behind it
    stops when the client goes away. Not with `await` in a `finally` (or an
    `except`): compiled by mypyc, that left the cut transfer's exception as
    the one being handled for the whole worker, and every later streamed
    answer's wait for the socket raised it, cutting each keep-alive
    connection once its answer was out.
    """
    failure: BaseException | None = None
    try:
        await _copy_stream(conn, framing, stream, length)
    except BaseException as exc:
        failure = exc
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
    if failure is not None:
        raise failure


async def _copy_stream(
    conn: Connection, framing: Framing, stream: AsyncIterator[bytes], length: int | None
) -> None:
    transport = conn.transport
    transport.write(framing.head)
    left = length
    async for chunk in stream:
        if not chunk:
            continue
        if left is not None:
            left -= len(chunk)
            if left < 0:
                raise TransferAborted("stream gave more bytes than it declared")
        await conn.drain()
        if framing.chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        conn.body_sent += len(chunk)
    if left:
        raise TransferAborted(f"stream ended {left} bytes short of its declared length")
    if framing.chunked:
        await conn.drain()  # the stream's end may come after the client left
        transport.write(b"0\r\n\r\n")
