"""The worker side of the block cache: read entries directly, ask the filler for the rest.

Runs in each worker's event loop (decisions/0012). The warm path sends no
message at all: `lookup` finds the entry's reader in a small per-worker LRU
(or opens it from disk), checks that its last HEAD is recent enough and
takes the shared flock that marks it in use; `body` then describes present
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
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from ferryman.cache import blockmap
from ferryman.cache.crypto import BadBlock, BlockCipher, load_or_create_key
from ferryman.cache.entry import CacheDir, EntryReader
from ferryman.cache.protocol import (
    MAX_LINE,
    Bad,
    BadMessage,
    Entry,
    Error,
    Failed,
    Have,
    Open,
    Reply,
    Request,
    Want,
    decode_reply,
    encode,
    store_error,
)
from ferryman.cache.stats import CacheStats
from ferryman.config import Config
from ferryman.http.body import Body, Part
from ferryman.http.ranges import ByteRange
from ferryman.pagecache import read_nowait
from ferryman.stores.base import ObjectInfo, PreconditionFailed, StoreError, Unavailable

MAX_READERS = 64  # open entries kept per worker (each holds four descriptors)
MAX_CHANGED = 4096  # keys written by this worker and not looked up since
SWEEP_EVERY = 1.0  # seconds between sweeps of the LRU (see _sweep)
LINGER = 2.0  # seconds an idle entry stays locked in use (see _Shared)
COMPLETE_CHECK = 4096  # entries of at most this many blocks are checked whole once
CONNECT_TIMEOUT = 5.0  # seconds a connect may wait for room in the filler's backlog
THREAD_DECRYPT = 64 * 1024  # blocks at least this long are read and decrypted in a thread

Span = bytes | ByteRange
_NOBODY_LISTENING = (ConnectionRefusedError, FileNotFoundError)  # a filler restarting


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
        "checked", "complete", "idle_since", "info", "locked", "reader", "retired", "users",
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

    def use(self) -> bool:
        """Take a use; False if the entry is no longer in the cache (evicted, replaced)."""
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

    async def lookup(self, key: str) -> CachedObject:
        """The cached version of `key`; the filler is asked only when needed.

        Raises the StoreError kinds the filler reports (NotFound, Throttled, ...)
        and Unavailable when the filler cannot be reached.
        """
        shared = self._find(key)
        fresh = shared is not None and self.clock() - shared.checked < self.revalidate
        if shared is not None and fresh and key not in self._changed:
            if shared.use():
                return CachedObject(self, shared, None)
            self._forget(key, shared)
            shared = None
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
        if present and not reader.encrypted:
            parts: list[Part] = [
                s if isinstance(s, bytes) else reader.region(s.start, s.end - s.start + 1)
                for s in spans
            ]
            return Body(parts, cleanup=self.close)
        length = sum(len(s) if isinstance(s, bytes) else s.end - s.start + 1 for s in spans)
        return Body(stream=self._stream(list(spans)), length=length, cleanup=self.close)

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


class FillerLink:
    """One connection to the filler about one object: `open`, then block notices.

    After `open`, a listener task turns each "have"/"failed" into the result
    of that block's future (None, or the StoreError to raise). An "error", a
    bad line or the connection closing breaks the link: every block still
    awaited, and every later one, fails with that error.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._blocks: dict[int, asyncio.Future[StoreError | None]] = {}
        self._broken: StoreError | None = None
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, path: str) -> FillerLink:
        """Connect to the filler, waiting up to CONNECT_TIMEOUT for one that is restarting.

        A filler that crashed is replaced by the arbiter within a moment; a
        request that arrives meanwhile waits for it rather than failing.
        """
        deadline = time.monotonic() + CONNECT_TIMEOUT
        delay = 0.02
        while True:
            try:
                return await cls._connect_once(path)
            except _NOBODY_LISTENING as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"the cache filler is not reachable ({exc})") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    @classmethod
    async def _connect_once(cls, path: str) -> FillerLink:
        """Connect to the filler; Unavailable when nobody serves `path`.

        The socket is connected here, not by the loop: uvloop cannot connect
        to an abstract name (a leading NUL). A Unix connect does not wait
        unless the filler's backlog is full; only then does a thread wait.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.setblocking(True)
                sock.settimeout(CONNECT_TIMEOUT)
                await asyncio.to_thread(sock.connect, path)
                sock.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        except _NOBODY_LISTENING:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise Unavailable(f"the cache filler is not reachable ({exc})") from None
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    async def open(self, key: str, check: bool) -> str:
        """Ask for `key`'s entry (a HEAD first if `check`); returns the pinned ETag."""
        self._send(Open(key, check))
        reply = await self._next()
        if isinstance(reply, Error):
            raise store_error(reply.kind, reply.detail, reply.retry_after)
        etag = reply.meta.get("etag") if isinstance(reply, Entry) else None
        if not isinstance(etag, str):
            raise Unavailable(f"the cache filler answered open with {reply!r}")
        self._listener = asyncio.ensure_future(self._listen())
        return etag

    def want(self, first: int, last: int) -> None:
        """Ask for the blocks of first..last not asked for yet (no wait)."""
        new = [b for b in range(first, last + 1) if b not in self._blocks]
        if not new or self._broken is not None:
            return
        loop = asyncio.get_running_loop()
        for block in new:
            self._blocks[block] = loop.create_future()
        self._send(Want(new[0], new[-1]))

    async def wait(self, block: int) -> None:
        """Return once the filler reported `block` present; raise what it reported else."""
        self.want(block, block)
        future = self._blocks.get(block)
        if future is None:
            assert self._broken is not None
            raise self._broken
        outcome = await asyncio.shield(future)
        if outcome is not None:
            del self._blocks[block]  # a later want may ask again
            raise outcome

    async def refetch(self, block: int) -> None:
        """Report `block` as failing its check; return once it is present again."""
        if self._broken is not None:
            raise self._broken
        self._blocks[block] = asyncio.get_running_loop().create_future()
        self._send(Bad(block))
        await self.wait(block)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        self._break(Unavailable("the filler connection was closed"))
        self._writer.close()

    def _send(self, request: Request) -> None:
        if self._writer.is_closing():
            self._break(Unavailable("the cache filler went away"))
        else:
            self._writer.write(encode(request))

    async def _next(self) -> Reply:
        try:
            line = await self._reader.readline()
        except (ValueError, ConnectionError) as exc:
            raise Unavailable(f"the cache filler connection failed: {exc}") from None
        if not line.endswith(b"\n"):
            raise Unavailable("the cache filler went away")
        try:
            return decode_reply(line)
        except BadMessage as exc:
            raise Unavailable(f"the cache filler sent a bad message: {exc}") from None

    async def _listen(self) -> None:
        try:
            while True:
                reply = await self._next()
                if isinstance(reply, Have):
                    self._settle(reply.block, None)
                elif isinstance(reply, Failed):
                    error = store_error(reply.kind, reply.detail, reply.retry_after)
                    self._settle(reply.block, error)
                elif isinstance(reply, Error):
                    self._break(store_error(reply.kind, reply.detail, reply.retry_after))
                    return
        except Unavailable as exc:
            self._break(exc)

    def _settle(self, block: int, outcome: StoreError | None) -> None:
        future = self._blocks.get(block)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _break(self, error: StoreError) -> None:
        if self._broken is None:
            self._broken = error
        for future in self._blocks.values():
            if not future.done():
                future.set_result(self._broken)


def _pread(fd: int, count: int, offset: int) -> bytes:
    data = os.pread(fd, count, offset)
    while 0 < len(data) < count:
        more = os.pread(fd, count - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data
