"""Finding the parts of a request head in the parser's buffer, each in one call.

`find_blank_line` finds the head's end, `request_line` the request line's end
and where its version word starts (only if that word begins with "HTTP/"),
and `count_crlf` counts line ends, which bounds the header count. The
compiled twin (_headscan.c) is used when it is built: from compiled code,
each bytearray method below parses its arguments and takes a buffer view,
which made these calls about a seventh of a 1 KiB answer's instructions.
The functions below give the same answers and are used otherwise. Indices
are non-negative.
"""

from __future__ import annotations

from collections.abc import Callable

from ferryman import native

FindBlankLine = Callable[[bytearray, int], int]
RequestLine = Callable[[bytearray, int], tuple[int, int]]
CountCrlf = Callable[[bytearray, int, int], int]


def _find_blank_line_python(buf: bytearray, start: int) -> int:
    """Index of the first CRLF CRLF at or after `start`, or -1."""
    return buf.find(b"\r\n\r\n", start)


def _request_line_python(buf: bytearray, limit: int) -> tuple[int, int]:
    """(line_end, version_at): the first CRLF wholly inside buf[:limit], or (-1, 0);
    where the line's last word (the whole line if it has no space) starts when it
    begins with "HTTP/", else -1."""
    line_end = buf.find(b"\r\n", 0, limit)
    if line_end < 0:
        return -1, 0
    word = buf.rfind(b" ", 0, line_end) + 1
    return line_end, word if buf.startswith(b"HTTP/", word, line_end) else -1


def _count_crlf_python(buf: bytearray, start: int, end: int) -> int:
    """The CRLF pairs wholly inside buf[start:end]."""
    return buf.count(b"\r\n", start, end)


def _compiled() -> tuple[FindBlankLine, RequestLine, CountCrlf] | None:
    if native.STATUS != "compiled":  # FERRYMAN_PURE, or a build older than its sources
        return None
    try:
        from ferryman.http import _headscan
    except ImportError:
        return None
    return _headscan.find_blank_line, _headscan.request_line, _headscan.count_crlf


_chosen = _compiled()
find_blank_line: FindBlankLine = _chosen[0] if _chosen else _find_blank_line_python
request_line: RequestLine = _chosen[1] if _chosen else _request_line_python
count_crlf: CountCrlf = _chosen[2] if _chosen else _count_crlf_python
