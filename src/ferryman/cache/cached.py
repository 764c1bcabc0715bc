"""One cached object version being answered: its body from memory, from regions, or streamed.

A CachedObject holds one use of an entry (client.py's SharedEntry: the in-use
flock) and, after a cold lookup, a connection to the filler. `body` describes
present bytes of a plain entry as FileRegions, which the connection sends
with sendfile; a small complete entry, plain or encrypted (opened and checked
once), is answered from memory. Anything else streams: missing blocks are
asked of the filler (link.py), a window of `readahead` blocks ahead of the
one being sent, and each block is read from disk once the filler says it is
present (of an encrypted block, only the sealed segments the range covers
are read and opened). A failed block, or the filler going
away, ends the stream with a StoreError, so the connection aborts: a client
never gets wrong bytes. A block the cache declines (health.py: no room, or a
degraded disk), or one the disk fails to read, is no such failure: the rest
of the answer streams from the store (`fallback`, pinned to the same ETag).
The Body's cleanup (or `close`, when no body was made: HEAD, 304, 412)
releases the use and the connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ferryman.cache.cachedstream import Fallback, Section, cached_stream
from ferryman.cache.crypto import BadBlock
from ferryman.cache.entryfiles import pread_exact
from ferryman.cache.health import CacheDeclined
from ferryman.cache.link import FillerLink
from ferryman.http.body import Body, Part
from ferryman.http.spans import Span
from ferryman.pagecache import read_nowait
from ferryman.stores.base import PreconditionFailed, Unavailable

if TYPE_CHECKING:
    from ferryman.cache.client import CacheClient, SharedEntry

SMALL_IN_MEMORY = 16 * 1024  # complete entries up to this size are kept in memory
COMPLETE_CHECK = 4096  # entries of at most this many blocks are checked whole once
# Sealed bytes up to this many are read from the page cache and opened on the event loop
# (~40 us): an answer needing no more is opened in `body` itself, a block's piece in the
# stream; more, or bytes not in the page cache, in a thread (decisions/0039).
THREAD_DECRYPT = 256 * 1024


class CachedObject:
    """One version of an object in the cache, held in use until its body ends."""

    def __init__(self, client: CacheClient, shared: SharedEntry, link: FillerLink | None) -> None:
        self._client = client
        self._shared: SharedEntry | None = shared
        self._link = link
        self.reader = shared.reader
        self.info = shared.info

    def body(self, spans: Sequence[Section], fallback: Fallback | None = None) -> Body:
        """Literals and byte spans of the object, in order.

        Zero-copy FileRegions when the entry is plain and every block the
        ranges need is present; otherwise a stream of exactly those bytes,
        whose rest comes from `fallback` if the cache declines a block.
        The body's cleanup releases the entry (and the filler connection).
        """
        reader = self.reader
        assert self._shared is not None, "one body per CachedObject"
        present = self._shared.complete or self._present(spans)
        self._count(hit=present)
        reader.touch_used()
        small = self._small() if present else None
        if small is not None:  # no read at all: the bytes are in memory
            return Body(
                [s if isinstance(s, bytes) else small[s.start : s.end] for s in spans],
                cleanup=self.close,
            )
        if present and not reader.encrypted:
            parts: list[Part] = [s if isinstance(s, bytes) else reader.region(s) for s in spans]
            return Body(parts, cleanup=self.close)
        opened = self._opened_now(spans) if present else None
        if opened is not None:  # bytes, which the connection may send with the head at once
            return Body(opened, cleanup=self.close)
        length = sum(len(s) if isinstance(s, bytes) else s.length for s in spans)
        stream = cached_stream(self, list(spans), fallback)
        return Body(stream=stream, length=length, cleanup=self.close)

    def whole_in_memory(self) -> bytes | None:
        """The bytes of a small complete entry; None for any other.

        For the unconditional GET or HEAD of a small object, which the caller answers
        from memory as local small files are answered (app/bodycache.py).
        """
        small = self._small()
        if small is None:
            return None
        self._count(hit=True)
        self.reader.touch_used()
        return small

    def still_current(self) -> Callable[[], bool]:
        """The check that this version is still the one to serve (app/bodycache.py)."""
        assert self._shared is not None
        return functools.partial(self._client.still_warm, self.reader.meta.key, self._shared)

    def _count(self, *, hit: bool) -> None:
        """Count a hit or a miss, unless the filler was asked: `client.lookup` counted a miss."""
        if self._link is not None:
            return
        if hit:
            self._client.stats.hits += 1
        else:
            self._client.stats.misses += 1

    def _small(self) -> bytes | None:
        """A small, complete entry's bytes, read once and kept with the entry.

        Read only if they are in the page cache (never blocking the loop).
        Encrypted: kept only once every segment passed its check; a block
        that fails it is left to the stream, which has it fetched again.
        Safe because the version an entry holds never changes (a new version
        is a new entry; a block fetched again is the same bytes); bounded by
        MAX_READERS * SMALL_IN_MEMORY.
        """
        shared = self._shared
        if shared is None or not shared.complete:
            return None
        if shared.small is None and self.info.size <= SMALL_IN_MEMORY:
            try:
                shared.small = self.reader.whole_nowait()
            except BadBlock:
                return None
        return shared.small

    def _opened_now(self, spans: Sequence[Section]) -> list[Part] | None:
        """The spans of an encrypted entry opened here, without the stream's task, when
        they are short (THREAD_DECRYPT sealed bytes at most) and in the page cache.

        None otherwise, or if a segment fails its check: the stream then reads
        them, and has a bad block fetched again. A segment that opens is this
        version's bytes at this place, whatever the map says meanwhile.
        """
        reader = self.reader
        if not reader.encrypted:
            return None
        block_size = reader.meta.block_size
        budget = THREAD_DECRYPT  # decided before anything is read
        for span in spans:
            if isinstance(span, Span):
                for block, piece in span.split(block_size):
                    budget -= reader.opened_length(block, piece)
                    if budget < 0:
                        return None
        parts: list[Part] = []
        for span in spans:
            if isinstance(span, bytes):
                parts.append(span)
                continue
            for block, piece in span.split(block_size):
                try:
                    chunks = reader.read_chunks_nowait(block, piece)
                except BadBlock:
                    return None
                if chunks is None:
                    return None
                parts.extend(chunks)
        return parts

    def _present(self, spans: Sequence[Section]) -> bool:
        """Every block the spans need is present (and note a complete entry)."""
        reader = self.reader
        block_size = reader.meta.block_size
        for span in spans:
            if isinstance(span, Span) and not reader.present(span.blocks(block_size)):
                return False
        count = reader.meta.block_count()
        if count <= COMPLETE_CHECK and self._shared is not None:
            self._shared.complete = reader.present(range(count))
        return True

    def close(self) -> None:
        """Release the entry and the filler connection. Idempotent."""
        if self._link is not None:
            self._link.close()
            self._link = None
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.unuse()

    # -- the stream (cache/cachedstream.py drives it) ----------------------------------

    def declined(self) -> None:
        """Count a block the cache declined mid-answer (the rest comes from the store)."""
        self._client.stats.declined += 1

    def version_gone(self) -> None:
        """The store no longer has the version being sent: stop serving it from the cache."""
        self._client.version_gone(self.reader.meta.key)

    async def block_or_none(
        self, block: int, blocks: range, piece: Span, fallback: Fallback | None
    ) -> list[bytes] | None:
        """The object bytes `piece` of `block` (one of `blocks`) from the cache, in chunks;
        None if the cache declines it, or fails to read it, and there is a fallback."""
        try:
            await self._ensure(block, blocks)
            return await self._read(block, piece)
        except CacheDeclined:
            if fallback is None:
                raise
        except OSError as exc:  # the cache disk fails to read: not the client's problem
            if fallback is None:
                raise Unavailable(f"the cache cannot read block {block}: {exc.strerror}") from None
        return None

    async def _ensure(self, block: int, blocks: range) -> None:
        """Return once `block` is present, asking the filler for it and a window ahead
        (as far as `blocks`, the blocks of the span being sent, go)."""
        one = range(block, block + 1)
        present = self.reader.present(one)
        if present and self._link is None:
            return  # warm so far: no reason to talk to the filler
        link = await self._connect()
        link.want(range(block, min(blocks.stop, block + 1 + self._client.readahead)))
        if present:
            return
        await link.wait(block)
        if not self.reader.present(one):
            # The filler filled another entry than the one this reader holds.
            raise Unavailable("the cache entry was replaced while it was being read")

    async def _connect(self) -> FillerLink:
        if self._link is None:
            key = self.reader.meta.key
            # A warm start that now needs a block: a filler killed since waits for its
            # replacement (link.py), so this transfer is not cut for it.
            link, etag = await FillerLink.opened(self._client.socket_path, key, check=False)
            self._link = link
            if etag != self.reader.meta.etag:
                raise PreconditionFailed(f"{key!r} changed while it was being sent")
        return self._link

    async def _read(self, block: int, piece: Span) -> list[bytes]:
        """The object bytes `piece` of `block`, which is present, in chunks."""
        reader = self.reader
        if not reader.encrypted:
            region = reader.region(piece)
            data = read_nowait(region.fd, region.offset, region.count)
            if data is None or len(data) != region.count:
                data = await asyncio.to_thread(pread_exact, region.fd, region.count, region.offset)
            if len(data) != region.count:
                raise Unavailable(f"block {block} of the cache entry is short")
            return [data]
        inline = reader.opened_length(block, piece) <= THREAD_DECRYPT
        for attempt in range(2):
            try:
                chunks = reader.read_chunks_nowait(block, piece) if inline else None
                if chunks is None:
                    chunks = await asyncio.to_thread(reader.read_chunks, block, piece)
                return chunks
            except BadBlock:
                if attempt:
                    raise Unavailable(f"block {block} failed its check twice") from None
            link = await self._connect()
            await link.refetch(block)
            if not reader.present(range(block, block + 1)):
                raise Unavailable("the cache entry was replaced while it was being read")
        raise AssertionError("unreachable")
