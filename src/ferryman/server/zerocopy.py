"""Zero-copy sending: a head and file regions, straight from the page cache.

The bytes go out on a dup() of the connection's socket, beside its transport
(uvloop has no loop.sendfile, and its transports refuse add_writer on their
own socket; a duplicate works on both loops). File regions go with
os.sendfile(). The head goes alone, as nginx sends it by default: held back
with MSG_MORE to share a packet with the first region, it made the kernel's
TCP pacing (BBR here) arm a pacing timer on most 64 KiB range answers, one
interrupt each (docs/performance.md). Multipart framing between regions still
goes with MSG_MORE, which measured no timers.

`ZeroCopySend` is a resumable state machine: `advance()` sends until the
socket would block, a region is not in the page cache, or all is sent. The
connection runs its first step from a handle on the loop's next turn; when
that does not finish, `finish()` drives the rest from a task, from the
socket's writability callback while it blocks, and warms cold pages in a
thread (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ferryman.http.body import FileRegion, Part
from ferryman.pagecache import is_cached, warm

if TYPE_CHECKING:
    from ferryman.server.transfer import Connection

SENDFILE_CHUNK = 2 * 1024 * 1024  # most one sendfile() asks for (nginx: sendfile_max_chunk)
_MSG_MORE = getattr(socket, "MSG_MORE", 0)

DONE, BLOCKED, COLD = "done", "blocked", "cold"


class FileShrank(Exception):
    """sendfile() found the end of the file before the promised length."""


class SocketWriter:
    """A duplicate of the connection's socket; one per connection, closed with it."""

    def __init__(self, raw_socket: socket.socket) -> None:
        self.sock = socket.socket(fileno=os.dup(raw_socket.fileno()))
        self.fd = self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def _merge_literals(head: bytes, parts: Sequence[Part]) -> list[bytes | FileRegion]:
    items: list[bytes | FileRegion] = [head]
    for part in parts:
        if isinstance(part, FileRegion):
            if part.count:
                items.append(part)
        elif isinstance(items[-1], bytes):
            items[-1] += part
        else:
            items.append(part)
    return items


class ZeroCopySend:
    def __init__(self, conn: Connection, writer: SocketWriter, head: bytes, parts: Sequence[Part]):
        self.conn = conn
        self.writer = writer
        self.items = _merge_literals(head, parts)
        self.head_left = len(head)  # head bytes not yet sent (not counted as body)
        self.index = 0
        self.done_in_item = 0  # bytes of items[index] already sent
        self.checked_until = -1  # offset in the current region known to be cached
        self.cold: tuple[int, int, int] | None = None  # (fd, offset, count) to warm

    def advance(self) -> str:
        """Send what can be sent now; DONE, BLOCKED (wait for writable) or COLD."""
        sock, conn, items = self.writer.sock, self.conn, self.items
        while self.index < len(items):
            item = items[self.index]
            try:
                if isinstance(item, bytes):
                    more = 0 < self.index < len(items) - 1  # framing, not the head
                    n = sock.send(item[self.done_in_item :], _MSG_MORE if more else 0)
                    counted = max(0, n - self.head_left)
                    self.head_left = max(0, self.head_left - n)
                    finished = self.done_in_item + n == len(item)
                else:
                    offset = item.offset + self.done_in_item
                    # Every call may send a whole step: after a partial send the
                    # window slides, and only the bytes not yet probed are probed.
                    window_end = min(offset + SENDFILE_CHUNK, item.offset + item.count)
                    if window_end > self.checked_until:
                        start = max(offset, self.checked_until)
                        if not is_cached(item.fd, start, window_end - start):
                            self.cold = (item.fd, start, window_end - start)
                            return COLD
                        self.checked_until = window_end
                    n = os.sendfile(self.writer.fd, item.fd, offset, self.checked_until - offset)
                    if n == 0:
                        raise FileShrank("file shrank while being sent")
                    counted = n
                    finished = self.done_in_item + n == item.count
            except (BlockingIOError, InterruptedError):
                return BLOCKED
            conn.body_sent += counted
            if finished:
                self.index += 1
                self.done_in_item = 0
                self.checked_until = -1
            else:
                self.done_in_item += n
            conn.progress()
        return DONE

    async def finish(self, state: str = "") -> None:
        """Drive advance() to the end, through writability waits and cold pages;
        `state` is what a first advance() the caller ran returned, if it ran one."""
        while True:
            if not state:
                state = self.advance()
            if state == BLOCKED:
                state = await self.conn.send_while_writable(self.writer.fd, self.advance)
            if state == DONE:
                return
            if state == COLD:
                assert self.cold is not None
                fd, offset, count = self.cold
                await asyncio.to_thread(warm, fd, offset, count)
                self.checked_until = offset + count
                self.cold = None
                if self.conn.closed:
                    raise ConnectionResetError("connection lost")
            state = ""
