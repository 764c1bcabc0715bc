"""Waiting inside a connection: one coroutine waits, a transport callback wakes it.

A connection has two such waits, never more than one coroutine on each: a
writer waiting for the socket or the transport's buffer (woken by
resume_writing or a writability callback), and a handler waiting for more
request-body bytes (woken by data_received). Waking with an exception ends
the wait with it: the peer left, or a deadline passed.
"""

from __future__ import annotations

import asyncio


class Waiter:
    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> bool:
        return self._future is not None

    async def wait(self) -> None:
        future = self._loop.create_future()
        self._future = future
        try:
            await future
        finally:
            if self._future is future:
                self._future = None

    def wake(self, exc: BaseException | None = None) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
