"""ferryman.http.multipart: the framing, filled from a self-identifying payload, parses back."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.http import multipart
from ferryman.http.multipart import (
    multipart_byteranges,
    multipart_content_type,
    multipart_length,
    new_boundary,
)
from ferryman.http.ranges import evaluate_range
from ferryman.http.spans import Span


def pattern(length: int) -> bytes:
    """nginx range.t style payload: every 10-byte block names its own index."""
    blocks = (f"X{i:03d}XXXXXX" for i in range(length // 10 + 1))
    return "".join(blocks).encode()[:length]


def render(parts: list[bytes | Span], payload: bytes) -> bytes:
    """What the connection would send: placeholders replaced by the payload's bytes."""
    return b"".join(
        part if isinstance(part, bytes) else payload[part.start : part.end] for part in parts
    )


def parse(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """A strict little multipart parser: [(headers, content), ...]."""
    delimiter = b"\r\n--" + boundary.encode()
    pieces = body.split(delimiter)
    assert pieces[0] == b"", "nothing may precede the first delimiter's CRLF"
    assert pieces[-1] == b"--\r\n", "the body ends with the close delimiter"
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n")
        head, separator, content = piece[2:].partition(b"\r\n\r\n")
        assert separator
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(": ")
            assert name not in headers
            headers[name] = value
        parts.append((headers, content))
    return parts


def test_two_ranges_exact_bytes() -> None:
    parts = multipart_byteranges([Span(0, 10), Span(990, 1000)], 1000, "text/plain", "BOUNDARY")
    assert parts == [
        b"\r\n--BOUNDARY\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\r\n",
        Span(0, 10),
        b"\r\n--BOUNDARY\r\nContent-Type: text/plain\r\nContent-Range: bytes 990-999/1000\r\n\r\n",
        Span(990, 1000),
        b"\r\n--BOUNDARY--\r\n",
    ]
    body = render(parts, pattern(1000))
    assert body == (
        b"\r\n--BOUNDARY\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/1000\r\n\r\n"
        b"X000XXXXXX"
        b"\r\n--BOUNDARY\r\nContent-Type: text/plain\r\nContent-Range: bytes 990-999/1000\r\n\r\n"
        b"X099XXXXXX"
        b"\r\n--BOUNDARY--\r\n"
    )
    assert multipart_length(parts) == len(body)


def test_empty_content_type_omits_the_header() -> None:
    parts = multipart_byteranges([Span(1, 3)], 10, "", "b")
    assert parts[0] == b"\r\n--b\r\nContent-Range: bytes 1-2/10\r\n\r\n"


def test_content_type_header() -> None:
    assert multipart_content_type("abc123") == "multipart/byteranges; boundary=abc123"
    assert multipart_content_type("a b:c") == 'multipart/byteranges; boundary="a b:c"'


def test_new_boundary() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert multipart_content_type(first) == f"multipart/byteranges; boundary={first}"


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends with space ", "semi;colon", 'q"uote'])
def test_bad_boundary(boundary: str) -> None:
    with pytest.raises(ValueError):
        multipart_byteranges([Span(0, 1)], 1, "text/plain", boundary)
    with pytest.raises(ValueError):
        multipart_content_type(boundary)


@pytest.mark.parametrize(
    ("ranges", "length", "content_type"),
    [
        ([], 10, "text/plain"),  # a multipart body needs a part
        ([Span(0, 11)], 10, "text/plain"),  # past the end
        ([Span(10, 11)], 10, "text/plain"),  # past the end, by one byte
        ([Span(3, 3)], 10, "text/plain"),  # no bytes: no part to frame
        ([Span(0, 2)], 10, "text/plain\r\nX-Injected: 1"),
        ([Span(0, 2)], 10, "text/plain\n"),
        ([Span(0, 2)], 10, "text/\u0100"),  # not Latin-1
    ],
)
def test_rejects_bad_input(ranges: list[Span], length: int, content_type: str) -> None:
    with pytest.raises(ValueError):
        multipart_byteranges(ranges, length, content_type, "b")


def test_stdlib_email_parser_agrees() -> None:
    payload = pattern(1000)
    decision = evaluate_range("bytes=0-9,500-519,-5", 1000)
    boundary = new_boundary()
    body = render(multipart_byteranges(decision.ranges, 1000, "text/plain", boundary), payload)
    raw = f"Content-Type: {multipart_content_type(boundary)}\r\n\r\n".encode() + body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert message.get_content_type() == "multipart/byteranges"
    got = [
        (part["Content-Range"], part.get_content_type(), part.get_payload())
        for part in message.iter_parts()
    ]
    assert got == [
        ("bytes 0-9/1000", "text/plain", "X000XXXXXX"),
        ("bytes 500-519/1000", "text/plain", "X050XXXXXXX051XXXXXX"),
        ("bytes 995-999/1000", "text/plain", "XXXXX"),
    ]


boundaries = st.one_of(
    st.builds(lambda: new_boundary()),
    st.from_regex(r"[0-9A-Za-z'()+_,\-./:=? ]{0,30}[0-9A-Za-z'()+_,\-./:=?]", fullmatch=True),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, list[Span]]:
    length = draw(st.integers(1, 3000))
    pairs = draw(
        st.lists(st.tuples(st.integers(0, length - 1), st.integers(0, length - 1)), min_size=1)
    )
    return length, [Span(min(a, b), max(a, b) + 1) for a, b in pairs]


@given(requests(), st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8", ""]))
def test_framing_parses_back(request: tuple[int, list[Span]], content_type: str) -> None:
    length, ranges = request
    boundary = new_boundary()
    payload = pattern(length)
    parts = multipart_byteranges(ranges, length, content_type, boundary)

    # literals are merged: bytes and placeholders alternate, one placeholder per range
    kinds = [isinstance(part, bytes) for part in parts]
    assert kinds == [True, False] * len(ranges) + [True]
    assert [part for part in parts if isinstance(part, Span)] == ranges

    body = render(parts, payload)
    assert multipart_length(parts) == len(body)
    parsed = parse(body, boundary)
    assert len(parsed) == len(ranges)
    for (headers, content), r in zip(parsed, ranges, strict=True):
        expected_headers = {"Content-Range": f"bytes {r.start}-{r.end - 1}/{length}"}
        if content_type:
            expected_headers["Content-Type"] = content_type
        assert headers == expected_headers
        assert content == payload[r.start : r.end]


@given(boundaries, st.lists(st.integers(0, 99), min_size=1, max_size=5))
def test_any_valid_boundary_frames(boundary: str, starts: list[int]) -> None:
    ranges = [Span(s, s + 1) for s in starts]
    parts = multipart_byteranges(ranges, 100, "text/plain", boundary)
    assert multipart_content_type(boundary).startswith("multipart/byteranges; boundary=")
    assert [content for _, content in parse(render(parts, pattern(100)), boundary)] == [
        pattern(100)[s : s + 1] for s in starts
    ]


def test_public_surface() -> None:
    assert sorted(multipart.__all__) == [
        "multipart_byteranges",
        "multipart_content_type",
        "multipart_length",
        "new_boundary",
    ]


@given(st.text(max_size=80) | st.text(alphabet="0123456789abcdefXYZ", max_size=80))
def test_the_checks_without_a_regular_expression_agree_with_it(text: str) -> None:
    """A boundary of ASCII letters and digits skips the regular expressions (every
    boundary ferryman makes is one); it must be one they accept. A printable content
    type skips the search for control characters; it must hold none."""
    if multipart._plain(text):
        assert multipart._BOUNDARY.fullmatch(text) and multipart._TOKEN.fullmatch(text)
    if text.isprintable():
        assert multipart._CONTROL.search(text) is None
