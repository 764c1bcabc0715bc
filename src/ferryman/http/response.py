"""Responses: what a handler returns, and how its head is framed on the wire.

`frame_head` makes the framing decisions of RFC 9112 section 6 in one place:
Content-Length when the body length is known, chunked for an unknown length
on HTTP/1.1, close-delimited on HTTP/1.0, no body for HEAD, 1xx, 204 and 304,
and whether the connection stays open.
"""

from __future__ import annotations

from http import HTTPStatus
from json.encoder import encode_basestring_ascii

from ferryman.http.body import EMPTY, Body
from ferryman.http.errorpage import CONTENT_SECURITY_POLICY as ERROR_PAGE_POLICY
from ferryman.http.errorpage import error_page

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
REASONS.update(
    {413: b"Content Too Large", 416: b"Range Not Satisfiable", 422: b"Unprocessable Content"}
)  # RFC 9110 names
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()
}

Headers = list[tuple[str, str]]


class Response:
    """Status, headers (without framing headers) and a body description.

    `head_block` may carry `headers` already encoded ("Name: value\r\n" each),
    for responses built from a cache; frame_head then uses it as it is.
    """

    __slots__ = ("body", "head_block", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Headers | None = None,
        body: Body = EMPTY,
        head_block: bytes | None = None,
    ) -> None:
        self.status = status
        self.headers: Headers = headers if headers is not None else []
        self.body = body
        self.head_block = head_block

    def __repr__(self) -> str:
        return f"<Response {self.status} length={self.body.length}>"


def encode_headers(headers: Headers) -> bytes:
    """`Name: value\r\n` lines; refuses CR or LF inside a name or value (injection)."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise ValueError("header injection: CR or LF inside a header field")
    return text.encode("latin-1")


def has_no_body(status: int, method: str) -> bool:
    """RFC 9112 6.3: these responses never carry content."""
    return method == "HEAD" or status < 200 or status in (204, 304)


class Framing:
    """The outcome of framing a response head."""

    __slots__ = ("chunked", "head", "keep_alive", "send_body")

    def __init__(self, head: bytes, keep_alive: bool, chunked: bool, send_body: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.send_body = send_body


def frame_head(
    response: Response,
    *,
    method: str,
    http11: bool,
    keep_alive: bool,
    date: bytes,
    extra: bytes = b"",
) -> Framing:
    """Render the status line and headers, adding Date, framing and Connection.

    `date` is the whole `Date: ...\r\n` line (the caller formats it once a second);
    `extra`, lines every answer of the connection carries (its X-Request-Id), put
    after the response's own: a kept head block is joined, never changed.
    """
    status = response.status
    length = response.body.length
    send_body = not has_no_body(status, method)
    chunked = False
    block = response.head_block
    if block is None:
        block = encode_headers(response.headers)
    head = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status, block, extra, date]
    if status >= 200 and status != 204:
        if length is not None:
            if status != 304:
                head.append(b"Content-Length: %d\r\n" % length)
        elif http11:
            if send_body:
                chunked = True
                head.append(b"Transfer-Encoding: chunked\r\n")
        elif send_body:
            keep_alive = False  # HTTP/1.0 with unknown length: the close ends the body
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    elif not http11:
        head.append(b"Connection: keep-alive\r\n")
    head.append(b"\r\n")
    return Framing(b"".join(head), keep_alive, chunked, send_body)


def wants_json(accept: str | None) -> bool:
    """Browsers ask for HTML and get plain text; everyone else gets JSON."""
    if not accept:
        return True
    accept = accept.lower()
    if "application/json" in accept:
        return True
    return "text/html" not in accept and "text/plain" not in accept


# Error answers, kept encoded by what they say: a flood of 404s, 400s or 405s frames one
# kept head block each instead of encoding the same headers again. Bounded: the key
# holds a detail that may name a request's path, so the table is emptied when full.
MAX_KEPT_ERRORS = 128
_kept_errors: dict[tuple[object, ...], tuple[Headers, bytes, bytes]] = {}


def error_response(
    status: int,
    error: str,
    detail: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    *,
    accept: str | None = None,
) -> Response:
    """An error answer: JSON for API clients, a small HTML page for browsers (errorpage.py),
    plain text for clients that ask for text."""
    kind = _error_kind(accept)
    key = (status, error, detail, headers, kind)
    kept = _kept_errors.get(key)
    if kept is None:
        all_headers, payload = _error_parts(status, error, detail, headers, kind)
        try:
            block = encode_headers(all_headers)
        except ValueError:  # a header holding CR or LF: frame_head refuses it, as ever
            return Response(status, all_headers, Body((payload,)))
        if len(_kept_errors) >= MAX_KEPT_ERRORS:
            _kept_errors.clear()
        kept = _kept_errors[key] = (all_headers, payload, block)
    all_headers, payload, block = kept
    return Response(status, all_headers, Body((payload,)), block)


_JSON, _HTML, _TEXT = 0, 1, 2


def _error_kind(accept: str | None) -> int:
    if wants_json(accept):
        return _JSON
    return _HTML if "text/html" in (accept or "").lower() else _TEXT


def _error_parts(status: int, error: str, detail: str, headers: tuple[tuple[str, str], ...],
                 kind: int) -> tuple[Headers, bytes]:  # fmt: skip
    """The headers and body of an error answer of this kind."""
    extra: Headers = []
    if kind == _JSON:
        # What json.dumps gives for these two strings, without its encoder's machinery.
        payload = b'{"error": %s, "detail": %s}\n' % (
            encode_basestring_ascii(error).encode("ascii"),
            encode_basestring_ascii(detail).encode("ascii"),
        )
        content_type = "application/json"
    elif kind == _HTML:
        reason = REASONS.get(status, b"Error").decode("ascii")
        payload = error_page(status, reason, detail)
        content_type = "text/html; charset=utf-8"
        extra = [("Content-Security-Policy", ERROR_PAGE_POLICY)]
    else:
        reason = REASONS.get(status, b"Error").decode("ascii")
        text = f"{status} {reason}\n{detail}\n" if detail else f"{status} {reason}\n"
        payload = text.encode("utf-8")
        content_type = "text/plain; charset=utf-8"
    all_headers: Headers = [("Content-Type", content_type), ("Cache-Control", "no-store")]
    all_headers.extend(extra)
    all_headers.extend(headers)
    return all_headers, payload
