"""Content negotiation of codings: which answer a request for a compressible thing gets.

Every reader (local files, archive members, a store's objects) asks the same
questions of one `Compression`, made from the settings
(decisions/0031-compression.md):

1. Is the thing compressible (app/compressible.py)? If not, nothing here
   applies: no Vary, no coding.
2. What does the client's Accept-Encoding want (http/coding.py)? Codings
   are tried by q, best first; among codings of the same q, a fresh sidecar
   (`X.zst`, `X.br`, `X.gz` beside a local file, `--precompressed`) of any
   of them first, in the server's order (zstd, br, gzip), then coding on
   the fly (`--compress`), in the same order. Identity is the answer when
   nothing wanted is there; `406` when identity is refused too.
3. On the fly, a body of at least `--compress-min-size` bytes is coded
   (smaller ones only when the client refuses identity). A `Range` that
   applies to the identity representation is answered from identity (no
   coding): a coded body made on the fly has no byte positions to offer.
   Up to `--compress-buffer` bytes are coded whole in a thread, sent with a
   Content-Length and kept in memory (`--compress-cache`, keyed by the
   coded ETag, which names the version); larger ones stream, chunked
   (app/codedstream.py).

Answers about a compressible thing carry `Vary: Accept-Encoding`, coded or
not, and each coding has its own strong ETag (the identity ETag with the
coding's name), so If-None-Match gets a 304 for the coding it names.
"""

from __future__ import annotations

import inspect
import os
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from ferryman.app.codedstream import coded_stream, coded_whole
from ferryman.app.coders import AVAILABLE, ORDER
from ferryman.app.compressible import compressible
from ferryman.app.plan import Representation, plan_response
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.body import Body, FileRegion
from ferryman.http.coding import Ranking, coded_etag, rank
from ferryman.http.conditional import if_range_matches
from ferryman.http.parser import Request
from ferryman.http.response import Response

SIDECAR_SUFFIX = {"zstd": ".zst", "br": ".br", "gzip": ".gz"}


class Source(Protocol):
    """The identity bytes of what is being answered, not yet read."""

    def body(self) -> Body | Awaitable[Body]:
        """The whole identity body; its cleanup releases the source. Once called, the
        source is the body's (or, if this raises, released)."""
        ...

    def release(self) -> None:
        """The body is not needed after all (a 304, a HEAD, an answer from memory)."""
        ...


class Choice:
    """One way to answer: a coding from a sidecar, a coding on the fly, or identity."""

    __slots__ = ("coding", "sidecar")

    def __init__(self, coding: str | None, sidecar: bool = False) -> None:
        self.coding = coding  # None: identity
        self.sidecar = sidecar


IDENTITY = Choice(None)


