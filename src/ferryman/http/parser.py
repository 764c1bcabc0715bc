"""Request parsing: bytes in, events out, every intake limit enforced here.

llhttp (through httptools) validates the grammar of a request head: methods,
targets, header syntax, Content-Length versus Transfer-Encoding, bare LF,
obs-fold. It has no size limits and frames bodies and pipelined requests on
its own, so this module frames messages itself:

* the head is located by its blank line; the request-line length, header
  count and header bytes are checked *before* llhttp sees the bytes, so no
  buffer grows past a limit;
* llhttp is fed exactly one head at a time, never a body or the next request;
* bodies are framed here (Content-Length slices, a small chunked decoder).

Then the checks llhttp does not make: HTTP/0.9, versions other than 1.0/1.1,
Transfer-Encoding on HTTP/1.0 or other than `chunked`, a missing or repeated
Host on HTTP/1.1, and a Host that is not `uri-host [":" port]` (RFC 9112 3.2:
400 for "an invalid field value"). llhttp only checks that a field value
holds no control characters, so `Host: a b`, `a/b` or `a@b` would pass it.

Use: `receive(data)` whenever bytes arrive, then call `next_event()` until it
returns NEED_DATA. Pipelined requests wait in the buffer until asked for, so
the caller answers them strictly in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httptools

from ferryman.errors import ProtocolError
from ferryman.http.headscan import count_crlf, find_blank_line, request_line
from ferryman.http.host import check_host


@dataclass(frozen=True, slots=True)
class Limits:
    """Intake limits; defaults follow nginx where it has an equivalent."""

    max_request_line: int = 8192  # large_client_header_buffers 4 8k -> 414
    max_header_count: int = 100  # -> 431
    max_header_bytes: int = 32768  # all header lines together -> 431
    max_chunk_line: int = 4096  # chunk-size line with extensions -> 400


class Request:
    """A parsed request head. Header names are lower-case; repeats are joined by ", "."""

    __slots__ = (
        "body_kind",
        "content_length",
        "headers",
        "http11",
        "id",
        "keep_alive",
        "method",
        "path",
        "peer",
        "query",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        path: bytes,
        query: bytes,
        http11: bool,
        headers: dict[str, str],
        keep_alive: bool,
        body_kind: str,
        content_length: int | None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.http11 = http11
        self.headers = headers
        self.keep_alive = keep_alive
        self.body_kind = body_kind  # "none" | "length" | "chunked"
        self.content_length = content_length
        # Set by the connection that read it: the client's address, and the request id
        # its answer, its log line and any failure line carry (ferryman/requestid.py).
        self.peer = "-"
        self.id = ""

    @property
    def expect_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"

    @property
    def has_body(self) -> bool:
        return self.body_kind != "none"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} http11={self.http11}>"


class Data:
    """A piece of a request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
END_OF_MESSAGE: Final = _Sentinel("END_OF_MESSAGE")

Event = Request | Data | _Sentinel

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _DEAD = range(7)
_MAX_SIZE_DIGITS = 16  # a chunk size of 16 hex digits is already 2**64
_FIELD_NAMES: dict[bytes, str] = {}  # field name as sent -> lower-case str (a memo)
_FIELD_NAMES_MAX = 512


