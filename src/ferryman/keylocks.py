"""One asyncio lock per key (a path, an object key), kept only while someone holds or waits.

Users: the write lock (app/writelock.py) takes a key's asyncio lock before
its lock across processes, so that only one task per process reaches the
latter; the cache filler changes an entry on disk (load, create, drop) only
under its key's lock, so a drop after a 412 cannot remove the entry an open
has just created, and a key in `KeyLocks` is being worked on (its idle
writer is not closed). Memory is bounded by the keys in use, not by every
key ever seen.

`retry_until` is the polling both locks across processes use (the record
lock of app/writelock.py, a PostgreSQL catalog's advisory lock): a
non-blocking attempt, then pauses from 1 ms doubling to 50 ms, up to a
limit. A blocking wait would hold a thread nothing can cancel; two writers
of one key at once is rare, so polling costs nothing in the common case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

FIRST_PAUSE = 0.001  # seconds
LONGEST_PAUSE = 0.05


async def retry_until(attempt: Callable[[], Awaitable[bool]], limit: float) -> bool:
    """Await `attempt()` until it is True (then True) or `limit` seconds have passed (False);
    with limit 0, one attempt."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    pause = FIRST_PAUSE
    while not await attempt():
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
    return True


class KeyLocks:
    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._locks

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = _KeyLock()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._locks[key]


class _KeyLock:
    """A key's lock and how many hold or wait for it (the entry goes at zero)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
