"""Serving objects of a store (s3://bucket/prefix), through the block cache or straight.

The same decision as for local files (plan.plan_response: preconditions,
Range and If-Range, multipart) is made from the object's size and
validators; only the body differs:

- with the cache (--cache-dir), the validators are those of the version the
  cache pinned, and the body comes from its blocks: regions of its data file
  when every block is present, else a stream that sends each block as it
  lands (cache/client.py). A warm hit (an entry this worker may serve
  without asking the filler) is answered synchronously, so the connection
  sends it without a task, as it does a local file. When the cache declines
  (no room beside the entries in use, or a full or failing cache disk:
  cache/health.py), the answer is the uncached one below; when it declines
  mid-answer, the rest of the body comes from the store the same way;
- without it, the validators come from a HEAD and the body is a ranged GET
  per range, pinned to that ETag with If-Match so the bytes cannot come from
  another version than the headers describe. The first bytes are awaited
  before the response is returned: a store that fails before sending
  anything gets a proper error status, not a cut 200.

A key is the request path relative to the source; "directories" are common
prefixes, listed from the store one level at a time. What a path names (an
object, a prefix, the slash form of a prefix) is the BucketRoot's to say
(app/root.py), as the Root says it for a directory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from ferryman.app import listing
from ferryman.app.bodycache import SmallBodyCache
from ferryman.app.browse import Browse
from ferryman.app.compression import Compression, Source
from ferryman.app.digestindex import DigestIndex
from ferryman.app.mime import content_type
from ferryman.app.paths import RequestPath
from ferryman.app.plan import Plan, Representation, plan_response
from ferryman.app.root import INDEX, BucketRoot, Meaning, decide, slash_form
from ferryman.app.storestream import first_chunk, prepend, read_spans
from ferryman.config import Config
from ferryman.http.body import Body
from ferryman.http.digest import format_repr_digest
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.http.spans import Span
from ferryman.stores.base import NotFound, ObjectInfo, Store, StoreError, http_error

if TYPE_CHECKING:
    from ferryman.cache.cached import CachedObject
    from ferryman.cache.client import CacheClient

# Keys of one prefix read from the store for its listing (then paged); more are cut, and
# the listing says so: each page of a listing reads the prefix again.
LISTING_LIMIT = 10_000


class RemoteReader:
    """Answers reads of a bucket SOURCE: objects, and listings of prefixes."""

    def __init__(self, config: Config, store: Store, cache: CacheClient | None = None) -> None:
        self.root = BucketRoot(store)
        self.store = store
        self.cache = cache
        self.cache_control = config.cache_control
        self.max_ranges = config.max_ranges
        self.digests: DigestIndex | None = None  # set when a catalog exists
        self.compression = Compression.of(config)
        self.browse = Browse.of(config)
        # Plain GETs of small cached objects, answered from memory (as local small files).
        self.answers = (
            SmallBodyCache(max_bytes=config.file_cache)
            if cache is not None and config.file_cache
            else None
        )

    def get(self, request: Request) -> Response | Awaitable[Response]:
        """A warm cache hit is answered at once; everything else awaits the cache or store."""
        if self.answers is not None:
            hit = self.answers.response(request)
            if hit is not None:
                return hit
        path = self.root.resolve(request)
        key = self.root.key(path)
        if self.cache is not None and not self.root.names_prefix(path):
            cached = self.cache.lookup_warm(key)
            if cached is not None:
                if not self._digest_known(cached.info):
                    return self._cached_after_lookup(request, cached, path.segments[-1])
                answer = self._cached_response(request, cached, path.segments[-1])
                return answer if isinstance(answer, Response) else _translated(answer)
        return self._get(request, path, key)

    async def _get(self, request: Request, path: RequestPath, key: str) -> Response:
        try:
            if self.root.names_prefix(path):
                return await self._directory(request, path, key)
            try:
                return await self._object(request, key, path.segments[-1])
            except NotFound as exc:
                missing = exc
            # Asked outside the except block: this module is compiled, and a
            # compiled coroutine that awaits while handling an exception
            # corrupts the exception state of the requests the loop runs
            # meanwhile (tests/unit/test_compiled_awaits.py).
            kind = await self.root.missing(key)
            if decide(path, kind, archives=False) is Meaning.SLASH_FORM:
                return slash_form(request, path)
            raise missing
        except StoreError as exc:
            raise http_error(exc) from None

    def tick(self) -> None:
        """Nothing to sweep: the cache's filler runs its own housekeeping."""

    def close(self) -> None:
        """Nothing held between requests here; the store is closed by the Application."""

    # -- objects --------------------------------------------------------------------

    async def _object(self, request: Request, key: str, name: str) -> Response:
        if self.cache is not None:
            from ferryman.cache.health import CacheDeclined

            try:
                cached = await self.cache.lookup(key)
            except CacheDeclined:
                pass  # answered from the store, as without a cache
            else:
                return await self._cached_after_lookup(request, cached, name)
        info = await self.store.stat(key)
        if not self._digest_known(info):
            await self._learn_digest(info)
        rep = self._rep(info, name)
        if rep.vary:
            source = _StoreSource(self.store, info)
            coded = self._coded(request, rep, name, source)
            if coded is not None:
                return coded if isinstance(coded, Response) else await coded
        plan = plan_response(request, rep, max_ranges=self.max_ranges)
        if plan.status == 304 or request.method == "HEAD":
            return _without_body(plan)
        stream = read_spans(self.store, key, info.etag, _spans(plan))
        first = await first_chunk(stream)
        return Response(
            plan.status, plan.headers, Body(stream=prepend(first, stream), length=plan.length)
        )

    # -- Repr-Digest from a catalog across the network (app/digestindex.py) -------------

    def _digest_known(self, info: ObjectInfo) -> bool:
        """Whether `_rep` can say the object's digest without a catalog round trip."""
        digests = self.digests
        if info.sha256 or digests is None or not digests.threaded:
            return True
        return digests.object_known(info.key, info.etag, info.size)

    async def _learn_digest(self, info: ObjectInfo) -> None:
        if self.digests is not None:
            await self.digests.learn_object(info.key, info.etag, info.size)

    async def _cached_after_lookup(
        self, request: Request, cached: CachedObject, name: str
    ) -> Response:
        if not self._digest_known(cached.info):
            try:
                await self._learn_digest(cached.info)
            except BaseException:
                cached.close()
                raise
        answer = self._cached_response(request, cached, name)
        return answer if isinstance(answer, Response) else await _translated(answer)

    def _cached_response(
        self, request: Request, cached: CachedObject, name: str
    ) -> Response | Awaitable[Response]:
        """The answer from a cached version; its body (or this) releases the entry."""
        try:
            rep = self._rep(cached.info, name)
            if rep.vary:  # its answers vary with Accept-Encoding: none is kept in memory
                coded = self._coded(request, rep, name, _CachedSource(self.store, cached))
                if coded is not None:
                    return coded
            elif SmallBodyCache.applies_to(request.method, request.headers):
                memory = cached.whole_in_memory()
                if memory is not None:
                    return self._from_memory(request, cached, rep, memory)
            plan = plan_response(request, rep, max_ranges=self.max_ranges)
            if plan.status == 304 or request.method == "HEAD":
                cached.close()
                return _without_body(plan)
            fallback = partial(read_spans, self.store, cached.info.key, cached.info.etag)
            return Response(
                plan.status, plan.headers, cached.body(_spans(plan), fallback), plan.head_block
            )
        except BaseException:
            cached.close()
            raise

    def _from_memory(
        self, request: Request, cached: CachedObject, rep: Representation, data: bytes
    ) -> Response:
        """A plain GET or HEAD of a small object whose bytes are in memory: its 200, kept
        for the next request of the same path while that version is current."""
        if self.answers is not None:
            self.answers.store(request, cached.still_current(), rep, data)
        cached.close()
        return Response(200, rep.whole, Body((data,)), rep.whole_block())

    def _rep(self, info: ObjectInfo, name: str) -> Representation:
        if info.sha256:
            digest: str | None = format_repr_digest(bytes.fromhex(info.sha256))
        elif self.digests is not None:
            digest = self.digests.object_digest(info.key, info.etag, info.size)
        else:
            digest = None
        return Representation(
            size=info.size,
            etag=info.etag,
            last_modified=info.last_modified,
            name=name,
            cache_control=self.cache_control,
            digest=digest,
            vary=self.compression is not None and self.compression.negotiates(content_type(name)),
        )

    def _coded(
        self, request: Request, rep: Representation, name: str, source: Source
    ) -> Response | Awaitable[Response] | None:
        """The object coded on the fly when negotiation says so (app/compression.py); None
        for identity (then `source` is untouched). Raises before taking `source`."""
        compression = self.compression
        assert compression is not None
        coding = next(compression.choices(request, rep, sidecars=False)).coding
        if coding is None:
            return None
        return compression.on_the_fly(request, compression.coded(rep, coding, name), coding, source)

    # -- directories --------------------------------------------------------------------

    async def _directory(self, request: Request, path: RequestPath, key: str) -> Response:
        prefix = key + "/" if key else ""
        try:
            return await self._object(request, prefix + INDEX, INDEX)
        except NotFound:
            pass
        entries: list[listing.Entry] = []
        truncated = False
        async for item in self.store.list(prefix):
            if item.name.startswith(".") or (not prefix and item.name == listing.RESERVED):
                continue  # as for local files: dot-names (and the top `-`) are never served
            if len(entries) == LISTING_LIMIT:
                truncated = True
                break
            entries.append(
                listing.Entry(item.name, item.is_dir, item.size, item.last_modified or 0)
            )
        if not entries and prefix:
            raise NotFound(f"no objects under {prefix}")
        return await listing.render(
            request, path, entries, self.browse, self.cache_control, truncated
        )


