"""The fill engine: each block of each object version fetched once, reported as it lands.

Runs in the filler process, on its event loop; decisions/0012 is the design.
`Filler` answers the three questions workers ask over the socket (service.py):
which version of a key (`open`), which blocks of it (`want`), and "this
block failed its check" (`bad`). It keeps the entries in use and their
versions; fetcher.py fetches runs of blocks into them, evictionpacing.py
decides when the evictor runs, fillstate.py is one entry's state.

Ownership and invariants (everything below belongs to the loop thread):

* `Filler._entries` holds the Fill (fillstate.py) of each entry being used,
  with its open EntryWriter. Only this class creates, drops or keeps
  entries; an open writer holds a shared flock, so the evictor skips it.
  Idle writers are closed before each eviction run so that unused entries
  can go, and beyond MAX_OPEN.
* One future per (entry, block) in flight, in `Fill.pending`: whoever wants
  a block that is being fetched awaits that future, so a block is never
  fetched twice.
* Every change of an entry on disk (load, create, drop) happens under the
  key's lock (keylocks.py), so a drop after a 412 cannot remove the entry an
  open has just created. `open` is single flight per key on top of that.
* What may be written is bounded (decisions/0018): a new entry and every
  block reserve room first (evictionpacing.py, room.py), and an OSError from
  the cache directory degrades `health` (health.py). While there is no room,
  or while the disk is degraded, the filler declines (CacheDeclined) instead
  of filling, and the worker answers from the store. A degraded disk is
  probed every PROBE_EVERY seconds and used again once a probe passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from typing import Any

from ferryman.cache.entry import CacheDir, EntryMeta
from ferryman.cache.eviction import Evictor
from ferryman.cache.evictionpacing import EvictionPacer
from ferryman.cache.fetcher import Fetcher
from ferryman.cache.fillstate import Fill, Outcome, relay
from ferryman.cache.health import CacheDeclined, CacheHealth, no_room
from ferryman.cache.room import entry_charge
from ferryman.cache.stats import CacheStats
from ferryman.keylocks import KeyLocks
from ferryman.stores.base import NotFound, PreconditionFailed, Store, StoreError, Unavailable

log = logging.getLogger("ferryman.cache")

MAX_OPEN = 256  # entries whose writers stay open while idle
PROBE_EVERY = 1.0  # seconds between probes of a degraded cache disk


class Filler:
    def __init__(
        self,
        cache: CacheDir,
        store: Store,
        *,
        block_size: int,
        readahead: int,
        revalidate: float,
        max_fetches: int = 8,
        max_run: int = 8,
        evictor: Evictor | None = None,
        clock: Callable[[], float] = time.time,
        floor: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.cache = cache
        self.store = store
        self.block_size = block_size
        self.readahead = readahead
        self.revalidate = revalidate
        self.evictor = evictor
        self.clock = clock
        self.floor = floor  # checks made before it do not count (freshness.py)
        self.stats = CacheStats()
        self.health = CacheHealth(clock)  # the cache disk: "ok" or degraded since when
        self._entries: dict[str, Fill] = {}
        self._opening: dict[str, tuple[asyncio.Task[EntryMeta], bool]] = {}
        self._locks = KeyLocks()
        self._tasks: set[asyncio.Task[None]] = set()  # drops and periodic eviction
        self._pacer = EvictionPacer(
            evictor, self.stats, partial(self._close_idle, 0), clock, self.health
        )
        self._fetcher = Fetcher(
            store, self.stats, self._pacer, self._version_gone,
            max_fetches=max_fetches, max_run=max_run,
        )  # fmt: skip

    def size(self) -> int | None:
        """Bytes the entries take, as the last eviction run measured plus writes since
        (None: not measured yet, or no bound to measure for)."""
        room = self._pacer.room
        return room.held if room is not None and room.measured else None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Evict once now (the limits may have shrunk), then every EVICT_EVERY seconds;
        probe the disk while it is degraded."""
        if self.evictor is not None:
            await self._pacer.evict(0)
            self._spawn(self._pacer.evict_periodically())
        self._spawn(self._probe_periodically())

    async def probe(self) -> bool:
        """Check a degraded cache disk now; clear the state if it takes writes again.

        A cache directory that was removed stays degraded until the filler
        restarts, even if one is made again in its place (CacheDir.probe): it
        may have been an unmounted disk, and the socket went with the old one.
        """
        if not self.health.degraded:
            return True
        room = self._pacer.room
        space = self.block_size + (room.min_free if room is not None else 0)
        try:
            await asyncio.to_thread(self.cache.probe, space)
        except OSError as exc:
            self.health.fault(exc)
            return False
        self.health.clear()
        return True

    async def _probe_periodically(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY)
            await self.probe()

    async def close(self) -> None:
        """Stop fetching: every waiter gets Unavailable; writers close when writes end."""
        for task in list(self._tasks):
            task.cancel()
        for opening, _ in list(self._opening.values()):
            opening.cancel()
        stopping = Unavailable("the cache filler is stopping")
        fills = list(self._entries.values())
        self._entries.clear()
        runs = [task for fill in fills for task in fill.runs]
        for fill in fills:
            fill.fail_all(stopping)
            fill.retire()
        writes = self._fetcher.writes
        await asyncio.gather(*runs, *self._tasks, *writes, return_exceptions=True)
        await self._pacer.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- open: which version -------------------------------------------------------

    async def open(self, key: str, check: bool = False) -> EntryMeta:
        """The pinned version of `key`, confirmed by a HEAD unless a recent one did."""
        while True:
            flight = self._opening.get(key)
            if flight is None:
                break
            task, checking = flight
            if checking or not check:
                return await asyncio.shield(task)
            await asyncio.gather(task, return_exceptions=True)  # then check ourselves
        task = asyncio.ensure_future(self._open(key, check))
        self._opening[key] = (task, check)
        task.add_done_callback(partial(self._opened, key))
        return await asyncio.shield(task)

    def _opened(self, key: str, task: asyncio.Task[EntryMeta]) -> None:
        if self._opening.get(key, (None, False))[0] is task:
            del self._opening[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _open(self, key: str, check: bool) -> EntryMeta:
        try:
            return await self._open_locked(key, check)
        except OSError as exc:
            raise self.health.fault(exc) from None

    async def _open_locked(self, key: str, check: bool) -> EntryMeta:
        async with self._locks.hold(key):
            fill = self._entries.get(key) or await self._load(key)
            if fill is not None and not check and self._fresh(fill):
                return fill.meta
            if fill is None and self.health.degraded:
                self.stats.declined += 1
                raise self.health.declined()  # no entry can be made: no HEAD either
            self.stats.upstream_requests += 1
            self.stats.misses += 1
            try:
                info = await self.store.stat(key)
            except NotFound:
                if fill is not None:
                    await self._drop_now(fill, NotFound(f"{key!r} is no longer in the store"))
                raise
            if fill is not None and fill.dropped:
                fill = None  # a fetch saw the object change while we asked
            if fill is not None and fill.meta.etag == info.etag:
                try:
                    await asyncio.to_thread(fill.writer.mark_checked)
                except OSError as exc:  # the check holds in memory; the disk is the news
                    self.health.fault(exc)
                fill.checked = self.clock()
                return fill.meta
            if fill is not None:
                self.stats.version_changes += 1
                await self._drop_now(fill, PreconditionFailed(f"{key!r} changed in the store"))
            meta = EntryMeta.from_info(info, self.block_size)
            return await self._create(meta)

    def _fresh(self, fill: Fill) -> bool:
        """A check of `fill` recent enough, and made since the trust floor."""
        return self.clock() - fill.checked < self.revalidate and fill.checked >= self.floor()

    async def changed_elsewhere(self, key: str) -> None:
        """Another server changed `key` (notices.py): drop this server's entry, if any.

        Under the key's lock, as every drop: an open in progress finishes first
        and its entry goes too. Workers then find the entry gone and the next
        request checks with the store, as after a write through this server.
        """
        async with self._locks.hold(key):
            fill = self._entries.get(key)
            try:
                if fill is not None:
                    await self._drop_now(fill, PreconditionFailed(f"{key!r} changed in the store"))
                else:
                    await asyncio.to_thread(self.cache.drop, key)
            except OSError as exc:
                raise self.health.fault(exc) from None

    async def _create(self, meta: EntryMeta) -> EntryMeta:
        """A new entry for `meta` (key locked), if the disk is sound and there is room."""
        if self.health.degraded:
            self.stats.declined += 1
            raise self.health.declined()
        charge = entry_charge(len(meta.to_json()), meta.block_count(), self._pacer.unit)
        if not await self._pacer.reserve(charge):
            self.stats.declined += 1
            raise no_room()
        try:
            writer = await asyncio.to_thread(self.cache.create, meta)
        finally:
            self._pacer.commit(charge)  # attempted: what it allocated counts until a scan
        self._remember(meta.key, Fill(writer, self.clock()))
        return meta

    async def _load(self, key: str) -> Fill | None:
        """The entry on disk for `key` (call with the key locked), or None."""
        writer = await asyncio.to_thread(self.cache.open_writer, key)
        if writer is None:
            return None
        return self._remember(key, Fill(writer, writer.checked_at))

    def _remember(self, key: str, fill: Fill) -> Fill:
        """Keep `fill` open; close idle writers beyond MAX_OPEN (each holds descriptors)."""
        self._entries[key] = fill
        if len(self._entries) > MAX_OPEN:
            self._close_idle(MAX_OPEN // 2)
        return fill

    def _close_idle(self, down_to: int) -> None:
        """Close the writers of idle entries no one is opening, until `down_to` are left."""
        for key in [k for k, f in self._entries.items() if f.idle and k not in self._locks]:
            self._entries.pop(key).retire()
            if len(self._entries) <= down_to:
                break

    async def _drop_now(self, fill: Fill, error: StoreError) -> None:
        """Forget `fill`, fail its waiters, remove it from disk (key locked)."""
        self._forget(fill, error)
        await asyncio.to_thread(self.cache.drop, fill.meta.key)

    def _forget(self, fill: Fill, error: StoreError) -> None:
        key = fill.meta.key
        if self._entries.get(key) is fill:
            del self._entries[key]
        fill.fail_all(error)
        fill.retire()

    def _version_gone(self, fill: Fill, error: StoreError) -> None:
        """A fetch learned that the pinned version is gone: drop it from a task."""
        if fill.dropped:
            return
        self.stats.version_changes += 1
        self._forget(fill, error)
        self._spawn(self._drop_later(fill))

    async def _drop_later(self, fill: Fill) -> None:
        key = fill.meta.key
        async with self._locks.hold(key):
            if key not in self._entries:  # no open made a new entry meanwhile
                await asyncio.to_thread(self.cache.drop, key)

    # -- want: which blocks ----------------------------------------------------------

    async def want(
        self, key: str, blocks: range, *, etag: str | None = None
    ) -> AsyncIterator[tuple[int, Outcome]]:
        """Each of `blocks` of `key` as it is present (or failed), in the order that happens.

        With `etag`, only from that version: PreconditionFailed (raised before
        any block) when the entry now holds another, or none.
        """
        fill = await self._current(key, etag)
        count = fill.meta.block_count()
        if not blocks or blocks.start < 0 or blocks.stop > count:
            raise Unavailable(
                f"blocks {blocks.start}-{blocks.stop - 1} are outside {key!r} ({count} blocks)"
            )
        self._schedule(fill, blocks)
        arrivals: asyncio.Queue[tuple[int, Outcome]] = asyncio.Queue()
        waiting = 0
        for block in blocks:
            future = fill.pending.get(block)
            if future is None:  # present, or not being fetched: the disk is degraded
                yield block, None if fill.writer.present[block] else self._declined()
            else:
                future.add_done_callback(partial(relay, arrivals, block))
                waiting += 1
        for _ in range(waiting):
            yield await arrivals.get()

    async def bad(self, key: str, block: int, *, etag: str | None = None) -> None:
        """A reader found block `block` failing its check: if it really is bad, fetch it again.

        Returns once the block is either verified good or cleared and being
        fetched (a want that follows waits for it). One check per block at a time.
        """
        fill = await self._current(key, etag)
        if not 0 <= block < fill.meta.block_count():
            return
        checking = fill.checking.get(block)
        if checking is None:
            checking = asyncio.ensure_future(self._check_block(fill, block))
            fill.checking[block] = checking
            checking.add_done_callback(lambda _: fill.checking.pop(block, None))
        await asyncio.shield(checking)

    async def _check_block(self, fill: Fill, block: int) -> None:
        if not fill.writer.present[block] or block in fill.pending:
            return  # absent or already being fetched again
        fill.writes += 1  # keeps the writer open while threads use it
        try:
            if await asyncio.to_thread(fill.writer.verify_block, block):
                return
            self.stats.bad_blocks += 1
            log.warning("cache: block %d of %r failed its check; fetching it again",
                        block, fill.meta.key)  # fmt: skip
            await asyncio.to_thread(fill.writer.clear_block, block)
            if not fill.dropped and not self.health.degraded:
                self._fetcher.fetch(fill, range(block, block + 1))
        except OSError as exc:
            raise self.health.fault(exc) from None
        finally:
            fill.end_write()

    async def _current(self, key: str, etag: str | None) -> Fill:
        fill = self._entries.get(key)
        if fill is None:
            async with self._locks.hold(key):
                try:
                    fill = self._entries.get(key) or await self._load(key)
                except OSError as exc:
                    raise self.health.fault(exc) from None
        if fill is None or (etag is not None and fill.meta.etag != etag):
            raise PreconditionFailed(f"the cached version of {key!r} was replaced")
        return fill

    def _schedule(self, fill: Fill, blocks: range) -> None:
        """Start fetching what `blocks` (and read-ahead) need and nobody fetches yet."""
        fetch = blocks
        if blocks.start == fill.next_block and self.readahead:
            fetch = range(blocks.start, min(blocks.stop + self.readahead, fill.meta.block_count()))
        fill.next_block = blocks.stop
        if not self.health.degraded:
            self._fetcher.fetch(fill, fetch)

    def _declined(self) -> CacheDeclined:
        self.stats.declined += 1
        return self.health.declined()
