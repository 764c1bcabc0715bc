"""One deadline per connection, whose meaning follows the connection's state;
one loop timer for all the deadlines of a worker.

A connection is always waiting for one thing: the next request (IDLE, the
keep-alive timeout), the rest of a request head (HEAD, the header timeout,
counted from its first byte), request-body bytes (BODY), or the client to
take what was sent (SEND). `arm` moves the deadline; it is only queued again
when it comes earlier than its place in the queue, and a deadline found in
the queue before its time is queued again, so the per-request cost is an
assignment, not a timer.

`Timers` is that queue: a heap of deadlines and a single loop timer for the
earliest. A loop timer per connection cost about 0.6 KiB of an idle
connection's 3.7 KiB (uvloop's TimerHandle and its libuv timer); a heap entry
costs under 0.1 KiB. Entries of a cancelled or moved deadline are marked
dead, not searched for; they keep nothing alive and the heap is rebuilt
without them once they outnumber the live ones.

On expiry the owner's callback decides: it returns a new timeout to keep
waiting (a slow client that made progress), or None.
"""

from __future__ import annotations

import asyncio
import fcntl
import heapq
import math
import struct
import termios
from collections.abc import Callable
from typing import Any

IDLE, HEAD, BODY, SEND = "idle", "head", "body", "send"

# A heap entry is a list [at, sequence, Deadline or None once dead]: lists
# compare in C, at first, then the unique sequence, never the deadline.
_Entry = list[Any]
_AT, _SEQ, _DEADLINE = range(3)
_MIN_REBUILD = 256  # dead entries tolerated before a rebuild is considered


class Timers:
    """The deadlines of one event loop, in one heap, behind one loop timer."""

    __slots__ = ("_dead", "_handle", "_handle_at", "_heap", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[_Entry] = []
        self._seq = 0  # ties are broken by arrival, never by comparing deadlines
        self._dead = 0
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = math.inf

    def time(self) -> float:
        return self._loop.time()

    def push(self, deadline: Deadline, at: float) -> _Entry:
        self._seq += 1
        entry = [at, self._seq, deadline]
        heapq.heappush(self._heap, entry)
        if at < self._handle_at:
            self._schedule(at)
        return entry

    def discard(self, entry: _Entry) -> None:
        """Mark a queued entry dead: it fires nothing and holds no deadline."""
        entry[_DEADLINE] = None
        self._dead += 1
        if self._dead > _MIN_REBUILD and self._dead > len(self._heap) // 2:
            self._heap = [e for e in self._heap if e[_DEADLINE] is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    def _schedule(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(at, self._run)
        self._handle_at = at

    def _run(self) -> None:
        self._handle = None
        self._handle_at = math.inf
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][_AT] <= now:
            entry = heapq.heappop(heap)
            deadline = entry[_DEADLINE]
            if deadline is None:
                self._dead -= 1
                continue
            try:
                deadline._due(now)
            except Exception as exc:  # one connection's failure must not stop the others
                self._loop.call_exception_handler(
                    {"message": "connection deadline callback failed", "exception": exc}
                )
        if heap:
            self._schedule(heap[0][_AT])


class Deadline:
    __slots__ = ("_entry", "_expired", "_timers", "at", "kind")

    def __init__(self, timers: Timers, expired: Callable[[str], float | None]) -> None:
        self._timers = timers
        self._expired = expired
        self._entry: _Entry | None = None  # its place in the queue
        self.at = math.inf
        self.kind = IDLE

    @property
    def armed(self) -> bool:
        return self.at != math.inf

    def arm(self, kind: str, timeout: float) -> None:
        self.kind = kind
        self.at = self._timers.time() + timeout
        entry = self._entry
        if entry is None or self.at < entry[_AT]:
            if entry is not None:
                self._timers.discard(entry)
            self._entry = self._timers.push(self, self.at)

    def extend(self, timeout: float) -> None:
        """Progress: the same wait, counted again from now."""
        self.arm(self.kind, timeout)

    def disarm(self) -> None:
        self.at = math.inf

    def cancel(self) -> None:
        self.at = math.inf
        if self._entry is not None:
            self._timers.discard(self._entry)
            self._entry = None

    def close(self) -> None:
        """Cancelled for good (its connection is gone): let go of the callback, the
        owner's bound method, a cycle that would otherwise wait for the garbage collector."""
        self.cancel()
        self._expired = _never

    def _due(self, now: float) -> None:
        """Its queue entry came up (Timers._run): fire, or queue again if moved later."""
        self._entry = None
        if self.at == math.inf:
            return
        if now < self.at:  # moved later since it was queued
            self._entry = self._timers.push(self, self.at)
            return
        kind = self.kind
        self.at = math.inf
        more = self._expired(kind)
        if more is not None:
            self.arm(kind, more)


def unsent_bytes(transport: asyncio.Transport) -> int:
    """Bytes written but not yet taken by the client: the transport's buffer
    plus the kernel's send queue (TIOCOUTQ). A send timeout compares this
    across a wait, so a slow but steady reader is not taken for a stalled one."""
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            unsent += struct.unpack("i", raw)[0]
        except OSError:
            pass
    return unsent


def _never(kind: str) -> float | None:
    """A closed Deadline's callback: nothing is left to time out."""
    return None