class RequestParser:
    """Turns a byte stream into Request, Data and END_OF_MESSAGE events."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._state = _HEAD
        # None once closed (its callbacks are this parser's methods: see close)
        self._llhttp: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._llhttp_dirty = False  # fed a head whose body it now expects
        self._reset_head()
        self._remaining = 0  # bytes left in a Content-Length body or chunk

    # -- public -------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self._buf += data

    def close(self) -> None:
        """Done with for good (its connection is gone): let go of llhttp, whose callbacks
        are this parser's methods. That cycle would otherwise wait for the garbage
        collector, and a connection's objects with it."""
        self._state = _DEAD
        self._llhttp = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buf)

    @property
    def mid_request(self) -> bool:
        """True once any byte of the next request head has arrived."""
        return self._state != _HEAD or bool(self._buf)

    def next_event(self) -> Event:
        """The next event, or NEED_DATA. Raises ProtocolError on bad input."""
        try:
            if self._state == _HEAD:
                return self._next_head()
            if self._state == _LENGTH:
                return self._next_length_data()
            if self._state == _DEAD:
                raise ProtocolError(400, "bad_request", "connection is unusable")
            return self._next_chunked()
        except ProtocolError:
            self._state = _DEAD
            raise

    # -- head ---------------------------------------------------------------

    def _reset_head(self) -> None:
        self._fed = 0  # bytes of the current head already fed to llhttp
        self._line_end = -1  # end of the request line once found
        self._counted = 0  # CRLFs counted up to here
        self._crlfs = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._host_count = 0
        self._head_done = False
        self._version_at = 0  # where the request line's version token starts ("HTTP/")
        self._method = b""
        self._keep_alive = False

    def _next_head(self) -> Event:
        buf = self._buf
        if self._fed == 0:
            if not buf:
                return NEED_DATA
            if buf[0] == 13:  # CR
                while buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
                    del buf[:2]
                if not buf or buf == b"\r":  # nothing yet, or half of an empty line
                    return NEED_DATA
        if self._llhttp_dirty:
            self._llhttp = httptools.HttpRequestParser(self)
            self._llhttp_dirty = False
        end = find_blank_line(buf, max(0, self._fed - 3))
        head_end = end + 4 if end >= 0 else len(buf)
        self._check_limits(head_end, complete=end >= 0)
        if head_end > self._fed:
            if self._fed == 0 and head_end == len(buf):
                self._feed_llhttp(buf)  # the usual case, one whole head: no copy
            else:
                self._feed_llhttp(bytes(buf[self._fed : head_end]))
            self._fed = head_end
        if not self._head_done:
            if end >= 0:  # llhttp saw the blank line but did not finish: malformed
                raise ProtocolError(400, "bad_request", "malformed request head")
            return NEED_DATA
        request = self._build_request()
        del buf[: self._fed]
        self._reset_head()
        return request

    def _check_limits(self, head_end: int, *, complete: bool) -> None:
        limits, buf = self.limits, self._buf
        if self._line_end < 0:
            line_end, version_at = request_line(buf, limits.max_request_line + 2)
            self._line_end = line_end
            if line_end < 0:
                if _line_length_so_far(buf) > limits.max_request_line:
                    raise ProtocolError(414, "uri_too_long", "request line too long")
                return
            self._counted = line_end + 2
            # The last word of the line (the whole line if it has no space) is the version.
            if version_at < 0:
                raise ProtocolError(400, "bad_request", "HTTP/0.9 is not supported")
            self._version_at = version_at
        if head_end - self._line_end - 2 > limits.max_header_bytes:
            raise ProtocolError(431, "headers_too_large", "header section too large")
        self._crlfs += count_crlf(buf, self._counted, head_end)
        # A CR at the end may pair with the next LF: count it next time.
        self._counted = head_end - 1 if head_end and buf[head_end - 1] == 13 else head_end
        headers = self._crlfs - 1 if complete else self._crlfs
        if headers > limits.max_header_count:
            raise ProtocolError(431, "too_many_headers", "too many header fields")

    def _feed_llhttp(self, data: bytes | bytearray) -> None:
        llhttp = self._llhttp
        if llhttp is None:
            raise ProtocolError(400, "bad_request", "connection is unusable")
        try:
            llhttp.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade or CONNECT head parsed fine; ferryman ignores the upgrade
            # (RFC 9110 7.8: a server may ignore Upgrade) and answers the request.
            self._llhttp_dirty = True
        except httptools.HttpParserInvalidMethodError:
            # RFC 9110 9.1: an unrecognised method is 501, not a malformed request.
            raise ProtocolError(501, "not_implemented", "unknown request method") from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(400, "bad_request", _llhttp_reason(exc)) from None

    # httptools callbacks; they only record, the checks run after the head.
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = _FIELD_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_FIELD_NAMES) < _FIELD_NAMES_MAX:  # bounded: clients choose names
                _FIELD_NAMES[name] = key
        text = value.decode("latin-1")
        if key == "host":
            self._host_count += 1
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        # llhttp resets these after the message completes: read them now.
        self._head_done = True
        llhttp = self._llhttp
        assert llhttp is not None  # it is what calls this
        self._method = llhttp.get_method()
        self._keep_alive = bool(llhttp.should_keep_alive())

    def _build_request(self) -> Request:
        # The version as llhttp accepted it ("HTTP/" digit "." digit, then the line's
        # end), read from the line: what llhttp's get_http_version() formats anew.
        version = bytes(self._buf[self._version_at + 5 : self._line_end])
        if version == b"0.9":
            raise ProtocolError(400, "bad_request", "HTTP/0.9 is not supported")
        if version != b"1.1" and version != b"1.0":
            shown = version.decode("latin-1")
            raise ProtocolError(505, "version_not_supported", f"HTTP/{shown} is not supported")
        http11 = version == b"1.1"
        headers = self._headers
        if http11 and self._host_count != 1:
            raise ProtocolError(400, "bad_request", "HTTP/1.1 needs exactly one Host header")
        if self._host_count > 1:
            raise ProtocolError(400, "bad_request", "more than one Host header")
        if self._host_count:
            check_host(headers["host"])
        method = self._method.decode("ascii")
        target = self._url
        path, query = _split_target(method, target)
        body_kind, length = self._body_framing(headers, http11)
        keep_alive = self._keep_alive
        if body_kind != "none" or not keep_alive:
            # llhttp now expects a body, or refuses data after a closing message:
            # the next head (if the caller asks for one) gets a fresh instance.
            self._llhttp_dirty = True
        return Request(method, target, path, query, http11, headers, keep_alive, body_kind, length)

    def _body_framing(self, headers: dict[str, str], http11: bool) -> tuple[str, int | None]:
        te = headers.get("transfer-encoding")
        if te is not None:
            if not http11:
                raise ProtocolError(400, "bad_request", "Transfer-Encoding in HTTP/1.0")
            if te.strip().lower() != "chunked":
                raise ProtocolError(501, "not_implemented", "only chunked transfer coding")
            self._state = _CHUNK_SIZE
            return "chunked", None
        cl = headers.get("content-length")
        if cl is None:
            return "none", None
        length = int(cl)  # llhttp has rejected signs, junk, repeats and overflow
        if length == 0:
            return "none", 0
        self._state, self._remaining = _LENGTH, length
        return "length", length

    # -- bodies -------------------------------------------------------------

    def _next_length_data(self) -> Event:
        if self._remaining == 0:
            self._state = _HEAD
            return END_OF_MESSAGE
        return self._take_data() or NEED_DATA

    def _take_data(self) -> Data | None:
        buf = self._buf
        if not buf:
            return None
        n = min(self._remaining, len(buf))
        data = bytes(buf[:n])
        del buf[:n]
        self._remaining -= n
        return Data(data)

    def _next_chunked(self) -> Event:
        while True:
            if self._state == _CHUNK_DATA:
                if self._remaining:
                    return self._take_data() or NEED_DATA
                self._state = _CHUNK_CRLF
            if self._state == _CHUNK_CRLF:
                if len(self._buf) < 2:
                    return NEED_DATA
                if self._buf[:2] != b"\r\n":
                    raise ProtocolError(400, "bad_request", "missing CRLF after chunk")
                del self._buf[:2]
                self._state = _CHUNK_SIZE
            if self._state == _CHUNK_SIZE:
                line = self._take_line(self.limits.max_chunk_line, "chunk size line too long")
                if line is None:
                    return NEED_DATA
                size = _parse_chunk_size(line)
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
                self._crlfs = 0
                continue
            # _TRAILERS: read and drop trailer fields up to the blank line
            line = self._take_line(self.limits.max_header_bytes, "trailer section too large")
            if line is None:
                return NEED_DATA
            if not line:
                self._state = _HEAD
                return END_OF_MESSAGE
            self._crlfs += 1
            if self._crlfs > self.limits.max_header_count:
                raise ProtocolError(431, "too_many_headers", "too many trailer fields")

    def _take_line(self, limit: int, reason: str) -> bytes | None:
        buf = self._buf
        end = buf.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if _line_length_so_far(buf) > limit:
                raise ProtocolError(400, "bad_request", reason)
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line


def _split_target(method: str, target: bytes) -> tuple[bytes, bytes]:
    """Path and query of a request target (RFC 9112 3.2)."""
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query
    if method == "OPTIONS" and target == b"*":
        return b"*", b""
    if method == "CONNECT":
        return target, b""
    scheme, sep, rest = target.partition(b"://")
    if sep and scheme.lower() in (b"http", b"https"):
        slash = rest.find(b"/")
        if slash < 0:
            return b"/", b""
        path, _, query = rest[slash:].partition(b"?")
        return path, query
    raise ProtocolError(400, "bad_request", "unsupported request target form")


def _line_length_so_far(buf: bytearray) -> int:
    """Length of an unterminated line; a trailing CR may be the start of its CRLF."""
    return len(buf) - 1 if buf[-1:] == b"\r" else len(buf)


def _parse_chunk_size(line: bytes) -> int:
    size_text = line.split(b";", 1)[0].strip(b" \t")
    if not size_text or len(size_text) > _MAX_SIZE_DIGITS:
        raise ProtocolError(400, "bad_request", "invalid chunk size")
    try:
        if not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise ValueError
        return int(size_text, 16)
    except ValueError:
        raise ProtocolError(400, "bad_request", "invalid chunk size") from None


def _llhttp_reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
