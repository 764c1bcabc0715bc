"""Plans: what to send for one representation, from its headers and the request's."""

from __future__ import annotations

import pytest

from ferryman.app.plan import Plan, Representation, plan_response
from ferryman.errors import HttpError
from ferryman.http.body import FileRegion
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Request
from ferryman.http.response import Response, frame_head
from ferryman.http.spans import Span
from tests.builders import request

MTIME = 1_700_000_000


def representation(
    size: int = 1000, *, digest: str | None = None, cache_control: str | None = None
) -> Representation:
    return Representation(size=size, etag='"e"', last_modified=MTIME, name="x.txt",
                          cache_control=cache_control, digest=digest)  # fmt: skip


def plan(req: Request, size: int = 1000) -> Plan:
    return plan_response(req, representation(size), max_ranges=100)


def test_plan_full_and_partial() -> None:
    full = plan(request())
    assert (full.status, full.window(), full.length) == (200, Span(0, 1000), 1000)
    assert full.body(7, 100, None).parts == (FileRegion(7, 100, 1000),)
    one = plan(request(headers={"Range": "bytes=-10"}))
    assert (one.status, one.spans, one.window()) == (206, (Span(990, 1000),), Span(990, 1000))
    assert ("Content-Range", "bytes 990-999/1000") in one.headers
    multi = plan(request(headers={"Range": "bytes=500-509,10-19"}))
    assert multi.status == 206 and multi.window() == Span(10, 510)
    body = multi.body(7, 100, None)
    regions = [p for p in body.parts if isinstance(p, FileRegion)]
    assert regions == [FileRegion(7, 600, 10), FileRegion(7, 110, 10)]
    assert body.length == multi.length


def test_plan_empty_member_has_no_bytes() -> None:
    empty = plan(request(), size=0)
    assert (empty.status, empty.window(), empty.length) == (200, None, 0)


def test_plan_preconditions() -> None:
    assert plan(request(headers={"If-None-Match": '"e"'})).status == 304
    assert plan(request(headers={"Range": "bytes=0-9", "If-Range": '"other"'})).status == 200
    with pytest.raises(HttpError) as failed:
        plan(request(headers={"If-Match": '"other"'}))
    assert failed.value.status == 412
    with pytest.raises(HttpError) as unsatisfiable:
        plan(request(headers={"Range": "bytes=1000-"}))
    assert unsatisfiable.value.status == 416


def test_head_body_declares_the_length_without_bytes() -> None:
    body = plan(request("HEAD", headers={"Range": "bytes=0-9,20-29"})).declared_body()
    assert body.parts == () and body.cleanup is None
    assert body.length == plan(request(headers={"Range": "bytes=0-9,20-29"})).length


def test_headers_of_each_kind_of_answer() -> None:
    rep = representation(digest="sha-256=:AA==:", cache_control="max-age=60")
    validators = [
        ("ETag", '"e"'),
        ("Last-Modified", format_http_date(MTIME)),
        ("Repr-Digest", "sha-256=:AA==:"),
        ("Cache-Control", "max-age=60"),
    ]
    ranged = [*validators, ("Accept-Ranges", "bytes")]
    assert (
        plan_response(request(headers={"If-None-Match": '"e"'}), rep, max_ranges=100).headers
        == validators
    )
    assert plan_response(request(), rep, max_ranges=100).headers == [
        *ranged,
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    assert plan_response(request(headers={"Range": "bytes=0-0"}), rep, max_ranges=100).headers == [
        *ranged,
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Range", "bytes 0-0/1000"),
    ]
    multi = plan_response(request(headers={"Range": "bytes=0-0,5-5"}), rep, max_ranges=100).headers
    assert multi[:-1] == ranged
    assert multi[-1][0] == "Content-Type"
    assert multi[-1][1].startswith("multipart/byteranges; boundary=")


def test_plans_made_from_one_representation_do_not_share_header_lists() -> None:
    rep = representation()
    first = plan_response(request(headers={"Range": "bytes=0-0"}), rep, max_ranges=100)
    first.headers.append(("X-Extra", "1"))
    for req in (
        request(),
        request(headers={"Range": "bytes=0-0"}),
        request(headers={"If-None-Match": '"e"'}),
    ):
        headers = plan_response(req, rep, max_ranges=100).headers
        assert ("X-Extra", "1") not in headers
    assert ("X-Extra", "1") not in rep.whole + rep.ranged + rep.not_modified_headers


@pytest.mark.parametrize("cache_control", [None, "max-age=60"])
@pytest.mark.parametrize("digest", [None, "sha-256=:AAAA:"])
def test_a_kept_304_frames_the_same_bytes_as_the_plan_it_stands_for(
    digest: str | None, cache_control: str | None
) -> None:
    rep = representation(digest=digest, cache_control=cache_control)
    planned = plan_response(request(headers={"If-None-Match": '"e"'}), rep, max_ranges=100)
    assert planned.status == 304

    def framed(response: Response) -> bytes:
        return frame_head(response, method="GET", http11=True, keep_alive=True,
                          date=b"Date: x\r\n").head  # fmt: skip

    first, again = rep.not_modified(), rep.not_modified()
    assert first.head_block is again.head_block is not None  # encoded once
    assert framed(first) == framed(again) == framed(Response(304, planned.headers))
    assert first.body.length == 0


def test_a_304_whose_header_cannot_be_sent_is_refused_as_ever() -> None:
    rep = representation(cache_control="max-age=60\r\nSet-Cookie: x=1")
    with pytest.raises(ValueError, match="injection"):
        frame_head(rep.not_modified(), method="GET", http11=True, keep_alive=True, date=b"")


@pytest.mark.parametrize("range_header", [None, "bytes=0-0", "bytes=-10", "bytes=990-5000"])
@pytest.mark.parametrize("digest", [None, "sha-256=:AAAA:"])
def test_a_kept_head_block_frames_the_same_bytes_as_the_headers_it_stands_for(
    range_header: str | None, digest: str | None
) -> None:
    rep = representation(digest=digest, cache_control="max-age=60")
    headers = {} if range_header is None else {"Range": range_header}
    planned = plan_response(request(headers=headers), rep, max_ranges=100)
    assert planned.status == (200 if range_header is None else 206)
    assert planned.head_block is not None

    def framed(response: Response) -> bytes:
        return frame_head(response, method="GET", http11=True, keep_alive=True,
                          date=b"Date: x\r\n").head  # fmt: skip

    with_block = Response(planned.status, planned.headers, planned.declared_body(),
                          planned.head_block)  # fmt: skip
    without = Response(planned.status, planned.headers, planned.declared_body())
    assert framed(with_block) == framed(without)
    again = plan_response(request(headers=headers), rep, max_ranges=100)
    assert rep.whole_block() is rep.whole_block()  # encoded once for the version
    assert again.head_block == planned.head_block


def test_a_head_block_whose_header_cannot_be_sent_is_not_kept() -> None:
    rep = representation(cache_control="max-age=60\r\nSet-Cookie: x=1")
    for headers in ({}, {"Range": "bytes=0-9"}):
        planned = plan_response(request(headers=headers), rep, max_ranges=100)
        assert planned.head_block is None
        with pytest.raises(ValueError, match="injection"):
            frame_head(Response(planned.status, planned.headers), method="GET", http11=True,
                       keep_alive=True, date=b"")  # fmt: skip
