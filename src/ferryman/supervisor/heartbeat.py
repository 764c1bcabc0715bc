"""The pipe from each worker to the arbiter: readiness, heartbeats, boot failures.

One pipe per worker, written only by the worker, read only by the arbiter.
Messages are single lines of ASCII:

    ready <loop>          the listener accepts: the worker counts as started
    beat                  the event loop ran a callback (sent every second)
    closed                the worker stopped accepting (it is draining)
    boot-failed <reason>  a configuration or boot failure; exit status 2 follows

The beat is sent from a loop callback, so it stops exactly when the loop
stops turning: a handler stuck in a blocking call, a deadlock, an endless
loop. A separate thread would keep beating through all of those. The worker's
end is non-blocking: a worker never waits for its arbiter, it drops a beat
if the pipe is full. When the arbiter is gone the write fails with EPIPE, and
the worker stops by itself instead of serving unsupervised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the arbiter imports this module and runs no event loop
    import asyncio

BEAT_INTERVAL = 1.0
_MAX_LINE = 4096  # a longer line is a bug in the worker; keep the arbiter's memory bounded


class Beacon:
    """The worker's end of the pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.orphaned = False  # the arbiter has gone away
        self._timer: asyncio.TimerHandle | None = None

    def send(self, kind: str, text: str = "") -> bool:
        """Send one message; False once the arbiter is gone."""
        line = f"{kind} {text}".strip().replace("\n", " ")[: _MAX_LINE - 1] + "\n"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except BlockingIOError:
            pass  # the arbiter is slow to read; the next beat will do
        except (BrokenPipeError, OSError):
            self.orphaned = True
            return False
        return True

    def start(self, loop: asyncio.AbstractEventLoop, on_orphaned: Callable[[], None]) -> None:
        """Beat every second from the loop until stop(); call on_orphaned if the arbiter dies."""

        def tick() -> None:
            if self.send("beat"):
                self._timer = loop.call_later(BEAT_INTERVAL, tick)
            else:
                self._timer = None
                on_orphaned()

        self._timer = loop.call_later(BEAT_INTERVAL, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Channel:
    """The arbiter's end: non-blocking reads, split into messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.eof = False
        self._partial = b""

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[tuple[str, str]]:
        """Whatever complete messages have arrived, as (kind, text) pairs."""
        messages: list[tuple[str, str]] = []
        while not self.eof:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        if len(self._partial) > _MAX_LINE:
            self._partial = b""
        for raw in lines:
            kind, _, text = raw.decode("utf-8", "replace").partition(" ")
            if kind:
                messages.append((kind, text))
        return messages

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
