"""One lock per key, held across every worker process of a server, and across servers.

A write to a key is decided and made under its lock: the precondition check
(and so 201 against 204), the intent, the commit and the catalog record.
Inside a process an asyncio lock per key (keylocks.KeyLocks) orders the
tasks; between processes a POSIX record lock on one byte of STATE/locks, at
an offset hashed from the key, orders the workers.

- One byte of one file, not a lock file per key: there is nothing to create
  per key and nothing to clean up (removing a lock file safely is a race of
  its own), and the kernel drops the locks of a process that dies, so a
  worker killed mid-write holds nothing afterwards.
- Record locks belong to a process, not to a descriptor, and closing any
  descriptor of the file drops all of them: each process opens the file
  once and keeps it, and only one task per key reaches the record lock
  (the asyncio lock comes first).
- The wait polls a non-blocking F_SETLK, backing off from 1 ms to 50 ms, up
  to --lock-timeout (keylocks.retry_until). A blocking F_SETLKW would hold
  a thread that nothing can cancel.

Between servers (several in front of one store, sharing a PostgreSQL
catalog), the catalog's lock of the key comes last (`Catalog.key_lock`: an
advisory lock; with SQLite nothing), so at most one task per server waits
on the database, within what is left of the same --lock-timeout. Its name
is the key within the store `scope` names (the lock of one path of two
stores is not shared).

Two keys whose hashes share a byte (62 bits: not expected in practice) would
only wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Protocol

from ferryman.catalog.api import KeyBusy
from ferryman.errors import FerrymanError
from ferryman.keylocks import KeyLocks, retry_until

_OFFSET_BITS = 62  # record lock offsets are signed 64-bit; stay well inside


class FleetLocks(Protocol):
    """The catalog's locks across servers (catalog/api.py `Catalog.key_lock`)."""

    def key_lock(
        self, scope: str, key: str, *, wait: float
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


class LockBusy(FerrymanError):
    """The key's lock was not free within the time allowed."""


def lock_offset(key: str) -> int:
    """The byte of the lock file that stands for `key`."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _OFFSET_BITS)


class WriteLocks:
    """The write locks of one server, through the lock file at `path` (created 0600);
    with `fleet`, also across the servers that share it, for keys of the store `scope`."""

    def __init__(
        self, path: str, timeout: float, fleet: FleetLocks | None = None, scope: str = ""
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.fleet = fleet
        self.scope = scope
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._local = KeyLocks()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, wait: float | None = None) -> AsyncIterator[None]:
        """Hold `key`'s lock for the block; LockBusy after `wait` seconds (--lock-timeout).

        With wait 0, one attempt: for work that should be skipped while
        someone else holds the key.
        """
        limit = self.timeout if wait is None else wait
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        offset = lock_offset(key)
        busy = LockBusy(f"{key!r} is being written by another request")
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(limit):
                    await stack.enter_async_context(self._local.hold(key))
            except TimeoutError:
                raise busy from None

            async def attempt() -> bool:
                return self._try(offset)

            if not await retry_until(attempt, max(0.0, deadline - loop.time())):
                raise busy
            stack.callback(fcntl.lockf, self._fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)
            if self.fleet is not None:
                left = max(0.0, deadline - loop.time())
                try:
                    await stack.enter_async_context(self.fleet.key_lock(self.scope, key, wait=left))
                except KeyBusy:
                    raise LockBusy(f"{key!r} is being written by another server") from None
            yield

    def _try(self, offset: int) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True