class CodedBodies:
    """Coded bodies kept in memory by coded ETag (which names the version); LRU, bounded."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, etag: str) -> bytes | None:
        data = self._bodies.get(etag)
        if data is not None:
            self._bodies.move_to_end(etag)
        return data

    def put(self, etag: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 8 or etag in self._bodies:
            return
        while self._bodies and self._bytes + len(data) > self.max_bytes:
            _, dropped = self._bodies.popitem(last=False)
            self._bytes -= len(dropped)
        self._bodies[etag] = data
        self._bytes += len(data)


class Compression:
    """What the server does with codings; made once per worker from the settings."""

    @classmethod
    def of(cls, config: Config) -> Compression | None:
        """None when no coding is offered at all (`--compress none --precompressed none`)."""
        made = cls(config)
        return made if made.offered else None

    def __init__(self, config: Config) -> None:
        self.fly = tuple(c for c in ORDER if c in config.compress and c in AVAILABLE)
        self.sidecars = tuple(c for c in ORDER if c in config.precompressed)
        self.offered = tuple(c for c in ORDER if c in self.fly or c in self.sidecars)
        self.min_size = config.compress_min_size
        self.buffer = config.compress_buffer
        self.cache_control = config.cache_control
        self.memory = CodedBodies(config.compress_cache) if config.compress_cache else None

    @staticmethod
    def negotiates(content_type: str) -> bool:
        return compressible(content_type)

    # -- deciding -----------------------------------------------------------------------

    def choices(self, request: Request, rep: Representation, *, sidecars: bool) -> Iterator[Choice]:
        """The answers to try, best first; the caller takes the first that exists (a
        sidecar may be missing or stale; on the fly always exists). Ends with identity, or
        raises 406 when the client refuses identity and nothing else is left."""
        ranking = rank(request.headers.get("accept-encoding"), self.offered)
        small = rep.size < self.min_size and ranking.identity
        ranged = ranking.identity and _range_applies(request, rep)
        for level in _levels(ranking):
            if sidecars:
                for coding in level:
                    if coding in self.sidecars:
                        yield Choice(coding, sidecar=True)
            if small or ranged:
                continue
            for coding in level:
                if coding in self.fly:
                    yield Choice(coding)
        if not ranking.identity:
            raise HttpError(
                406,
                "not_acceptable",
                "no content coding the client accepts is available, and it refuses identity",
                (("Vary", "Accept-Encoding"),),
            )
        yield IDENTITY

    # -- answering on the fly ------------------------------------------------------------

    def coded(self, rep: Representation, coding: str, name: str) -> Representation:
        """`rep` coded on the fly with `coding`: made once per version, kept beside it."""
        variants = rep.variants
        if variants is None:
            variants = rep.variants = {}
        coded = variants.get(coding)
        if coded is None:
            etag, last_modified = rep.validators.etag, rep.validators.last_modified
            assert etag is not None and last_modified is not None  # every Representation's
            coded = variants[coding] = Representation(
                size=rep.size,
                etag=coded_etag(etag, coding),
                last_modified=last_modified,
                name=name,
                cache_control=self.cache_control,
                vary=True,
                coding=coding,
                ranges=False,
            )
        return coded

    def on_the_fly(
        self, request: Request, coded: Representation, coding: str, source: Source
    ) -> Response | Awaitable[Response]:
        """The answer coded on the fly. Raises (412) before taking `source`; once it
        returns, `source` is released or belongs to the answer."""
        plan = plan_response(request, coded, max_ranges=1, ranges=False)
        if plan.status == 304:
            source.release()
            return Response(304, plan.headers)
        etag = coded.validators.etag
        assert etag is not None
        kept = self.memory.get(etag) if self.memory is not None else None
        if kept is not None:
            source.release()
            return Response(200, plan.headers, Body((kept,)))
        if request.method == "HEAD":  # the coded length is not known without coding it
            source.release()
            body = Body()
            body.length = None
            return Response(200, plan.headers, body)
        if coded.size <= self.buffer:
            return self._whole(plan.headers, etag, coding, source)
        return self._streamed(plan.headers, coding, source)

    async def _whole(
        self, headers: list[tuple[str, str]], etag: str, coding: str, source: Source
    ) -> Response:
        body = await _body_of(source)
        try:
            data = await coded_whole(body, coding)
        finally:
            body.release()
        if self.memory is not None:
            self.memory.put(etag, data)
        return Response(200, headers, Body((data,)))

    def _streamed(
        self, headers: list[tuple[str, str]], coding: str, source: Source
    ) -> Response | Awaitable[Response]:
        taken = source.body()
        if inspect.isawaitable(taken):
            return self._streamed_later(headers, coding, taken)
        return _streaming(headers, coding, taken)

    async def _streamed_later(
        self, headers: list[tuple[str, str]], coding: str, taken: Awaitable[Body]
    ) -> Response:
        return _streaming(headers, coding, await taken)

    # -- sidecars -------------------------------------------------------------------------

    def sidecar_rep(
        self, coding: str, st_etag: str, mtime: int, size: int, name: str
    ) -> Representation:
        """A precompressed file's representation: its own bytes, X's type, the coding."""
        return Representation(
            size=size,
            etag=coded_etag(st_etag, coding),
            last_modified=mtime,
            name=name,
            cache_control=self.cache_control,
            vary=True,
            coding=coding,
        )


def _streaming(headers: list[tuple[str, str]], coding: str, source: Body) -> Response:
    return Response(
        200, headers, Body(stream=coded_stream(source, coding), length=None, cleanup=source.release)
    )


async def _body_of(source: Source) -> Body:
    taken = source.body()
    if inspect.isawaitable(taken):
        return await taken
    return taken


def _levels(ranking: Ranking) -> Iterator[tuple[str, ...]]:
    """The ranked codings in groups of equal q, best first."""
    group: list[str] = []
    last = -1.0
    for coding, q in ranking.codings:
        if group and q != last:
            yield tuple(group)
            group = []
        group.append(coding)
        last = q
    if group:
        yield tuple(group)


def _range_applies(request: Request, rep: Representation) -> bool:
    """The request has a Range that the identity representation would honour (no If-Range,
    or one that matches it)."""
    headers = request.headers
    if "range" not in headers:
        return False
    return if_range_matches(headers.get("if-range"), rep.validators)


def fresh_sidecar(sidecar: os.stat_result, original: os.stat_result) -> bool:
    """A sidecar is used only as a regular file not older than the file it codes."""
    return stat.S_ISREG(sidecar.st_mode) and sidecar.st_mtime_ns >= original.st_mtime_ns


class FileSource:
    """A local file (or a region of one) as the source of a coded answer."""

    __slots__ = ("_count", "_fd", "_offset", "_release")

    def __init__(self, fd: int, offset: int, count: int, release: Callable[[], None]) -> None:
        self._fd = fd
        self._offset = offset
        self._count = count
        self._release = release

    def body(self) -> Body:
        return Body((FileRegion(self._fd, self._offset, self._count),), cleanup=self._release)

    def release(self) -> None:
        self._release()
