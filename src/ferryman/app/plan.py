"""Deciding an answer about one representation: preconditions, Range, headers.

No I/O: every source with a known size and validators (local files, members
of archives, stored objects) describes itself as a `Representation`, and
`plan_response` says what to send. A local file keeps its Representation
beside its open descriptor (app/openfiles.py), and an archive member with
the index of its archive's version (app/archive.py), so a request for a
range of either pays for the range only (docs/performance.md). Stored
objects still make theirs per request; a plain GET of a small one is
answered from memory (app/bodycache.py) without it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from ferryman.app.mime import content_type
from ferryman.errors import HttpError
from ferryman.http.body import EMPTY, Body, FileRegion
from ferryman.http.conditional import (
    Outcome,
    Validators,
    evaluate_preconditions,
    if_range_matches,
)
from ferryman.http.dates import format_http_date
from ferryman.http.multipart import multipart_byteranges, multipart_content_type, new_boundary
from ferryman.http.parser import Request
from ferryman.http.ranges import RangeKind, evaluate_range, unsatisfied_content_range
from ferryman.http.response import Headers, Response, encode_headers
from ferryman.http.spans import Span

format_date = lru_cache(maxsize=4096)(format_http_date)


class Representation:
    """One version of a file or stored object, as every answer about it describes it.

    The header lists are shared by the plans made from it: a plan copies them
    before adding to them, and nothing changes a Response's headers later.
    A compressible one (`vary`) says `Vary: Accept-Encoding` in every answer,
    coded or not; a coded one (`coding`) names its Content-Encoding, and one
    made on the fly (`ranges` False) does not offer byte ranges
    (decisions/0031). `variants` keeps the coded representations made from
    this one, by coding (app/compression.py).
    """

    __slots__ = (
        "_not_modified_block",
        "_whole_block",
        "content_type",
        "digest",
        "not_modified_headers",
        "ranged",
        "size",
        "validators",
        "variants",
        "vary",
        "whole",
    )

    def __init__(
        self,
        *,
        size: int,
        etag: str,
        last_modified: int,
        name: str,
        cache_control: str | None,
        digest: str | None = None,
        vary: bool = False,
        coding: str | None = None,
        ranges: bool = True,
    ) -> None:
        self.size = size
        self.digest = digest  # the Repr-Digest value, when known
        self.validators = Validators(etag=etag, last_modified=last_modified)
        self.content_type = content_type(name)
        self.vary = vary
        self.variants: dict[str, Representation] | None = None
        # What a 304 repeats (RFC 9110 15.4.5): validators, digest, caching, Vary.
        headers: Headers = [("ETag", etag), ("Last-Modified", format_date(last_modified))]
        if digest is not None:
            headers.append(("Repr-Digest", digest))
        if cache_control:
            headers.append(("Cache-Control", cache_control))
        if vary:
            headers.append(("Vary", "Accept-Encoding"))
        self.not_modified_headers = headers
        self._not_modified_block: bytes | None = None  # encoded at the first 304
        # then a Content-Type
        self.ranged: Headers = [*headers, ("Accept-Ranges", "bytes")] if ranges else headers
        # A 200, and a 206 of one range before its Content-Range.
        self.whole: Headers = [*self.ranged, ("Content-Type", self.content_type)]
        if coding is not None:
            self.whole.append(("Content-Encoding", coding))
        self._whole_block: bytes | None = None  # encoded at the first 200 or 206

    def whole_block(self) -> bytes | None:
        """`whole` encoded, once for every answer made from this version; None when
        a value holds CR or LF (frame_head then refuses the headers, as ever)."""
        block = self._whole_block
        if block is None:
            try:
                block = encode_headers(self.whole)
            except ValueError:
                block = b""
            self._whole_block = block
        return block or None

    def not_modified(self) -> Response:
        """The 304 of this version, its head encoded once and kept with it: a client
        revalidating a file costs what one asking for it from memory does."""
        block = self._not_modified_block
        if block is None:
            try:
                block = self._not_modified_block = encode_headers(self.not_modified_headers)
            except ValueError:  # CR or LF in a value: frame_head refuses it, as ever
                return Response(304, list(self.not_modified_headers))
        return Response(304, self.not_modified_headers, EMPTY, block)


class Plan:
    """A decided response: status, headers, and which bytes of the representation go out.

    Any source with a known size and validators gets the same answer: local
    files (offset 0 of their descriptor), members of a .tar (the member's
    offset in the archive), extracted members (a spool file). A plain class
    and no Span for a whole body: it is made once per request on the hot
    path.
    """

    __slots__ = ("head_block", "headers", "size", "spans", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        spans: tuple[bytes | Span, ...] | None = None,
        size: int = 0,
        head_block: bytes | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.head_block = head_block  # `headers` encoded, when known (Response.head_block)
        self.spans = spans  # literals and ranges in body order; None: all `size` bytes
        self.size = size

    @property
    def length(self) -> int:
        if self.spans is None:
            return self.size
        return sum(s.length if isinstance(s, Span) else len(s) for s in self.spans)

    def window(self) -> Span | None:
        """From the first byte the body needs to the last, or None for no bytes."""
        if self.spans is None:
            return Span(0, self.size) if self.size else None
        ranges = [s for s in self.spans if isinstance(s, Span)]
        if not ranges:
            return None
        return Span(min(r.start for r in ranges), max(r.end for r in ranges))

    def body(self, fd: int, base: int, cleanup: Callable[[], None] | None) -> Body:
        """The body with representation byte `n` at offset `base + n` of `fd`."""
        if self.spans is None:
            return Body((FileRegion(fd, base, self.size),), cleanup=cleanup)
        parts = [
            FileRegion(fd, base + s.start, s.length) if isinstance(s, Span) else s
            for s in self.spans
        ]
        return Body(parts, cleanup=cleanup)

    def declared_body(self) -> Body:
        """For HEAD: the length only; frame_head never reads parts when no body is sent."""
        body = Body()
        body.length = self.length
        return body


def plan_response(
    request: Request, rep: Representation, *, max_ranges: int, ranges: bool = True
) -> Plan:
    """Preconditions (RFC 9110 13.2.2), Range and If-Range (unless `ranges` is False: the
    whole body, as for a representation coded on the fly), multipart.

    Raises HttpError 412 or 416; returns a 304 plan with no spans.
    """
    headers = request.headers
    validators = rep.validators
    outcome = evaluate_preconditions(
        request.method,
        if_match=headers.get("if-match"),
        if_none_match=headers.get("if-none-match"),
        if_modified_since=headers.get("if-modified-since"),
        if_unmodified_since=headers.get("if-unmodified-since"),
        validators=validators,
    )
    if outcome is Outcome.NOT_MODIFIED:
        return Plan(304, list(rep.not_modified_headers))
    if outcome is Outcome.PRECONDITION_FAILED:
        raise HttpError(412, "precondition_failed", "a precondition did not hold")
    size = rep.size
    range_header = headers.get("range") if ranges else None
    if range_header is not None and not if_range_matches(headers.get("if-range"), validators):
        range_header = None
    decision = evaluate_range(range_header, size, max_ranges=max_ranges)
    if decision.kind is RangeKind.UNSATISFIABLE:
        raise HttpError(
            416,
            "range_not_satisfiable",
            f"no requested range lies within the {size} bytes",
            headers=(("Content-Range", unsatisfied_content_range(size)),),
        )
    if decision.kind is RangeKind.FULL:
        return Plan(200, list(rep.whole), size=size, head_block=rep.whole_block())
    if len(decision.ranges) == 1:
        r = decision.ranges[0]
        content_range = r.content_range(size)
        block = rep.whole_block()
        if block is not None:  # the kept block and one line: no headers encoded again
            block += b"Content-Range: " + content_range.encode("ascii") + b"\r\n"
        return Plan(206, [*rep.whole, ("Content-Range", content_range)], (r,), head_block=block)
    boundary = new_boundary()
    spans = tuple(multipart_byteranges(decision.ranges, size, rep.content_type, boundary))
    multipart = ("Content-Type", multipart_content_type(boundary))
    return Plan(206, [*rep.ranged, multipart], spans)
