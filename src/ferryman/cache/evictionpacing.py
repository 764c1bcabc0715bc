"""When the filler runs the evictor, and whether a write may take room: the cache's bound.

The evictor (eviction.py) walks the cache directory, which is too costly
before every block. `EvictionPacer` keeps what the last run measured in a
`Room` (room.py) and charges every write against it: `reserve` promises
room to a write or refuses it. A write that does not fit first makes an
eviction run (evicting HEADROOM beyond what it needs, so that the next writes
fit without a run of their own); if the entries in use leave no room even
then, it is refused, and the filler answers from the store instead (health.py:
CacheDeclined). After a refusal, others within EVICT_GAP seconds are refused
at once: every entry may be in use, and then a run frees nothing.

One run at a time: callers that ask while one is running share it. Before a
run, `close_idle` (the filler's) closes idle writers, since an open writer
keeps its entry in use. Everything here belongs to the filler's loop; the
run itself is in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ferryman.cache.eviction import Evictor
from ferryman.cache.health import CacheHealth
from ferryman.cache.room import Room, Scan
from ferryman.cache.stats import CacheStats

EVICT_EVERY = 5.0  # seconds between periodic eviction runs
EVICT_GAP = 0.5  # after a run that could not make room, refuse without a run for this long
HEADROOM = 16  # a run for a write frees 1/HEADROOM of --cache-max-size beyond it


class EvictionPacer:
    def __init__(
        self,
        evictor: Evictor | None,
        stats: CacheStats,
        close_idle: Callable[[], None],
        clock: Callable[[], float],
        health: CacheHealth | None = None,
    ) -> None:
        self.evictor = evictor
        self.stats = stats
        self.health = health or CacheHealth(clock)
        # No evictor (tests of the fill engine): no limits to keep.
        self.room = Room(evictor.max_size, evictor.min_free) if evictor is not None else None
        self._close_idle = close_idle
        self._clock = clock
        self._evicting: asyncio.Task[None] | None = None
        self._last_short = float("-inf")  # when a run last failed to make room

    @property
    def unit(self) -> int:
        """The filesystem's allocation unit, for charges (room.py)."""
        return self.room.unit if self.room is not None else 4096

    async def reserve(self, size: int) -> bool:
        """Promise `size` bytes to a write; False when the limits leave no room for it.

        A True must be followed by `commit` (the write was attempted) or
        `release` (it was not) of the same size.
        """
        room = self.room
        if room is None or room.reserve(size):
            return True
        if self._clock() - self._last_short < EVICT_GAP:
            return False
        joined = self._evicting is not None  # a run made for a smaller need
        await self.evict(size)
        if room.reserve(size):
            return True
        if joined:
            await self.evict(size)
            if room.reserve(size):
                return True
        self._last_short = self._clock()
        return False

    def commit(self, size: int) -> None:
        if self.room is not None:
            self.room.commit(size)

    def release(self, size: int) -> None:
        if self.room is not None:
            self.room.release(size)

    async def evict(self, need: int) -> None:
        """One eviction run leaving room for `need` more bytes (shared with a running one)."""
        if self._evicting is None:
            self._evicting = asyncio.ensure_future(self._run_evictor(need))
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

    async def _run_evictor(self, need: int) -> None:
        evictor, room = self.evictor, self.room
        assert evictor is not None and room is not None
        self._close_idle()  # an open writer would keep its entry in use
        mark = room.scan_started()
        headroom = evictor.max_size // HEADROOM if need else 0
        try:
            report = await asyncio.to_thread(evictor.run, room.reserved + need + headroom)
        except OSError as exc:
            self.health.fault(exc)  # logged once; the limits stay as last measured
            return
        room.scanned(
            Scan(
                total_bytes=report.total_bytes - report.evicted_bytes,
                free_bytes=report.free_bytes + report.evicted_bytes,
                unit=report.unit,
                committed_at_start=mark,
            )
        )
        self.stats.evictions += report.evicted
        self.stats.evicted_bytes += report.evicted_bytes
