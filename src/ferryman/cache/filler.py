"""The fill engine: each block of each object version fetched once, reported as it lands.

Runs in the filler process, on its event loop; decisions/0012 is the design.

Ownership and invariants (everything below belongs to the loop thread):

* `Filler._entries` holds the open EntryWriter of each entry being used.
  Only this class creates, drops or writes entries; an open writer holds a
  shared flock, so the evictor skips it. Idle writers are closed before
  each eviction run so that unused entries can go.
* One future per (entry, block) in flight, in `_Fill.pending`: whoever wants
  a block that is being fetched awaits that future, so a block is never
  fetched twice. A future's result is None (the block is present) or the
  StoreError that failed it; it is never cancelled and never holds an
  exception, so an abandoned waiter leaves nothing unretrieved.
* Every change of an entry on disk (load, create, drop) happens under the
  key's lock (`_locked`), so a drop after a 412 cannot remove the entry an
  open has just created. `open` is single flight per key on top of that.
* A block is handed to write_block only when all its bytes arrived; the
  write runs in a thread and is shielded from cancellation, and a writer is
  closed only when its last write has returned (`_Fill.retire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from functools import partial
from typing import Any

from ferryman.cache import blockmap
from ferryman.cache.entry import CacheDir, EntryMeta, EntryWriter
from ferryman.cache.entryfiles import META, slot_size
from ferryman.cache.eviction import Evictor
from ferryman.cache.stats import CacheStats
from ferryman.stores.base import (
    NotFound,
    PreconditionFailed,
    Store,
    StoreError,
    Truncated,
    Unavailable,
)

log = logging.getLogger("ferryman.cache")

RETRY_DELAYS = (0.05, 0.25)  # seconds before the 2nd and 3rd try of a run (cut or reset)
EVICT_EVERY = 5.0  # seconds between periodic eviction runs
MAX_OPEN = 256  # entries whose writers stay open while idle
EVICT_GAP = 0.5  # at least this long between runs triggered by fills (all may be in use)

Outcome = StoreError | None  # what a block's future resolves to


class _Fill:
    """The filler's state for one entry (one object version)."""

    def __init__(self, writer: EntryWriter, checked: float) -> None:
        self.writer = writer
        self.meta = writer.meta
        self.checked = checked  # clock time of the last HEAD that confirmed the version
        self.pending: dict[int, asyncio.Future[Outcome]] = {}
        self.runs: set[asyncio.Task[None]] = set()
        self.checking: dict[int, asyncio.Future[None]] = {}  # blocks being verified
        self.writes = 0  # write_block calls still running in threads
        self.next_block = 0  # the block after the last one wanted (read-ahead detection)
        self.dropped = False

    @property
    def idle(self) -> bool:
        return not (self.pending or self.runs or self.writes or self.checking)

    def settle(self, block: int, outcome: Outcome) -> None:
        future = self.pending.pop(block, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def fail_all(self, error: StoreError) -> None:
        for block in list(self.pending):
            self.settle(block, error)

    def retire(self) -> None:
        """Stop using the entry; its writer closes once no write is running."""
        self.dropped = True
        for task in self.runs:
            task.cancel()
        if not self.writes:
            self.writer.close()


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
    ) -> None:
        self.cache = cache
        self.store = store
        self.block_size = block_size
        self.readahead = readahead
        self.revalidate = revalidate
        self.max_run = max_run
        self.evictor = evictor
        self.clock = clock
        self.stats = CacheStats()
        self._entries: dict[str, _Fill] = {}
        self._opening: dict[str, tuple[asyncio.Task[EntryMeta], bool]] = {}
        self._locks: dict[str, _KeyLock] = {}
        self._fetch_slots = asyncio.Semaphore(max_fetches)
        self._tasks: set[asyncio.Task[None]] = set()  # drops and periodic eviction
        self._evicting: asyncio.Task[None] | None = None
        self._last_eviction = float("-inf")
        self._disk_total = 0  # bytes the cache held after the last eviction run
        self._disk_free: int | None = None  # free bytes then (None: never measured)
        self._written = 0  # bytes of blocks written since that run
        self._writes: set[asyncio.Future[None]] = set()  # write_block threads running

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Evict once now (the limits may have shrunk), then every EVICT_EVERY seconds."""
        if self.evictor is not None:
            await self._evict(0)
            self._spawn(self._evict_periodically())

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
        await asyncio.gather(*runs, *self._tasks, *self._writes, return_exceptions=True)
        if self._evicting is not None:
            await asyncio.gather(self._evicting, return_exceptions=True)

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
            log.error("cache: cannot open an entry for %r: %s", key, exc)
            raise Unavailable(f"the cache cannot hold {key!r}: {exc.strerror}") from None

    async def _open_locked(self, key: str, check: bool) -> EntryMeta:
        async with self._locked(key):
            fill = self._entries.get(key) or await self._load(key)
            if fill is not None and not check and self.clock() - fill.checked < self.revalidate:
                return fill.meta
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
                await asyncio.to_thread(fill.writer.mark_checked)
                fill.checked = self.clock()
                return fill.meta
            if fill is not None:
                self.stats.version_changes += 1
                await self._drop_now(fill, PreconditionFailed(f"{key!r} changed in the store"))
            meta = EntryMeta(
                key, info.size, info.etag, info.last_modified, info.content_type,
                info.sha256, self.block_size,
            )  # fmt: skip
            writer = await asyncio.to_thread(self.cache.create, meta)
            self._remember(key, _Fill(writer, self.clock()))
            return meta

    async def _load(self, key: str) -> _Fill | None:
        """The entry on disk for `key` (call with the key locked), or None."""
        found = await asyncio.to_thread(self._open_writer, key)
        if found is None:
            return None
        writer, checked = found
        return self._remember(key, _Fill(writer, checked))

    def _remember(self, key: str, fill: _Fill) -> _Fill:
        """Keep `fill` open; close idle writers beyond MAX_OPEN (each holds descriptors)."""
        self._entries[key] = fill
        if len(self._entries) > MAX_OPEN:
            for other in [k for k, f in self._entries.items() if f.idle and k not in self._locks]:
                self._entries.pop(other).retire()
                if len(self._entries) <= MAX_OPEN // 2:
                    break
        return fill

    def _open_writer(self, key: str) -> tuple[EntryWriter, float] | None:
        writer = self.cache.open_writer(key)
        if writer is None:
            return None
        try:  # meta's mtime is the last confirming HEAD (entryfiles.py)
            checked = os.stat(self.cache.entry_path(key) / META).st_mtime
        except OSError:
            checked = float("-inf")
        return writer, checked

    @contextlib.asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
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

    async def _drop_now(self, fill: _Fill, error: StoreError) -> None:
        """Forget `fill`, fail its waiters, remove it from disk (key locked)."""
        self._forget(fill, error)
        await asyncio.to_thread(self.cache.drop, fill.meta.key)

    def _forget(self, fill: _Fill, error: StoreError) -> None:
        key = fill.meta.key
        if self._entries.get(key) is fill:
            del self._entries[key]
        fill.fail_all(error)
        fill.retire()

    def _version_gone(self, fill: _Fill, error: StoreError) -> None:
        """A fetch learned that the pinned version is gone: drop it from a task."""
        if fill.dropped:
            return
        self.stats.version_changes += 1
        self._forget(fill, error)
        self._spawn(self._drop_later(fill))

    async def _drop_later(self, fill: _Fill) -> None:
        key = fill.meta.key
        async with self._locked(key):
            if key not in self._entries:  # no open made a new entry meanwhile
                await asyncio.to_thread(self.cache.drop, key)

    # -- want: which blocks ----------------------------------------------------------

    async def want(
        self, key: str, first: int, last: int, *, etag: str | None = None
    ) -> AsyncIterator[tuple[int, Outcome]]:
        """Blocks first..last of `key` as each is present (or failed), in that order of events.

        With `etag`, only from that version: PreconditionFailed (raised before
        any block) when the entry now holds another, or none.
        """
        fill = await self._current(key, etag)
        count = fill.meta.block_count()
        if not 0 <= first <= last < count:
            raise Unavailable(f"blocks {first}-{last} are outside {key!r} ({count} blocks)")
        self._schedule(fill, first, last)
        arrivals: asyncio.Queue[tuple[int, Outcome]] = asyncio.Queue()
        waiting = 0
        for block in range(first, last + 1):
            future = fill.pending.get(block)
            if future is None:
                yield block, None
            else:
                future.add_done_callback(partial(_relay, arrivals, block))
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

    async def _check_block(self, fill: _Fill, block: int) -> None:
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
            if not fill.dropped:
                self._fetch(fill, block, block)
        except OSError as exc:
            raise Unavailable(f"the cache cannot check block {block}: {exc.strerror}") from None
        finally:
            fill.writes -= 1
            if fill.dropped and not fill.writes:
                fill.writer.close()

    async def _current(self, key: str, etag: str | None) -> _Fill:
        fill = self._entries.get(key)
        if fill is None:
            async with self._locked(key):
                try:
                    fill = self._entries.get(key) or await self._load(key)
                except OSError as exc:
                    raise Unavailable(f"the cache cannot open {key!r}: {exc.strerror}") from None
        if fill is None or (etag is not None and fill.meta.etag != etag):
            raise PreconditionFailed(f"the cached version of {key!r} was replaced")
        return fill

    def _schedule(self, fill: _Fill, first: int, last: int) -> None:
        """Start fetching what first..last (and read-ahead) need and nobody fetches yet."""
        stop = last
        if first == fill.next_block and self.readahead:
            stop = min(last + self.readahead, fill.meta.block_count() - 1)
        fill.next_block = last + 1
        self._fetch(fill, first, stop)

    def _fetch(self, fill: _Fill, first: int, last: int) -> None:
        """Start runs for the blocks of first..last that are neither present nor in flight."""
        runs = blockmap.missing_runs(fill.writer.present, first, last, self.max_run, fill.pending)
        loop = asyncio.get_running_loop()
        for run_first, run_last in runs:
            for block in range(run_first, run_last + 1):
                fill.pending[block] = loop.create_future()
            task = loop.create_task(self._fetch_run(fill, run_first, run_last))
            fill.runs.add(task)
            task.add_done_callback(fill.runs.discard)

    # -- fetching ----------------------------------------------------------------------

    async def _fetch_run(self, fill: _Fill, first: int, last: int) -> None:
        """One ranged GET for blocks first..last, retried for what a cut left missing."""
        progress = _Progress(first)
        try:
            async with self._fetch_slots:
                for attempt in range(len(RETRY_DELAYS) + 1):
                    if progress.block > last:
                        return
                    try:
                        await self._stream_run(fill, progress, last)
                        return
                    except (Truncated, Unavailable) as exc:
                        if attempt == len(RETRY_DELAYS) or fill.dropped:
                            raise
                        log.info("cache: retrying blocks %d-%d of %r: %s",
                                 progress.block, last, fill.meta.key, exc)  # fmt: skip
                        await asyncio.sleep(RETRY_DELAYS[attempt])
        except (PreconditionFailed, NotFound) as exc:
            self._version_gone(fill, exc)
        except StoreError as exc:
            self._fail_range(fill, progress.block, last, exc)
        except OSError as exc:
            log.error("cache: cannot write %r: %s", fill.meta.key, exc)
            error = Unavailable(f"the cache cannot store blocks: {exc.strerror}")
            self._fail_range(fill, progress.block, last, error)
        except asyncio.CancelledError:
            self._fail_range(fill, progress.block, last, Unavailable("the fetch was stopped"))
            raise
        except Exception as exc:  # a bug must not leave waiters hanging
            log.exception("cache: fetching blocks %d-%d of %r failed", first, last, fill.meta.key)
            self._fail_range(fill, progress.block, last, Unavailable(f"fetch failed: {exc!r}"))

    def _fail_range(self, fill: _Fill, first: int, last: int, error: StoreError) -> None:
        for block in range(first, last + 1):
            fill.settle(block, error)

    async def _stream_run(self, fill: _Fill, progress: _Progress, last: int) -> None:
        """Write each block as its bytes complete; the run's last one once the body ended.

        The store checks that its answer is the range asked (stores/base.py);
        holding the last block until the body ends is the backstop: a body
        longer than asked is refused before its last block is written.
        """
        meta = fill.meta
        start, _ = meta.block_span(progress.block)
        end = sum(meta.block_span(last))
        self.stats.upstream_requests += 1
        stream = self.store.read(meta.key, start, end, if_match=meta.etag)
        buffer = bytearray()
        received = 0
        try:
            async for chunk in stream:
                received += len(chunk)
                self.stats.bytes_fetched += len(chunk)
                if received > end - start:
                    raise Unavailable(f"the store sent more than bytes {start}-{end - 1}")
                buffer += chunk
                for block, data in _whole_blocks(meta, buffer, progress.block, last - 1):
                    await self._write(fill, block, data)
                    progress.block = block + 1
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        for block, data in _whole_blocks(meta, buffer, progress.block, last):
            await self._write(fill, block, data)
            progress.block = block + 1
        if progress.block <= last:
            raise Truncated(
                f"the store's answer for {meta.key!r} stopped at block {progress.block}"
            )

    async def _write(self, fill: _Fill, block: int, data: bytes) -> None:
        """Make room, write one whole block durably, and tell its waiters."""
        if fill.dropped:
            raise asyncio.CancelledError
        slot = slot_size(fill.meta.block_size, self.cache.encrypted)
        await self._make_room(slot)
        fill.writes += 1
        write = asyncio.ensure_future(asyncio.to_thread(fill.writer.write_block, block, data))
        write.add_done_callback(partial(_write_done, fill))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)  # a cancelled run still lets the thread finish
        self._written += slot
        self.stats.fills += 1
        fill.settle(block, None)

    # -- eviction ------------------------------------------------------------------------

    async def _make_room(self, reserve: int) -> None:
        evictor = self.evictor
        if evictor is None or self.clock() - self._last_eviction < EVICT_GAP:
            return
        over = self._disk_total + self._written + reserve > evictor.max_size
        if self._disk_free is not None:
            over = over or self._disk_free - self._written - reserve < evictor.min_free
        if over:
            await self._evict(reserve)

    async def _evict(self, reserve: int) -> None:
        if self._evicting is None:
            self._evicting = asyncio.ensure_future(self._run_evictor(reserve))
        evicting = self._evicting
        try:
            await asyncio.shield(evicting)
        finally:
            if evicting.done() and self._evicting is evicting:
                self._evicting = None

    async def _run_evictor(self, reserve: int) -> None:
        assert self.evictor is not None
        for key in [k for k, f in self._entries.items() if f.idle and k not in self._locks]:
            self._entries.pop(key).retire()  # an open writer would keep its entry in use
        self._written = 0
        self._last_eviction = self.clock()
        try:
            report = await asyncio.to_thread(self.evictor.run, reserve)
        except OSError as exc:
            log.error("cache: eviction failed: %s", exc)
            return
        self._disk_total = report.total_bytes - report.evicted_bytes
        self._disk_free = report.free_bytes + report.evicted_bytes
        self.stats.evictions += report.evicted
        self.stats.evicted_bytes += report.evicted_bytes

    async def _evict_periodically(self) -> None:
        while True:
            await asyncio.sleep(EVICT_EVERY)
            await self._evict(0)


class _KeyLock:
    """A key's lock and how many hold or wait for it (the entry goes at zero)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Progress:
    """The first block of a run not yet written (survives the run's retries)."""

    __slots__ = ("block",)

    def __init__(self, block: int) -> None:
        self.block = block


def _whole_blocks(
    meta: EntryMeta, buffer: bytearray, block: int, last: int
) -> Iterator[tuple[int, bytes]]:
    """Cut every complete block off the front of `buffer`, starting with `block`."""
    while block <= last:
        _, length = meta.block_span(block)
        if len(buffer) < length:
            return
        data = bytes(buffer[:length])
        del buffer[:length]
        yield block, data
        block += 1


def _relay(
    arrivals: asyncio.Queue[tuple[int, Outcome]], block: int, future: asyncio.Future[Outcome]
) -> None:
    outcome = Unavailable("the fetch was stopped") if future.cancelled() else future.result()
    arrivals.put_nowait((block, outcome))


def _write_done(fill: _Fill, write: asyncio.Future[None]) -> None:
    fill.writes -= 1
    if not write.cancelled():
        write.exception()  # the awaiting run reports it; this only marks it seen
    if fill.dropped and not fill.writes:
        fill.writer.close()
