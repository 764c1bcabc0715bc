"""The worker side of the block cache: read entries directly, ask the filler for the rest.

Runs in each worker's event loop (decisions/0012). The warm path sends no
message and awaits nothing: `lookup_warm` finds the entry's reader in a small
per-worker LRU (or opens it from disk), checks that its last HEAD is recent
enough and takes the shared flock that marks it in use; when it cannot,
`lookup` asks the filler (link.py); `body` then describes present
bytes of a plain entry as FileRegions, which the connection sends with
sendfile. Anything else streams: missing blocks are asked of the filler over
a Unix socket (protocol.py), a window of `readahead` blocks ahead of the one
being sent, and each block is read from disk once the filler says it is
present. A failed block, or the filler going away, ends the stream with a
StoreError, so the connection aborts: a client never gets wrong bytes.

Ownership: the LRU owns its EntryReaders. A CachedObject holds one use of a
reader (the flock is held while any use is, and a moment after: _Shared)
and, after a cold lookup, its filler connection; `body` hands both to the
Body's cleanup, and `close` releases them when no body was made (HEAD, 304,
412).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from ferryman.cache import blockmap
from ferryman.cache.crypto import BadBlock, BlockCipher, load_or_create_key
from ferryman.cache.entry import CacheDir, EntryReader
from ferryman.cache.link import FillerLink
from ferryman.cache.stats import CacheStats
from ferryman.config import Config
from ferryman.http.body import Body, Part
from ferryman.http.ranges import ByteRange
from ferryman.http.response import Headers, encode_headers
from ferryman.pagecache import read_nowait
from ferryman.stores.base import ObjectInfo, PreconditionFailed, StoreError, Unavailable

MAX_READERS = 64  # open entries kept per worker (each holds four descriptors)
MAX_CHANGED = 4096  # keys written by this worker and not looked up since
SWEEP_EVERY = 1.0  # seconds between sweeps of the LRU (see _sweep)
LINGER = 2.0  # seconds an idle entry stays locked in use (see _Shared)
SMALL_IN_MEMORY = 16 * 1024  # complete entries up to this size are kept in memory
COMPLETE_CHECK = 4096  # entries of at most this many blocks are checked whole once
THREAD_DECRYPT = 64 * 1024  # blocks at least this long are read and decrypted in a thread

Span = bytes | ByteRange


def open_cache_client(config: Config) -> CacheClient:
    """The CacheClient of a worker process, for --cache-dir (the filler creates the key)."""
    from ferryman.cache.service import socket_path

    assert config.cache_dir is not None
    cipher = None
    if config.cache_encrypt:
        cipher = BlockCipher(load_or_create_key(config.cache_key_path))
    cache = CacheDir(Path(config.cache_dir), namespace=config.source, cipher=cipher)
    return CacheClient(
        cache,
        socket_path(config),
        revalidate=config.cache_revalidate,
        readahead=config.cache_readahead,
    )


class _Shared:
    """One EntryReader of the LRU, the uses (CachedObjects) holding it, what is known of it.

    The shared flock is taken at the first use and kept until the entry has
    been idle for LINGER seconds (the client's sweep releases it), so a hot
    entry costs one fstat per request rather than a lock, two stats and an
    unlock. While it is held the evictor skips the entry, as for any entry
    being sent; a replaced entry is noticed by its data file's link count.
    """

    __slots__ = (
        "checked", "complete", "head", "idle_since", "info", "locked", "reader", "retired",
        "small", "users",
    )  # fmt: skip

    def __init__(self, reader: EntryReader) -> None:
        self.reader = reader
        self.checked = reader.checked_at  # last HEAD that confirmed the version (Unix time)
        meta = reader.meta
        self.info = ObjectInfo(
            meta.key, meta.size, meta.etag, meta.last_modified, meta.sha256, meta.content_type
        )
        self.complete = False  # every block was present (a block is never cleared from
        # a plain entry; an encrypted one is always streamed and checks each block)
        self.users = 0
        self.locked = False
        self.idle_since = time.monotonic()
        self.retired = False  # out of the LRU: close when the last use ends
        self.small: bytes | None = None  # the whole object, for small complete plain entries
        self.head: tuple[Headers, bytes] | None = None  # a plain 200's headers, encoded

    def use(self) -> bool:
        """Take a use; False if the entry is no longer in the cache (evicted, replaced).

        While this worker holds the lock the evictor cannot take the entry, but
        a write through another worker can replace it: one fstat per use sees
        that at once, so a read after a write never gets the old version.
        """
        if self.locked:
            if os.fstat(self.reader.data_fd).st_nlink == 0:
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
    ) -> None:
        self.cache = cache
        self.socket_path = socket_path
        self.revalidate = revalidate
        self.readahead = readahead
        self.clock = clock
        self.stats = CacheStats()  # hits and misses of this worker
        self._readers: OrderedDict[str, _Shared] = OrderedDict()
        self._sweeper: asyncio.TimerHandle | None = None
        self._changed: set[str] = set()  # keys this worker wrote: check before serving
        self._tasks: set[asyncio.Task[None]] = set()

    def lookup_warm(self, key: str) -> CachedObject | None:
        """The cached version of `key` when it can be had without the filler, else None.

        Synchronous, so a warm hit is answered inside the connection's read
        callback with no task: the entry must be open (or openable) here, its
        last HEAD younger than `revalidate`, not written through this worker
        since, and still in place (its in-use lock taken). Anything else is
        for `lookup`.
        """
        shared = self._find(key)
        if shared is None or key in self._changed:
            return None
        if self.clock() - shared.checked >= self.revalidate:
            return None
        if shared.use():
            return CachedObject(self, shared, None)
        self._forget(key, shared)  # evicted or replaced: `lookup` asks the filler
        return None

    async def lookup(self, key: str) -> CachedObject:
        """The cached version of `key`; the filler is asked only when needed.

        Raises the StoreError kinds the filler reports (NotFound, Throttled, ...)
        and Unavailable when the filler cannot be reached.
        """
        warm = self.lookup_warm(key)
        if warm is not None:
            return warm
        # What lookup_warm left in the LRU is a stale or rewritten entry (asked
        # to be checked), or nothing (the filler opens or makes it).
        shared = self._readers.get(key)
        self.stats.misses += 1
        link = await FillerLink.connect(self.socket_path)
        try:
            etag = await link.open(key, check=shared is not None or key in self._changed)
            if shared is None or shared.reader.meta.etag != etag or not shared.use():
                if shared is not None:
                    self._forget(key, shared)
                shared = self._find(key)
                if shared is None or shared.reader.meta.etag != etag or not shared.use():
                    raise Unavailable(f"the cache entry of {key!r} changed while it was opened")
            shared.checked = self.clock()
            self._changed.discard(key)
            return CachedObject(self, shared, link)
        except BaseException:
            link.close()
            raise

    def forget(self, key: str) -> None:
        """`key` was just written or deleted through this server: stop serving the old version.

        This worker checks with the store on its next lookup of `key`; the
        filler is asked to check now, so it drops the old entry, and every
        other worker then finds it gone (EntryReader.acquire fails).
        """
        if len(self._changed) >= MAX_CHANGED:
            self._changed.clear()  # the filler's check below covers them too, a moment later
        self._changed.add(key)
        shared = self._readers.pop(key, None)
        if shared is not None:
            shared.retire()
        task = asyncio.get_running_loop().create_task(self._recheck(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, key: str) -> None:
        try:
            link = await FillerLink.connect(self.socket_path)
        except StoreError:
            return  # no filler now: a restarted one checks on the next open
        try:
            await link.open(key, check=True)
        except StoreError:
            pass  # NotFound after a delete is the expected answer
        finally:
            link.close()

    def _version_gone(self, key: str) -> None:
        """A fill of `key` learned that its version changed upstream: the filler drops the
        entry from a task, so until it has, the next lookup must ask it (check), not find
        the old entry still in place."""
        if len(self._changed) >= MAX_CHANGED:
            self._changed.clear()
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

    def _find(self, key: str) -> _Shared | None:
        shared = self._readers.get(key)
        if shared is not None:
            self._readers.move_to_end(key)
            return shared
        reader = self.cache.open_reader(key)
        if reader is None:
            return None
        shared = self._readers[key] = _Shared(reader)
        while len(self._readers) > MAX_READERS:
            _, oldest = self._readers.popitem(last=False)
            oldest.retire()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)
        return shared

    def _forget(self, key: str, shared: _Shared) -> None:
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


class CachedObject:
    """One version of an object in the cache, held in use until its body ends."""

    def __init__(self, client: CacheClient, shared: _Shared, link: FillerLink | None) -> None:
        self._client = client
        self._shared: _Shared | None = shared
        self._link = link
        self._asked_filler = link is not None
        self.reader = shared.reader
        self.info = shared.info

    def body(self, spans: Sequence[Span]) -> Body:
        """Literals and byte ranges (inclusive ends) of the object, in order.

        Zero-copy FileRegions when the entry is plain and every block the
        ranges need is present; otherwise a stream of exactly those bytes.
        The body's cleanup releases the entry (and the filler connection).
        """
        reader = self.reader
        assert self._shared is not None, "one body per CachedObject"
        present = self._shared.complete or self._present(spans)
        if present and not self._asked_filler:
            self._client.stats.hits += 1
        elif not self._asked_filler:
            self._client.stats.misses += 1
        reader.touch_used()
        small = self._small() if present else None
        if small is not None:  # no read at all: the bytes are in memory
            return Body(
                [s if isinstance(s, bytes) else small[s.start : s.end + 1] for s in spans],
                cleanup=self.close,
            )
        if present and not reader.encrypted:
            parts: list[Part] = [
                s if isinstance(s, bytes) else reader.region(s.start, s.end - s.start + 1)
                for s in spans
            ]
            return Body(parts, cleanup=self.close)
        length = sum(len(s) if isinstance(s, bytes) else s.end - s.start + 1 for s in spans)
        return Body(stream=self._stream(list(spans)), length=length, cleanup=self.close)

    def whole_in_memory(self) -> tuple[bytes, tuple[Headers, bytes] | None] | None:
        """(bytes, remembered 200 head) of a small complete entry; None for any other.

        For the plain GET or HEAD of a small object, the caller answers from
        memory with the head it remembered (`remember_head`), as local small
        files are answered (app/filecache.py).
        """
        small = self._small()
        if small is None or self._shared is None:
            return None
        self._client.stats.hits += 1
        self.reader.touch_used()
        return small, self._shared.head

    def remember_head(self, headers: Headers) -> None:
        if self._shared is not None:
            self._shared.head = (headers, encode_headers(headers))

    def _small(self) -> bytes | None:
        """A small, complete, plain entry's bytes, read once and kept with the entry.

        Safe because a plain entry's present blocks never change (a new
        version is a new entry); bounded by MAX_READERS * SMALL_IN_MEMORY.
        """
        shared = self._shared
        if shared is None or not shared.complete or self.reader.encrypted:
            return None
        if shared.small is None and self.info.size <= SMALL_IN_MEMORY:
            region = self.reader.region(0, self.info.size)
            data = read_nowait(region.fd, region.offset, region.count)
            if data is not None and len(data) == region.count:
                shared.small = data
        return shared.small

    def _present(self, spans: Sequence[Span]) -> bool:
        """Every block the ranges need is present (and note a complete entry)."""
        reader = self.reader
        block_size = reader.meta.block_size
        for span in spans:
            if isinstance(span, ByteRange):
                blocks = blockmap.blocks_covering(span.start, span.end + 1, block_size)
                if not reader.present(blocks.start, blocks.stop - 1):
                    return False
        count = reader.meta.block_count()
        if count <= COMPLETE_CHECK and self._shared is not None:
            self._shared.complete = reader.present(0, count - 1)
        return True

    def close(self) -> None:
        """Release the entry and the filler connection. Idempotent."""
        if self._link is not None:
            self._link.close()
            self._link = None
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.unuse()

    # -- the stream -------------------------------------------------------------------

    async def _stream(self, spans: list[Span]) -> AsyncIterator[bytes]:
        block_size = self.reader.meta.block_size
        try:
            for span in spans:
                if isinstance(span, bytes):
                    if span:
                        yield span
                    continue
                blocks = blockmap.blocks_covering(span.start, span.end + 1, block_size)
                last = blocks.stop - 1
                for block in blocks:
                    await self._ensure(block, last)
                    low = max(span.start, block * block_size)
                    high = min(span.end + 1, (block + 1) * block_size)
                    yield await self._read(block, low, high)
        except PreconditionFailed:
            self._client._version_gone(self.reader.meta.key)
            raise

    async def _ensure(self, block: int, last: int) -> None:
        """Return once `block` is present, asking the filler for it (and a window ahead)."""
        present = self.reader.present(block, block)
        if present and self._link is None:
            return  # warm so far: no reason to talk to the filler
        link = await self._connect()
        link.want(block, min(last, block + self._client.readahead))
        if present:
            return
        await link.wait(block)
        if not self.reader.present(block, block):
            # The filler filled another entry than the one this reader holds.
            raise Unavailable("the cache entry was replaced while it was being read")

    async def _connect(self) -> FillerLink:
        if self._link is None:
            key = self.reader.meta.key
            link = await FillerLink.connect(self._client.socket_path)
            try:
                etag = await link.open(key, check=False)
            except BaseException:
                link.close()
                raise
            self._link = link
            self._asked_filler = True
            if etag != self.reader.meta.etag:
                raise PreconditionFailed(f"{key!r} changed while it was being sent")
        return self._link

    async def _read(self, block: int, low: int, high: int) -> bytes:
        """Object bytes [low, high) of `block`, which is present."""
        reader = self.reader
        if not reader.encrypted:
            region = reader.region(low, high - low)
            data = read_nowait(region.fd, region.offset, region.count)
            if data is None or len(data) != region.count:
                data = await asyncio.to_thread(_pread, region.fd, region.count, region.offset)
            if len(data) != region.count:
                raise Unavailable(f"block {block} of the cache entry is short")
            return data
        start, length = reader.meta.block_span(block)
        for attempt in range(2):
            try:
                if length >= THREAD_DECRYPT:
                    plain = await asyncio.to_thread(reader.read_block, block)
                else:
                    plain = reader.read_block(block)
                return plain[low - start : high - start]
            except BadBlock:
                if attempt:
                    raise Unavailable(f"block {block} failed its check twice") from None
            link = await self._connect()
            await link.refetch(block)
            if not reader.present(block, block):
                raise Unavailable("the cache entry was replaced while it was being read")
        raise AssertionError("unreachable")


def _pread(fd: int, count: int, offset: int) -> bytes:
    data = os.pread(fd, count, offset)
    while 0 < len(data) < count:
        more = os.pread(fd, count - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data
