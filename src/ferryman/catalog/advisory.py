"""Write locks across servers on a PostgreSQL catalog: session advisory locks, one connection.

Why a session lock on a connection of its own, not a transaction's lock:
docs/decisions/0035-fleet-write-serialization.md. In short:

- A process keeps one connection for every key it holds (a session may hold
  many advisory locks), opened at its first write and outside the pool: a
  write holds its lock for as long as its upload takes, and a pool
  connection held that long would starve the catalog's own statements.
- Each attempt is `pg_try_advisory_lock`, which never waits in the
  database; the wait is polled with the record lock's backoff
  (keylocks.retry_until), up to --lock-timeout. Each statement runs in a
  thread: the event loop never waits on the network.
- The lock is released by `pg_advisory_unlock` when the write ends; a
  process that dies (or a connection that is cut) loses its session, and
  PostgreSQL releases every lock of it at once.

Only one task per key of a process gets here (the key's asyncio lock and
record lock come first, app/writelock.py), so the session never takes a key
twice. A connection found broken is replaced at the next attempt; a write
that held a lock on the broken one is logged when it lets go (its lock went
with the connection).

Who owns what: `AdvisoryLocks` owns its connection; `_mutex` guards it and
is held for one statement at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg

from ferryman.catalog.api import CatalogError, KeyBusy
from ferryman.keylocks import retry_until

log = logging.getLogger("ferryman.catalog")

_TRY = "SELECT pg_try_advisory_lock(%s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s)"


class AdvisoryLocks:
    """`connect()` opens a new autocommit connection with the catalog's timeouts;
    `failed(exc)` turns a psycopg error into the CatalogError to raise (and notes an
    outage)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        failed: Callable[[psycopg.Error], CatalogError],
        describe: Callable[[BaseException], str],
    ) -> None:
        self._connect = connect
        self._failed = failed
        self._describe = describe  # an error on one line, without the URL's password
        self._mutex = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._session = 0  # which connection: a lock is released on the one that took it
        self._closed = False

    @contextlib.asynccontextmanager
    async def hold(self, number: int, wait: float) -> AsyncIterator[None]:
        session = 0

        async def attempt() -> bool:
            nonlocal session
            session = await _in_thread(self._try, number, self._give_back_late)
            return session != 0

        if not await retry_until(attempt, wait):
            raise KeyBusy("another server is writing it")
        try:
            yield
        finally:
            await asyncio.shield(asyncio.to_thread(self._release, number, session))

    @contextlib.contextmanager
    def hold_now(self, number: int) -> Iterator[None]:
        """Hold `number` for the block if it is free now, else KeyBusy: one attempt, made
        in the caller's thread (for commands, which have no event loop to keep free)."""
        session = self._try(number)
        if not session:
            raise KeyBusy("another server holds it")
        try:
            yield
        finally:
            self._release(number, session)

    def _try(self, number: int) -> int:
        """One attempt: the session it was taken on, or 0 when another holds it.

        A kept connection that fails (cut, or ended by the server) is replaced and
        the attempt made once more on a new one: only a new connection's failure
        says the catalog cannot be reached.
        """
        with self._mutex:
            if self._closed:
                raise CatalogError("catalog is closed")
            if self._conn is not None:
                try:
                    return self._attempt(self._conn, number)
                except psycopg.Error as exc:
                    self._drop()
                    log.warning("the connection for write locks failed (%s): opening a new"
                                " one", self._describe(exc))  # fmt: skip
            try:
                self._conn = self._connect()
                self._session += 1
                return self._attempt(self._conn, number)
            except psycopg.Error as exc:
                self._drop()
                raise self._failed(exc) from exc

    def _attempt(self, conn: psycopg.Connection[Any], number: int) -> int:
        taken = conn.execute(_TRY, (number,)).fetchone()
        return self._session if taken and taken[0] else 0

    def _release(self, number: int, session: int) -> None:
        with self._mutex:
            conn = self._conn
            if conn is None or session != self._session:
                log.warning("the connection holding a write lock was lost while it was held:"
                            " PostgreSQL released the lock then")  # fmt: skip
                return
            try:
                conn.execute(_UNLOCK, (number,))
            except psycopg.Error as exc:
                self._drop()  # the session and every lock of it go with the connection
                log.warning("could not release a write lock (%s): its connection is closed,"
                            " which releases it", self._describe(exc))  # fmt: skip

    def _give_back_late(self, number: int, session: int) -> None:
        """An attempt whose waiter was cancelled took the lock: nobody will use it."""
        if session:
            self._release(number, session)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection, releasing whatever it holds (idempotent)."""
        with self._mutex:
            self._closed = True
            self._drop()


async def _in_thread(
    attempt: Callable[[int], int], number: int, give_back: Callable[[int, int], None]
) -> int:
    """`attempt(number)` in a thread. If the waiter is cancelled, the thread still runs to
    its end: a lock it took then is given back, never left held by nobody."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, attempt, number)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def done(finished: asyncio.Future[int]) -> None:
            if not finished.cancelled() and finished.exception() is None:
                loop.run_in_executor(None, give_back, number, finished.result())

        future.add_done_callback(done)
        raise
