"""One asyncio lock per cache key, kept only while someone holds or waits for it.

The filler changes an entry on disk (load, create, drop) only under its
key's lock, so a drop after a 412 cannot remove the entry an open has just
created. A key that is in `KeyLocks` is being worked on: idle writers of
such keys are not closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


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
