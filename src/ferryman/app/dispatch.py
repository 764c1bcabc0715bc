"""Which reader or writer answers a request, and who may ask: run for every request.

Paths under the reserved `/-/` (health, readiness, metrics: app/reserved.py)
are answered first, before any rule for files. GET and HEAD go to the reader
of SOURCE; PUT and DELETE to the write flow when writes are allowed. OPTIONS
says which methods a resource allows, without credentials: the list is the
server's, whatever the path names. Anything else is a 405.

With --cors-origin, a request that carries Origin has its answer, whatever
its status, given the CORS headers http/cors.py decides; one without Origin
pays one dict lookup for it (none without --cors-origin).

Compiled with the rest of the request path (ferryman/native.py). The
Application (app/application.py) builds one and hands its `handle` to the
worker's context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ferryman.app.auth import SIGNATURE_PARAM, Access
from ferryman.app.paths import resolve
from ferryman.app.reserved import is_reserved
from ferryman.errors import HttpError
from ferryman.failures import internal_error
from ferryman.http.body import BodyReader
from ferryman.http.cors import Cors, Header
from ferryman.http.parser import Request
from ferryman.http.response import Response, encode_headers, error_response

if TYPE_CHECKING:
    from ferryman.app.auth import Authorizer
    from ferryman.app.reserved import Reserved
    from ferryman.app.writes import Writes

log = logging.getLogger("ferryman")
READ_METHODS = frozenset(("GET", "HEAD"))
WRITE_METHODS = frozenset(("PUT", "DELETE"))
_SIGNED = SIGNATURE_PARAM.encode() + b"="


Handler = Callable[[Request, BodyReader | None], Response | Awaitable[Response]]


def allowed_methods(*, writes: bool) -> str:
    """The Allow list: the server's, whatever the path names."""
    return "GET, HEAD, OPTIONS, PUT, DELETE" if writes else "GET, HEAD, OPTIONS"


class Reader(Protocol):
    def get(self, request: Request) -> Response | Awaitable[Response]: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...


class Dispatch:
    """Handlers return a Response, or an awaitable of one when they must wait."""

    def __init__(
        self,
        reader: Reader,
        reserved: Reserved,
        auth: Authorizer,
        uploads: Writes | None,
        *,
        open_reads: bool,
        cors: Cors | None,
    ) -> None:
        self.reader = reader
        self.reserved = reserved
        self.auth = auth
        self.uploads = uploads
        # Anonymous reads skip the authorizer when nothing could make them fail.
        self.open_reads = open_reads
        self.allowed = allowed_methods(writes=uploads is not None)
        self.cors = cors

    def handle(self, request: Request, body: BodyReader | None) -> Response | Awaitable[Response]:
        cors = self.cors
        if cors is not None and "origin" in request.headers:
            return self._cross_origin(cors, request, body)
        return self._answer(request, body)

    def _answer(self, request: Request, body: BodyReader | None) -> Response | Awaitable[Response]:
        method = request.method
        raw = request.path
        if (raw.startswith(b"/-") or raw.startswith(b"/%")) and is_reserved(raw):
            return self.reserved.answer(request)  # before any rule for files
        if method in READ_METHODS:
            if not self.open_reads or request.query or "authorization" in request.headers:
                self.auth.check(request, Access.READ, resolve(request.path).url(), int(time.time()))
            return self.reader.get(request)
        uploads = self.uploads
        if method in WRITE_METHODS and uploads is not None:
            path = resolve(request.path).url()
            once = self.auth.check(request, Access.WRITE, path, int(time.time()))
            if method == "PUT":
                return uploads.put(request, body, once)
            return uploads.delete(request, once)
        if method == "OPTIONS":
            if request.path != b"*":  # the server itself: RFC 9110 9.3.7
                resolve(request.path)  # a path that names nothing anywhere is still a 400
            return Response(204, [("Allow", self.allowed)])
        allowed = self.allowed  # a new error per answer: a kept one grows with each raise
        detail = f"allowed here: {allowed}"
        raise HttpError(405, "method_not_allowed", detail, (("Allow", allowed),))

    def _cross_origin(
        self, cors: Cors, request: Request, body: BodyReader | None
    ) -> Response | Awaitable[Response]:
        """The answer with the CORS headers its Origin gets (none for an origin not
        allowed), errors included: a page can read why it failed."""
        headers = request.headers
        signed = _SIGNED in request.query
        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            extra = cors.preflight(headers, signed)
        else:
            extra = cors.actual(headers, signed)
        try:
            answer = self._answer(request, body)
        except Exception as exc:
            return _with_headers(_error(request, exc), extra)
        if isinstance(answer, Response):
            return _with_headers(answer, extra)
        return _later(request, answer, extra)


async def _later(
    request: Request, pending: Awaitable[Response], extra: tuple[Header, ...]
) -> Response:
    try:
        answer = await pending
    except ConnectionError:
        raise  # the client left: the connection cuts it, nothing is answered
    except Exception as exc:
        return _with_headers(_error(request, exc), extra)
    return _with_headers(answer, extra)


def _error(request: Request, exc: Exception) -> Response:
    """The answer the connection would make of a handler's error (a bug's: a 500)."""
    if not isinstance(exc, HttpError):
        exc = internal_error(log, exc, request.method, request.target, request.id)
    accept = request.headers.get("accept")
    return error_response(exc.status, exc.error, exc.detail, exc.headers, accept=accept)


def _with_headers(response: Response, extra: tuple[Header, ...]) -> Response:
    """`response` with `extra` after its headers; their lists and blocks may be shared
    (the memory cache's), so they are replaced, never changed."""
    if response.head_block is not None:
        response.head_block += encode_headers(list(extra))
    response.headers = [*response.headers, *extra]
    return response
