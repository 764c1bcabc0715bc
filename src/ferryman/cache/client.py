"""The worker side of the block cache: which entry answers a key, without the filler if possible.

Runs in each worker's event loop (decisions/0012). The warm path sends no
message and awaits nothing: `lookup_warm` finds the entry's reader in a small
per-worker LRU (or opens it from disk), checks that its last HEAD is recent
enough and takes the shared flock that marks it in use; when it cannot,
`lookup` asks the filler (link.py). What is sent from the entry found is cached.py's
business (CachedObject).

Ownership: the LRU owns its EntryReaders. A CachedObject holds one use of a
reader (the flock is held while any use is, and a moment after: SharedEntry)
and, after a cold lookup, its filler connection; `body` hands both to the
Body's cleanup, and `close` releases them when no body was made (HEAD, 304,
412).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Callable

from ferryman.cache.cached import CachedObject
from ferryman.cache.entry import CacheDir, EntryReader
from ferryman.cache.freshness import Floor
from ferryman.cache.health import CacheDeclined
from ferryman.cache.link import FillerLink
from ferryman.cache.noticenames import listens
from ferryman.cache.stats import CacheStats
from ferryman.config import Config
from ferryman.stores.base import StoreError

MAX_READERS = 64  # open entries kept per worker (each holds four descriptors)
MAX_CHANGED = 4096  # keys written by this worker and not looked up since
SWEEP_EVERY = 1.0  # seconds between sweeps of the LRU (see _sweep)
LINGER = 2.0  # seconds an idle entry stays locked in use (see SharedEntry)


def open_cache_client(config: Config) -> CacheClient:
    """The CacheClient of a worker process, for --cache-dir (the filler creates the key)."""
    from ferryman.cache.service import socket_path

    floor = Floor(config.cache_dir or "").value if listens(config) else _no_floor
    return CacheClient(
        CacheDir.of(config),
        socket_path(config),
        revalidate=config.cache_revalidate,
        readahead=config.cache_readahead,
        floor=floor,
    )


def _no_floor() -> float:
    return 0.0


class SharedEntry:
    """One EntryReader of the LRU, the uses (CachedObjects) holding it, what is known of it.

    The shared flock is taken at the first use and kept until the entry has
    been idle for LINGER seconds (the client's sweep releases it), so a hot
    entry costs one fstat per request rather than a lock, two stats and an
    unlock. While it is held the evictor skips the entry, as for any entry
    being sent; a replaced entry is noticed by its data file's link count.
    """

    __slots__ = (
        "checked", "complete", "idle_since", "info", "locked", "reader", "retired", "small",
        "users",
    )  # fmt: skip

    def __init__(self, reader: EntryReader) -> None:
        self.reader = reader
        self.checked = reader.checked_at  # last HEAD that confirmed the version (Unix time)
        self.info = reader.meta.info()
        self.complete = False  # every block was present (the filler clears a block of an
        # encrypted entry that fails its check, and fetches the same bytes again)
        self.users = 0
        self.locked = False
        self.idle_since = time.monotonic()
        self.retired = False  # out of the LRU: close when the last use ends
        self.small: bytes | None = None  # the whole object, for small complete entries

    def use(self) -> bool:
        """Take a use; False if the entry is no longer in the cache (evicted, replaced).

        While this worker holds the lock the evictor cannot take the entry, but
        a write through another worker can replace it: one fstat per use sees
        that at once, so a read after a write never gets the old version.
        """
        if self.locked:
            if self.unlinked():
                return False
        elif self.reader.acquire():
            self.locked = True
        else:
            return False
        self.users += 1
        return True

    def unuse(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.idle_since = time.monotonic()
            if self.retired:
                self.reader.close()

    def relax(self, now: float) -> bool:
        """Release the lock once idle for LINGER seconds; True while it is still held."""
        if self.locked and self.users == 0 and now - self.idle_since >= LINGER:
            self.reader.release()
            self.locked = False
        return self.locked

    def retire(self) -> None:
        self.retired = True
        if self.users == 0:
            self.reader.close()

    def unlinked(self) -> bool:
        return os.fstat(self.reader.data_fd).st_nlink == 0


class CacheClient:
    """A worker's view of the cache: `lookup` an object, then describe its body."""

    def __init__(
        self,
        cache: CacheDir,
        socket_path: str,
        *,
        revalidate: float,
        readahead: int,
        clock: Callable[[], float] = time.time,
        floor: Callable[[], float] = _no_floor,
    ) -> None:
        self.cache = cache
        self.socket_path = socket_path
        self.revalidate = revalidate
        self.readahead = readahead
        self.clock = clock
        self.floor = floor  # checks made before it do not count (freshness.py)
        self.stats = CacheStats()  # hits and misses of this worker
        self._readers: OrderedDict[str, SharedEntry] = OrderedDict()
        self._sweeper: asyncio.TimerHandle | None = None
        self._changed: set[str] = set()  # keys this worker wrote: check before serving
        self._tasks: set[asyncio.Task[None]] = set()

    def lookup_warm(self, key: str) -> CachedObject | None:
        """The cached version of `key` when it can be had without the filler, else None.

        Synchronous, so a warm hit is answered inside the connection's read
        callback with no task: the entry must be open (or openable) here, its
        last HEAD younger than `revalidate`, not written through this worker
        since, and still in place (its in-use lock taken). With a PostgreSQL
        catalog the HEAD must also be newer than the trust floor (freshness.py).
        Anything else is for `lookup`.
        """
        shared = self._find(key)
        if shared is None or key in self._changed:
            return None
        if not self._fresh(shared):
            return None
        if shared.use():
            return CachedObject(self, shared, None)
        self._forget(key, shared)  # evicted or replaced: `lookup` asks the filler
        return None

    def still_warm(self, key: str, shared: SharedEntry) -> bool:
        """Whether `shared` still answers for `key` as `lookup_warm` would, without a use.

        For an answer kept in memory (app/bodycache.py): the entry must still be
        this worker's, locked in use, in place, confirmed within `revalidate`,
        and `key` not written since. Counts as a use: a hit, a mark for the
        entry's age, and the lock kept (as SharedEntry.relax would for a use).
        """
        if (
            self._readers.get(key) is not shared
            or not shared.locked
            or not self._fresh(shared)
            or key in self._changed
            or shared.unlinked()
        ):
            return False
        self.stats.hits += 1
        shared.idle_since = time.monotonic()
        shared.reader.touch_used()
        return True

    async def lookup(self, key: str) -> CachedObject:
        """The cached version of `key`; the filler is asked only when needed.

        Raises the StoreError kinds the filler reports (NotFound, Throttled, ...),
        Unavailable when the filler cannot be reached, and CacheDeclined when
        the cache will not hold `key` now: the caller answers from the store.
        """
        warm = self.lookup_warm(key)
        if warm is not None:
            return warm
        # What lookup_warm left in the LRU is a stale or rewritten entry (asked
        # to be checked), or nothing (the filler opens or makes it).
        shared = self._readers.get(key)
        self.stats.misses += 1
        check = shared is not None or key in self._changed
        asked = self.clock()  # the filler's answer confirms the version as of this moment
        try:
            link, etag = await FillerLink.opened(self.socket_path, key, check=check)
        except CacheDeclined:
            self.stats.declined += 1
            raise
        try:
            if shared is None or shared.reader.meta.etag != etag or not shared.use():
                if shared is not None:
                    self._forget(key, shared)
                shared = self._find(key)
                if shared is None or shared.reader.meta.etag != etag or not shared.use():
                    # Evicted or replaced since the filler answered (a cache under
                    # pressure): the store answers this one.
                    raise CacheDeclined(f"the cache entry of {key!r} went while it was opened")
            shared.checked = asked
            self._changed.discard(key)
            return CachedObject(self, shared, link)
        except CacheDeclined:
            self.stats.declined += 1
            link.close()
            raise
        except BaseException:
            link.close()
            raise

    def _fresh(self, shared: SharedEntry) -> bool:
        checked = shared.checked
        return self.clock() - checked < self.revalidate and checked >= self.floor()

    async def health(self) -> str:
        """The cache's state as a health endpoint shows it: "ok" or "degraded: ...".

        The filler's word (decisions/0018: its CacheHealth), or why it cannot
        be asked: its socket gone with the cache directory, or no filler.
        """
        try:
            state, _ = await FillerLink.asked_health(self.socket_path)
        except StoreError as exc:
            return f"degraded: {exc.detail}"
        return state

    def forget(self, key: str) -> None:
        """`key` was just written or deleted through this server: stop serving the old version.

        This worker checks with the store on its next lookup of `key`; the
        filler is asked to check now, so it drops the old entry, and every
        other worker then finds it gone (EntryReader.acquire fails).
        """
        self.version_gone(key)
        task = asyncio.get_running_loop().create_task(self._recheck(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, key: str) -> None:
        try:
            link, _ = await FillerLink.opened(self.socket_path, key, check=True)
        except StoreError:
            # NotFound after a delete is the expected answer; with no filler now, a
            # restarted one checks on the next open.
            return
        link.close()

    def version_gone(self, key: str) -> None:
        """The version of `key` this worker holds is no longer current (a write through
        this server, or a fill that found it changed upstream): drop the reader, and let
        the next lookup ask the filler to check rather than find the old entry, which
        the filler removes a moment later."""
        if len(self._changed) >= MAX_CHANGED:
            self._changed.clear()  # the filler's checks cover them too, a moment later
        self._changed.add(key)
        shared = self._readers.pop(key, None)
        if shared is not None:
            shared.retire()

    def close(self) -> None:
        """Close every reader no transfer uses (worker shutdown); the rest close after."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in self._tasks:
            task.cancel()
        for shared in self._readers.values():
            shared.retire()
        self._readers.clear()

    # -- the LRU of readers -----------------------------------------------------------

    def _find(self, key: str) -> SharedEntry | None:
        shared = self._readers.get(key)
        if shared is not None:
            self._readers.move_to_end(key)
            return shared
        reader = self.cache.open_reader(key)
        if reader is None:
            return None
        shared = self._readers[key] = SharedEntry(reader)
        while len(self._readers) > MAX_READERS:
            _, oldest = self._readers.popitem(last=False)
            oldest.retire()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)
        return shared

    def _forget(self, key: str, shared: SharedEntry) -> None:
        if self._readers.get(key) is shared:
            del self._readers[key]
        shared.retire()

    def _sweep(self) -> None:
        """Every SWEEP_EVERY seconds while readers are open: unlock idle entries, so the
        evictor may take them, and close idle readers of entries that are gone (their
        descriptors would pin the disk space)."""
        self._sweeper = None
        now = time.monotonic()
        for key, shared in list(self._readers.items()):
            if shared.users == 0 and shared.unlinked():
                self._forget(key, shared)
            else:
                shared.relax(now)
        if self._readers:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)
