"""The filler listens for the fleet's changes and drops its copies of them (decisions/0036).

With a PostgreSQL catalog, every committed write or delete of every server
sends a notification (catalog/changes.py). The cache filler, the one writer
of this server's cache entries, listens on one connection of its own (not
from a pool, application_name `ferryman-listener`) and, for a key of its own
store, drops the entry: every worker then finds it gone and the next request
checks with the store (the path a write through this server takes).

A lost connection loses the notifications sent meanwhile, so while it is
down the trust floor (freshness.py) is UNTRUSTED: every cached entry is
checked with the store on each use. Once listening again the floor becomes
that moment: whatever was checked before it is checked once more. The loss is
one log line, the return another, with no traceback; reconnecting backs off
from BACKOFF_FIRST to BACKOFF_MAX seconds. A connection that stops answering
is found by a ping every PING_EVERY seconds (and TCP keepalives).

Everything here runs on the filler's event loop, on psycopg's asynchronous
connection: nothing blocks it. Who owns what: `ChangeListener` owns its
connection and the drop tasks it starts; `run` is cancelled when the filler
stops, and closes both.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ferryman.cache.freshness import UNTRUSTED, Floor
from ferryman.catalog.changes import CHANNEL, Notice, decode
from ferryman.catalog.location import redact, scrub
from ferryman.catalog.outage import one_line
from ferryman.failures import log_failure

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("ferryman.cache")

APPLICATION_NAME = "ferryman-listener"
PING_EVERY = 5.0  # seconds without a notification before the connection is asked to answer
PING_TIMEOUT = 5.0  # seconds the answer may take before the connection counts as lost
BACKOFF_FIRST = 0.25  # seconds before the first reconnection
BACKOFF_MAX = 5.0  # seconds between reconnections, at most
MAX_DROPS = 1024  # drops in progress; past it the notice becomes "check every entry"


def backoff(attempt: int) -> float:
    """Seconds before reconnection `attempt` (0, 1, ...): doubling, capped, with jitter."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(attempt, 16))
    return base * random.uniform(0.5, 1.0)


class ChangeListener:
    """Listens on `url` for changes of `store` and hands each changed key to `drop`."""

    def __init__(
        self,
        url: str,
        *,
        store: str,
        origin: str,
        floor: Floor,
        drop: Callable[[str], Awaitable[None]],
        connect_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self.location = redact(url)
        self.store = store
        self.origin = origin
        self.floor = floor
        self._drop = drop
        self._connect_timeout = connect_timeout
        self.clock = clock
        self.listening = False
        self._said_down = False
        self._drops: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after each loss."""
        import psycopg

        attempt = 0
        try:
            while True:
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, application_name=APPLICATION_NAME,
                        connect_timeout=max(1, round(self._connect_timeout)),
                        keepalives=1, keepalives_idle=5, keepalives_interval=2,
                        keepalives_count=3,
                    )  # fmt: skip
                except (psycopg.Error, OSError) as exc:
                    self._down(exc)
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
                    continue
                try:
                    async with conn:
                        await conn.execute(f"LISTEN {CHANNEL}")
                        self._up()
                        attempt = 0
                        await self._receive(conn)
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    self._down(exc)
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
        except Exception as exc:  # a bug: the floor below keeps the cache correct, and slow
            log_failure(log, "fleet changes: the listener stopped", exc)
        finally:
            self.listening = False
            self.floor.set(UNTRUSTED)
            for task in self._drops:
                task.cancel()

    async def _receive(self, conn: psycopg.AsyncConnection[object]) -> None:
        while True:
            async for notify in conn.notifies(timeout=PING_EVERY):
                if notify.channel == CHANNEL:
                    self.handle(notify.payload)
            # Every PING_EVERY seconds (notifications or not): one that no longer answers is lost.
            await asyncio.wait_for(conn.execute("SELECT 1"), PING_TIMEOUT)

    def handle(self, payload: str) -> None:
        """Act on one notification: drop the key's entry, or distrust every entry."""
        notice = decode(payload)
        if notice is None or not notice.concerns(self.store) or self._own(notice):
            return
        if notice.key is None or len(self._drops) >= MAX_DROPS:
            self.floor.set(max(self.floor.value(), self.clock()))  # every entry checked once
            return
        task = asyncio.get_running_loop().create_task(self._dropped(notice.key))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    def _own(self, notice: Notice) -> bool:
        # This server's workers told its filler already (CacheClient.forget).
        return bool(self.origin) and notice.origin == self.origin

    async def _dropped(self, key: str) -> None:
        try:
            await self._drop(key)
        except Exception as exc:  # the disk's faults are the filler's health; a bug costs one key
            log_failure(log, f"cache: dropping {key!r} after another server changed it", exc)

    def _up(self) -> None:
        # Whatever was checked before now may have missed a notification: checked again once.
        self.floor.set(self.clock())
        self.listening = True
        if self._said_down:
            log.warning("fleet changes: listening again on %s; entries cached before now"
                        " are checked with the store once", self.location)  # fmt: skip
            self._said_down = False
        else:
            log.info("fleet changes: listening on %s (channel %s)", self.location, CHANNEL)

    def _down(self, exc: BaseException) -> None:
        self.floor.set(UNTRUSTED)
        self.listening = False
        if not self._said_down:
            log.warning("fleet changes: not listening on %s (%s); every cached entry is"
                        " checked with the store on use until it is back", self.location,
                        scrub(one_line(exc), self._url))  # fmt: skip
            self._said_down = True
