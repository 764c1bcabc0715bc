"""The request parser: every case fed whole, byte by byte, and with trailing bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.errors import ProtocolError
from ferryman.http.parser import END_OF_MESSAGE, NEED_DATA, Data, Limits, Request, RequestParser
from tests.fuzz.targets import check_one_input

CORPUS = Path(__file__).parent.parent / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.http"))
INVALID = sorted((CORPUS / "invalid").glob("*.http"))


def feed(data: bytes, step: int | None = None, limits: Limits | None = None) -> list[object]:
    """All events from `data`, fed whole (step None) or in pieces of `step` bytes."""
    parser = RequestParser(limits)
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    events: list[object] = []
    for chunk in chunks:
        parser.receive(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            events.append(event.data if isinstance(event, Data) else event)
    return events


def summary(events: list[object]) -> list[object]:
    """Events with body pieces joined, so splits that cut a body compare equal."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Request):
            out.append((event.method, event.path, event.query, event.http11, event.keep_alive,
                        sorted(event.headers.items())))  # fmt: skip
        elif isinstance(event, bytes):
            if out and isinstance(out[-1], bytes):
                out[-1] += event
            else:
                out.append(event)
        else:
            out.append(event)
    return out


SPLITS = [None, 1, 2, 3, 7, 64]


def test_corpus_is_present() -> None:
    assert len(VALID) >= 5 and len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_requests_parse_the_same_however_split(path: Path) -> None:
    data = path.read_bytes()
    expected = summary(feed(data))
    assert any(isinstance(e, tuple) for e in expected), "no request parsed"
    for step in SPLITS[1:]:
        assert summary(feed(data, step)) == expected, f"split every {step} bytes"
    # Trailing bytes of a next request never change what was parsed before them.
    trailing = summary(feed(data + b"GET /next HTTP/1.1\r\nHo"))
    assert trailing == expected


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_requests_fail_with_the_expected_status(path: Path) -> None:
    data = path.read_bytes()
    status = int(path.name.split("-", 1)[0])
    for step in SPLITS:
        with pytest.raises(ProtocolError) as info:
            events = feed(data + b"\r\n\r\n" * 2, step)  # enough bytes to reach the error
            pytest.fail(f"parsed {events!r}")
        assert info.value.status == status, f"split {step}: {info.value}"


