"""multipart/byteranges framing for a 206 with several ranges (RFC 9110 section 14.6).

The framing is built without touching the payload: the result alternates
literal bytes (delimiters and part headers) with Span placeholders that
the caller fills from the source (for a local file, a sendfile of that region).
Its total length is known up front (multipart_length), so the response gets a
Content-Length and stays zero-copy.

Layout, per RFC 2046 section 5.1.1 and the example in RFC 9110 14.6:

    CRLF "--" boundary CRLF
    "Content-Type: " type CRLF          (omitted when the type is empty)
    "Content-Range: bytes S-E/LEN" CRLF
    CRLF
    <range bytes>
    ... once per range, then
    CRLF "--" boundary "--" CRLF

The body starts with a CRLF before the first delimiter, as nginx's does: the
multipart grammar allows it (an empty preamble), and it makes every delimiter
the same "CRLF--boundary", which is also what a parser searches for.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from ferryman.http.spans import Span

__all__ = [
    "multipart_byteranges",
    "multipart_content_type",
    "multipart_length",
    "new_boundary",
]

# RFC 2046 5.1.1: 1 to 70 bchars, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# RFC 9110 5.6.2 token: a boundary that is one needs no quotes.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than HTAB would break the part header (CR/LF inject lines).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def new_boundary() -> str:
    """A fresh random boundary: 128 bits, so it cannot plausibly occur in a payload."""
    return secrets.token_hex(16)


def multipart_content_type(boundary: str) -> str:
    """The response Content-Type, e.g. 'multipart/byteranges; boundary=3d6b6a41...'."""
    _check_boundary(boundary)
    value = boundary if _plain(boundary) or _TOKEN.fullmatch(boundary) else f'"{boundary}"'
    return f"multipart/byteranges; boundary={value}"


def multipart_byteranges(
    ranges: Sequence[Span], length: int, content_type: str, boundary: str
) -> list[bytes | Span]:
    """The body framing: one literal per delimiter and headers, Spans where data goes.

    `length` is the whole representation's length, `content_type` its type
    (repeated in each part). Raises ValueError for no ranges, an empty range,
    a range past `length`, a bad boundary or a content type with control characters.
    """
    _check_boundary(boundary)
    if not ranges:
        raise ValueError("multipart/byteranges needs at least one range")
    # Printable text holds no control character; anything else is searched.
    if not content_type.isprintable() and _CONTROL.search(content_type):
        raise ValueError(f"control character in content type {content_type!r}")
    # Each part's delimiter and headers form one literal, and every literal sits
    # between two ranges (or ends the body), so no two literals are ever adjacent.
    parts: list[bytes | Span] = []
    for span in ranges:
        if not span.within(length):
            raise ValueError(f"range {span} outside a representation of {length} bytes")
        parts.append(_part_header(span, length, content_type, boundary))
        parts.append(span)
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return parts


def multipart_length(parts: Sequence[bytes | Span]) -> int:
    """Total body length of a framing: the literal bytes plus every range's bytes."""
    return sum(len(part) if isinstance(part, bytes) else part.length for part in parts)


def _part_header(span: Span, length: int, content_type: str, boundary: str) -> bytes:
    lines = [f"\r\n--{boundary}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Range: {span.content_range(length)}")
    # Header values are Latin-1 on the wire; anything beyond it raises (a ValueError).
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _plain(boundary: str) -> bool:
    """1 to 70 ASCII letters and digits, as new_boundary makes them: a valid boundary and
    a token, known without a regular expression (every answer's boundary is one)."""
    return 0 < len(boundary) <= 70 and boundary.isascii() and boundary.isalnum()


def _check_boundary(boundary: str) -> None:
    if _plain(boundary):
        return
    if _BOUNDARY.fullmatch(boundary) is None:
        raise ValueError(f"invalid multipart boundary {boundary!r}")
