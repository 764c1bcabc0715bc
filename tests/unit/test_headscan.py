"""The compiled head scan (http/_headscan.c) gives the answers of its Python twin.

The comparisons are skipped where the build is not there (no compiler); `make
test` builds it, so there both are asked about buffers made mostly of the
bytes a head is found by (CR, LF, space, "HTTP/"), with indices inside and
past the end. The cases by hand run everywhere, on the twin at least.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import native
from ferryman.http import headscan
from tests.leakcheck import growth

compiled = headscan._compiled()
needs_build = pytest.mark.skipif(compiled is None, reason=f"not compiled ({native.STATUS})")

pieces = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b" ", b"HTTP/", b"HTTP/1.1", b"GET", b"x", b"\r\n\r\n"]
)
buffers = st.lists(pieces, max_size=30).map(lambda parts: bytearray(b"".join(parts)))
indices = st.integers(0, 200)


@needs_build
@given(buffers, indices)
def test_find_blank_line(buf: bytearray, start: int) -> None:
    assert compiled is not None
    assert compiled[0](buf, start) == headscan._find_blank_line_python(buf, start)


@needs_build
@given(buffers, indices)
def test_request_line(buf: bytearray, limit: int) -> None:
    assert compiled is not None
    assert compiled[1](buf, limit) == headscan._request_line_python(buf, limit)


@needs_build
@given(buffers, indices, indices)
def test_count_crlf(buf: bytearray, start: int, end: int) -> None:
    assert compiled is not None
    assert compiled[2](buf, start, end) == headscan._count_crlf_python(buf, start, end)


def test_the_answers_a_parser_relies_on() -> None:
    """The same cases by hand, for both: a request line and its version word, the
    blank line that ends a head, the CRLFs in a span."""
    for request_line in (headscan._request_line_python, *(compiled[1:2] if compiled else ())):
        assert request_line(bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 100) == (14, 6)
        assert request_line(bytearray(b"GET /\r\n"), 100) == (5, -1)  # HTTP/0.9
        assert request_line(bytearray(b"HTTP/1.1\r\n"), 100) == (8, 0)  # no space at all
        assert request_line(bytearray(b"GET / HTTP/1.1\r\n"), 15) == (-1, 0)  # past the limit
    twins: list[tuple[headscan.FindBlankLine, headscan.CountCrlf]] = [
        (headscan._find_blank_line_python, headscan._count_crlf_python)
    ]
    if compiled is not None:
        twins.append((compiled[0], compiled[2]))
    head = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2")
    for find_blank_line, count_crlf in twins:
        assert find_blank_line(head, 0) == 23
        assert find_blank_line(head, 24) == -1  # the next head is not complete
        assert find_blank_line(bytearray(b"\r\n\r"), 0) == -1
        assert count_crlf(head, 0, len(head)) == 3
        assert count_crlf(head, 0, 15) == 0  # a CRLF cut by the end is not counted
        assert count_crlf(head, 0, 16) == 1
        assert count_crlf(head, 20, 10) == 0  # an empty span


@needs_build
def test_bad_arguments_are_refused_not_misread() -> None:
    assert compiled is not None
    find_blank_line, request_line, count_crlf = compiled
    with pytest.raises(TypeError):
        find_blank_line(b"\r\n\r\n", 0)  # type: ignore[arg-type]  # bytes, not bytearray
    with pytest.raises(ValueError):
        count_crlf(bytearray(b"\r\n"), -1, 2)
    with pytest.raises(TypeError):
        request_line(bytearray(b""))  # type: ignore[call-arg]


@needs_build
def test_no_call_leaves_memory_behind() -> None:
    """Every reference the C code takes is given back: 100,000 calls of each (a found
    head, a missing one, a refusal) leave the traced memory where it was."""
    assert compiled is not None
    find_blank_line, request_line, count_crlf = compiled
    head = bytearray(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    partial = bytearray(b"GET / HT")

    def each_kind() -> None:
        find_blank_line(head, 0)
        find_blank_line(partial, 0)
        request_line(head, 100)
        request_line(partial, 100)
        count_crlf(head, 0, len(head))
        with pytest.raises(ValueError):
            count_crlf(head, -1, 2)

    grown = growth(each_kind, __file__)
    assert grown < 64 * 1024, grown