# -- bodies -------------------------------------------------------------------------------


class _StoreSource:
    """An object read from the store (pinned to its ETag), as the source of a coded answer."""

    def __init__(self, store: Store, info: ObjectInfo) -> None:
        self.store = store
        self.info = info

    async def body(self) -> Body:
        """The first bytes are awaited, so a store that fails at once gets its error status."""
        info = self.info
        spans = (Span(0, info.size),) if info.size else ()
        stream = read_spans(self.store, info.key, info.etag, spans)
        first = await first_chunk(stream)
        return Body(stream=prepend(first, stream), length=info.size)

    def release(self) -> None:
        """Nothing is held before the body is read."""


class _CachedSource:
    """A cached version as the source of a coded answer; releasing it releases the entry."""

    def __init__(self, store: Store, cached: CachedObject) -> None:
        self.store = store
        self.cached = cached

    def body(self) -> Body:
        info = self.cached.info
        spans = (Span(0, info.size),) if info.size else ()
        fallback = partial(read_spans, self.store, info.key, info.etag)
        return self.cached.body(spans, fallback)

    def release(self) -> None:
        self.cached.close()


def _spans(plan: Plan) -> Sequence[bytes | Span]:
    if plan.spans is not None:
        return plan.spans
    return (Span(0, plan.size),) if plan.size else ()


def _without_body(plan: Plan) -> Response:
    if plan.status == 304:
        return Response(304, plan.headers)
    return Response(plan.status, plan.headers, plan.declared_body())


async def _translated(pending: Awaitable[Response]) -> Response:
    """A store's failure while a coded answer is made, as its HTTP error."""
    try:
        return await pending
    except StoreError as exc:
        raise http_error(exc) from None
