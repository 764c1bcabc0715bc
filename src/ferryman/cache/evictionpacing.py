"""When the filler runs the evictor: at start, periodically, and before fills that would overflow.

The evictor (eviction.py) walks the cache directory, which is too costly
before every block. `EvictionPacer` keeps what the last run measured (bytes
held, free bytes) and counts the bytes written since, so a fill asks for a
run only when its block would go over --cache-max-size or under
--cache-min-free, and at most once every EVICT_GAP seconds (every entry may
be in use, and then a run frees nothing).

One run at a time: callers that ask while one is running share it. Before a
run, `close_idle` (the filler's) closes idle writers, since an open writer
keeps its entry in use. Everything here belongs to the filler's loop; the
run itself is in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ferryman.cache.eviction import Evictor
from ferryman.cache.stats import CacheStats

log = logging.getLogger("ferryman.cache")

EVICT_EVERY = 5.0  # seconds between periodic eviction runs
EVICT_GAP = 0.5  # at least this long between runs triggered by fills (all may be in use)


class EvictionPacer:
    def __init__(
        self,
        evictor: Evictor | None,
        stats: CacheStats,
        close_idle: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.evictor = evictor
        self.stats = stats
        self._close_idle = close_idle
        self._clock = clock
        self._evicting: asyncio.Task[None] | None = None
        self._last_eviction = float("-inf")
        self._disk_total = 0  # bytes the cache held after the last eviction run
        self._disk_free: int | None = None  # free bytes then (None: never measured)
        self._written = 0  # bytes of blocks written since that run

    def wrote(self, size: int) -> None:
        """A block of `size` bytes (its slot on disk) was written."""
        self._written += size

    async def make_room(self, reserve: int) -> None:
        """Run the evictor first if `reserve` more bytes would break a limit."""
        evictor = self.evictor
        if evictor is None or self._clock() - self._last_eviction < EVICT_GAP:
            return
        over = self._disk_total + self._written + reserve > evictor.max_size
        if self._disk_free is not None:
            over = over or self._disk_free - self._written - reserve < evictor.min_free
        if over:
            await self.evict(reserve)

    async def evict(self, reserve: int) -> None:
        """One eviction run leaving room for `reserve` bytes (shared with a running one)."""
        if self._evicting is None:
            self._evicting = asyncio.ensure_future(self._run_evictor(reserve))
            # Cleared when the run ends, not by a waiter: every waiter may be cancelled.
            self._evicting.add_done_callback(self._evicted)
        await asyncio.shield(self._evicting)

    def _evicted(self, run: asyncio.Task[None]) -> None:
        if self._evicting is run:
            self._evicting = None

    async def evict_periodically(self) -> None:
        while True:
            await asyncio.sleep(EVICT_EVERY)
            await self.evict(0)

    async def close(self) -> None:
        """Wait for a running eviction to end."""
        if self._evicting is not None:
            await asyncio.gather(self._evicting, return_exceptions=True)

    async def _run_evictor(self, reserve: int) -> None:
        assert self.evictor is not None
        self._close_idle()  # an open writer would keep its entry in use
        self._written = 0
        self._last_eviction = self._clock()
        try:
            report = await asyncio.to_thread(self.evictor.run, reserve)
        except OSError as exc:
            log.error("cache: eviction failed: %s", exc)
            return
        self._disk_total = report.total_bytes - report.evicted_bytes
        self._disk_free = report.free_bytes + report.evicted_bytes
        self.stats.evictions += report.evicted
        self.stats.evicted_bytes += report.evicted_bytes
