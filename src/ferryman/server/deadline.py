"""One timer per connection, whose meaning follows the connection's state.

A connection is always waiting for one thing: the next request (IDLE, the
keep-alive timeout), the rest of a request head (HEAD, the header timeout,
counted from its first byte), request-body bytes (BODY), or the client to
take what was sent (SEND). `arm` moves the deadline; the loop timer is only
rescheduled when the deadline comes earlier, and a timer that fires early
re-arms itself, so the per-request cost is an assignment, not a timer.

On expiry the owner's callback decides: it returns a new timeout to keep
waiting (a slow client that made progress), or None.
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import struct
import termios
from collections.abc import Callable

IDLE, HEAD, BODY, SEND = "idle", "head", "body", "send"


class Deadline:
    __slots__ = ("_expired", "_handle", "_handle_at", "_loop", "at", "kind")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, expired: Callable[[str], float | None]
    ) -> None:
        self._loop = loop
        self._expired = expired
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = math.inf
        self.at = math.inf
        self.kind = IDLE

    @property
    def armed(self) -> bool:
        return self.at != math.inf

    def arm(self, kind: str, timeout: float) -> None:
        self.kind = kind
        self.at = self._loop.time() + timeout
        if self.at < self._handle_at:
            self._schedule(self.at)

    def extend(self, timeout: float) -> None:
        """Progress: the same wait, counted again from now."""
        self.at = self._loop.time() + timeout

    def disarm(self) -> None:
        self.at = math.inf

    def cancel(self) -> None:
        self.at = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(at, self._fire)
        self._handle_at = at

    def _fire(self) -> None:
        self._handle = None
        self._handle_at = math.inf
        if self.at == math.inf:
            return
        if self._loop.time() < self.at:  # moved later since it was scheduled
            self._schedule(self.at)
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