def test_pipelined_requests_with_bodies_stay_framed() -> None:
    data = (
        b"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    for step in SPLITS:
        events = summary(feed(data, step))
        assert [e[1] if isinstance(e, tuple) else e for e in events] == [
            b"/a", b"hello", END_OF_MESSAGE,
            b"/b", b"abc0123456789abcdef", END_OF_MESSAGE,
            b"/c",
        ]  # fmt: skip


def test_request_fields() -> None:
    (request,) = feed(
        b"\r\n\r\nGET http://example.com/a%20b/c?x=1&y HTTP/1.1\r\n"
        b"Host: example.com\r\nAccept: a\r\naccept: b\r\nConnection: close\r\n\r\n"
    )
    assert isinstance(request, Request)
    assert (request.method, request.path, request.query) == ("GET", b"/a%20b/c", b"x=1&y")
    assert request.headers["accept"] == "a, b"
    assert request.http11 and not request.keep_alive and not request.has_body


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_keep_alive(head: bytes, keep_alive: bool) -> None:
    (request,) = feed(head)
    assert isinstance(request, Request) and request.keep_alive is keep_alive


def test_limits_are_exact() -> None:
    limits = Limits(max_request_line=40, max_header_count=3, max_header_bytes=60)
    line = b"GET /" + b"a" * (40 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 40
    assert feed(line + b"\r\nHost: h\r\n\r\n", limits=limits)
    with pytest.raises(ProtocolError) as info:
        feed(b"GET /a" + line[5:] + b"\r\nHost: h\r\n\r\n", limits=limits)
    assert info.value.status == 414
    three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"
    assert feed(three, limits=limits)
    with pytest.raises(ProtocolError) as info:
        feed(three.replace(b"\r\n\r\n", b"\r\nC: 3\r\n\r\n"), limits=limits)
    assert info.value.status == 431
    with pytest.raises(ProtocolError) as info:
        feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 60 + b"\r\n\r\n", limits=limits)
    assert info.value.status == 431


def test_oversized_intake_fails_before_it_is_buffered() -> None:
    """A head that never ends is refused as soon as it passes the limit."""
    parser = RequestParser(Limits(max_request_line=100, max_header_bytes=1000))
    parser.receive(b"GET / HTTP/1.1\r\nHost: h\r\n")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.receive(b"X-Filler: " + b"y" * 50 + b"\r\n")
            assert parser.next_event() is NEED_DATA
    assert info.value.status == 431
    assert parser.buffered < 2000


def test_a_failed_parser_stays_failed() -> None:
    parser = RequestParser()
    parser.receive(b"GET / HTTP/1.1\r\n\r\n")  # no Host
    with pytest.raises(ProtocolError):
        parser.next_event()
    parser.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    with pytest.raises(ProtocolError):
        parser.next_event()


@pytest.mark.parametrize(
    "chunked",
    [b"zz\r\n", b"-1\r\n", b"1" * 17 + b"\r\n", b"3\r\nabcX\r\n", b"\r\n", b"0x3\r\nabc\r\n"],
)
def test_bad_chunks_are_400(chunked: bytes) -> None:
    head = b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        feed(head + chunked + b"0\r\n\r\n")
    assert info.value.status == 400


def test_mid_request_tracks_a_started_head() -> None:
    parser = RequestParser()
    assert not parser.mid_request
    parser.receive(b"GE")
    assert parser.next_event() is NEED_DATA and parser.mid_request
    parser.receive(b"T / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert not parser.mid_request


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_fuzz_random_bytes(data: bytes, splits: list[int]) -> None:
    check_one_input(data, splits)


_TOKENS = [
    b"GET ", b"PUT ", b"HEAD ", b"/", b"/a", b"?q", b" HTTP/1.1", b" HTTP/1.0", b"\r\n", b"\n",
    b"Host: h", b"Content-Length: 3", b"Content-Length: -1", b"Transfer-Encoding: chunked",
    b"3\r\nabc\r\n", b"0\r\n\r\n", b": ", b" ", b"\t", b"\x00", b"abc", b"Connection: close",
    b"Expect: 100-continue", b"\r\n\r\n",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30), st.lists(st.integers(0, 300), max_size=4))
def test_fuzz_request_shaped_bytes(tokens: list[bytes], splits: list[int]) -> None:
    check_one_input(b"".join(tokens), splits)


class _Heads:
    """What llhttp itself says of a head: its version, or None if it refuses the head."""

    def __init__(self) -> None:
        self.version: str | None = None

    def on_headers_complete(self) -> None:
        self.version = self.parser.get_http_version()

    def of(self, head: bytes) -> str | None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.feed_data(head)
        except httptools.HttpParserError:
            return None
        return self.version


VERSION_WORD = st.builds(
    lambda prefix, major, dot, minor, tail: prefix + major + dot + minor + tail,
    st.sampled_from([b"HTTP/", b"http/", b"HTTP", b"HTTPS/", b""]),
    st.sampled_from([b"0", b"1", b"2", b"9", b"01", b"", b"x"]),
    st.sampled_from([b".", b"", b","]),
    st.sampled_from([b"0", b"1", b"9", b"11", b""]),
    st.sampled_from([b"", b" ", b"\t", b"  ", b"x"]),
)


@settings(max_examples=400)
@given(
    VERSION_WORD,
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from([b"GET / ", b"GET  /a ", b"GET /"]),
)
def test_the_version_read_from_the_line_is_the_one_llhttp_parsed(
    word: bytes, eol: bytes, start: bytes
) -> None:
    head = start + word + eol + b"Host: x\r\n\r\n"
    llhttp_version = _Heads().of(head)
    try:
        events = feed(head)
    except ProtocolError as exc:
        # Refused: so was the head by llhttp, or its version is not one served.
        assert llhttp_version is None or llhttp_version not in ("1.0", "1.1"), head
        want = 400 if llhttp_version in (None, "0.9") else 505
        assert exc.status == want or (llhttp_version is None and exc.status in (400, 505)), head
        return
    request = events[0]
    assert isinstance(request, Request)
    assert llhttp_version in ("1.0", "1.1"), head
    assert request.http11 == (llhttp_version == "1.1"), head
