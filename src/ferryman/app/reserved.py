"""The reserved prefix `/-/`: the server's own endpoints, answered before any file rule.

    /-/health    200 while the worker's event loop answers
    /-/ready     200 when the store, the catalog and (a bucket's) cache are usable,
                 else 503 with Retry-After and the reasons (app/readiness.py)
    /-/metrics   Prometheus text format, the whole server's (metrics/scrape.py);
                 loopback clients, or others with `Authorization: Bearer <--metrics-token>`

Every other path under `/-/`, and `/-` itself, answers 404: SOURCE's `-` is
never served or written (also when the request spells it `%2D`). Health
and ready need no credentials, whatever --private says: a probe has none.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable
from urllib.parse import unquote_to_bytes

from ferryman.app.readiness import Readiness
from ferryman.catalog.api import Catalog
from ferryman.errors import HttpError
from ferryman.http.body import Body
from ferryman.http.parser import Request
from ferryman.http.response import Response

HEALTH, READY, METRICS = b"/-/health", b"/-/ready", b"/-/metrics"
ALLOWED = "GET, HEAD"
RETRY_AFTER = "2"  # seconds a load balancer waits before asking a worker that is not ready
_JSON = "application/json"
_ALIVE = b'{"alive": true}\n'


def is_reserved(path: bytes) -> bool:
    """Whether a request path (as sent, before decoding) lies under the reserved `-`."""
    if path == b"/-" or path.startswith(b"/-/"):
        return True
    if b"%" in path:  # `-` spelled %2D, or the slash after it %2F: decoded as Root would
        decoded = unquote_to_bytes(path)
        return decoded == b"/-" or decoded.startswith(b"/-/")
    return False


def is_loopback(peer: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def scrape_refusal(peer: str, authorization: str | None, token: str | None) -> HttpError | None:
    """Why this client may not scrape /-/metrics, or None when it may."""
    if is_loopback(peer):
        return None
    if token is None:
        return HttpError(403, "forbidden",
                         "metrics are served to loopback clients only; set --metrics-token "
                         "to let others scrape with Authorization: Bearer")  # fmt: skip
    challenge = (("WWW-Authenticate", 'Bearer realm="ferryman metrics"'),)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return HttpError(401, "unauthorized", "metrics need Authorization: Bearer", challenge)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpError(403, "forbidden", "wrong metrics token")
    return None


class Reserved:
    """The answers under `/-/`."""

    def __init__(
        self,
        readiness: Readiness,
        metrics_dir: str | None,
        catalog: Catalog | None,
        token: str | None,
    ) -> None:
        self.readiness = readiness
        self.metrics_dir = metrics_dir  # None: --metrics off, /-/metrics is not there
        self.catalog = catalog
        self.token = token

    def answer(self, request: Request) -> Response | Awaitable[Response]:
        path = request.path
        if path == HEALTH:
            self._method(request)
            return _json(200, _ALIVE)
        if path == READY:
            self._method(request)
            return self._ready()
        if path == METRICS and self.metrics_dir is not None:
            self._method(request)
            refusal = scrape_refusal(request.peer, request.headers.get("authorization"),
                                     self.token)  # fmt: skip
            if refusal is not None:
                raise refusal
            return self._metrics(self.metrics_dir)
        raise HttpError(404, "not_found", "/-/ is reserved for the server: "
                        "/-/health, /-/ready and /-/metrics")  # fmt: skip

    @staticmethod
    def _method(request: Request) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed", f"allowed here: {ALLOWED}",
                            (("Allow", ALLOWED),))  # fmt: skip

    async def _ready(self) -> Response:
        ready, reasons = await self.readiness.state()
        payload = (json.dumps({"ready": ready, "reasons": reasons}) + "\n").encode()
        if ready:
            return _json(200, payload)
        response = _json(503, payload)
        response.headers.append(("Retry-After", RETRY_AFTER))
        return response

    async def _metrics(self, directory: str) -> Response:
        from ferryman.metrics.scrape import CONTENT_TYPE, render  # only where metrics are on

        text = await asyncio.to_thread(render, directory, self.catalog)
        headers = [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")]
        return Response(200, headers, Body((text,)))


def _json(status: int, payload: bytes) -> Response:
    headers = [("Content-Type", _JSON), ("Cache-Control", "no-store")]
    return Response(status, headers, Body((payload,)))
