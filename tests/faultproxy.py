"""An HTTP proxy that injects store failures: real sockets, 127.0.0.1 port 0, its own thread.

    with FaultProxy(moto.url) as proxy:
        proxy.add(Rule(method="GET", range=r"bytes=0-", truncate_after=1000))
        ...  # point the client at proxy.url
        assert proxy.count("GET") == 1

Each client request is forwarded on a fresh upstream connection (so the
upstream's keep-alive policy does not matter); the client's connection stays
open across requests. The first matching rule that still has uses left
applies to a request (`times=None`: every request). A rule can:

- `latency`: wait this long before forwarding;
- `reset_after=K`: pass on the response head and K body bytes, then reset
  the connection (RST);
- `truncate_after=K`: pass on the head (with the original Content-Length)
  and K body bytes, then close cleanly;
- `no_answer=True`: read the request, forward nothing, reset the connection
  (a store that died while the request was in flight);
- `slow_down=True`: answer 503 SlowDown with an S3 XML error body (and
  `retry_after` as Retry-After when given) instead of forwarding;
- `corrupt_at=K`: pass the response on with body byte K inverted (a
  damaged copy or a bad hop; the headers, digests included, unchanged);
- `empty_body=True`: forward the request with its body dropped and
  Content-Length: 0 (what a broken uploader does);
- `error_status=N` (with `error_code`): answer N with an S3 XML error body
  instead of forwarding; its Message names the endpoint as the client
  reached it (Host), as some S3-compatible stores' messages do.

Counters, readable from the test thread: `count(method)` (requests received;
`log` has each one's method, target and headers),
`bytes_out` (response body bytes passed to clients), `aborted` (responses
the client stopped reading before their end), `connections` (accepted).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024
RELAY_CHUNK = 64 * 1024
SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>FAULTPROXY</RequestId></Error>"
)


@dataclass
class Rule:
    """Which requests (None matches anything) and what to do to them."""

    method: str | None = None
    path: str | None = None  # regex searched in the request target (path and query)
    range: str | None = None  # regex searched in the Range header; no Range, no match
    times: int | None = 1  # uses left; None: every matching request
    latency: float = 0.0
    reset_after: int | None = None
    truncate_after: int | None = None
    no_answer: bool = False
    slow_down: bool = False
    retry_after: int | None = None
    empty_body: bool = False
    corrupt_at: int | None = None
    error_status: int | None = None
    error_code: str = "InternalError"
    used: int = 0

    def matches(self, method: str, target: str, headers: dict[str, str]) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not re.search(self.path, target):
            return False
        return self.range is None or re.search(self.range, headers.get("range", "")) is not None


class Request:
    """One request as the client sent it (the `log` keeps these, for assertions)."""

    def __init__(
        self, method: str, target: str, version: str, headers: list[tuple[str, str]]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.by_name = {name.lower(): value for name, value in headers}

    def head(self, drop: set[str], extra: list[tuple[str, str]]) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}"]
        lines += [f"{n}: {v}" for n, v in self.headers if n.lower() not in drop]
        lines += [f"{n}: {v}" for n, v in extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ClientGone(Exception):
    """The client closed its connection while the proxy was writing to it."""


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.requests: Counter[str] = Counter()
        self.log: list[Request] = []
        self.bytes_out = 0
        self.aborted = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()  # open client connections
        self._thread = threading.Thread(target=self._run, daemon=True, name="faultproxy")
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("fault proxy did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url: str = f"http://127.0.0.1:{self.port}"

    # -- the test's side -------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(self.requests.values()) if method is None else self.requests[method]

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.log.clear()
            self.bytes_out = 0
            self.aborted = 0
            self.connections = 0

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy thread ----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=HEAD_LIMIT)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            # Connections accepted while stopping start tasks of their own: cancel until
            # none is left, then let the closed transports run their connection_lost
            # (a transport collected before that warns that it was never closed).
            for client in list(self._clients):  # a close would wait for unread bytes
                client.transport.abort()
            while tasks := asyncio.all_tasks(self._loop):
                for task in tasks:
                    task.cancel()
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
            for _ in range(3):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _take_rule(self, request: Request) -> Rule | None:
        with self._lock:
            self.requests[request.method] += 1
            self.log.append(request)
            for rule in self.rules:
                if rule.matches(request.method, request.target, request.by_name):
                    rule.used += 1
                    return rule
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        self._clients.add(writer)
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (
            ClientGone,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Relay one request and its response; False when the client connection is done."""
        request = await _read_request(reader)
        if request is None:
            return False
        rule = self._take_rule(request)
        expects = request.by_name.get("expect", "").lower() == "100-continue"
        if rule and (rule.slow_down or rule.error_status is not None):
            if not expects:
                await _read_body(reader, request.by_name)
            if rule.slow_down:
                await self._answer_slow_down(writer, rule, request.method, close=expects)
            else:
                await self._answer_error(writer, rule, request, close=expects)
            return not expects
        if expects:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await _read_body(reader, request.by_name)
        if rule and rule.no_answer:
            _reset(writer)
            return False
        if rule and rule.latency:
            await asyncio.sleep(rule.latency)
        drop = {"expect", "connection", "content-length", "transfer-encoding"}
        if rule and rule.empty_body:
            body = b""
        extra = [("Content-Length", str(len(body))), ("Connection", "close")]
        if not body and request.method in ("GET", "HEAD", "DELETE"):
            extra = extra[1:]
        up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=HEAD_LIMIT)
        try:
            up_writer.write(request.head(drop, extra) + body)
            await up_writer.drain()
            return await self._relay_response(request, rule, up_reader, writer)
        finally:
            up_writer.transport.abort()

    async def _relay_response(
        self,
        request: Request,
        rule: Rule | None,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        head = await up_reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        # Our connection to the client stays open: say so instead of upstream's "close".
        kept = [
            line for line in header_lines if line and not line.lower().startswith("connection:")
        ]
        bodyless = request.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        framed = (
            bodyless
            or "content-length" in headers
            or "chunked" in headers.get("transfer-encoding", "")
        )
        kept.append("Connection: keep-alive" if framed else "Connection: close")
        await _write(writer, ("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode("latin-1"))
        if bodyless:
            return True
        limit = None
        if rule is not None:
            limit = rule.reset_after if rule.reset_after is not None else rule.truncate_after
        sent = 0
        async for chunk in _body_chunks(up_reader, headers):
            if limit is not None and sent + len(chunk) >= limit:
                chunk = chunk[: limit - sent]
            if rule is not None and rule.corrupt_at is not None:
                chunk = _corrupted(chunk, rule.corrupt_at - sent)
            try:
                await _write(writer, chunk)
            except ClientGone:
                with self._lock:
                    self.aborted += 1
                raise
            sent += len(chunk)
            with self._lock:
                self.bytes_out += len(chunk)
            if limit is not None and sent >= limit:
                break
        if rule is not None and rule.reset_after is not None:
            _reset(writer)
            return False
        if rule is not None and rule.truncate_after is not None:
            return False  # _serve closes cleanly: the client sees a short body
        return framed

    async def _answer_slow_down(
        self, writer: asyncio.StreamWriter, rule: Rule, method: str, close: bool
    ) -> None:
        headers = [
            "HTTP/1.1 503 Slow Down",
            "Content-Type: application/xml",
            f"Content-Length: {len(SLOW_DOWN_BODY)}",
            "Connection: close" if close else "Connection: keep-alive",
        ]
        if rule.retry_after is not None:
            headers.append(f"Retry-After: {rule.retry_after}")
        body = b"" if method == "HEAD" else SLOW_DOWN_BODY  # a HEAD answer has no body
        await _write(writer, ("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        with self._lock:
            self.bytes_out += len(body)

    async def _answer_error(
        self, writer: asyncio.StreamWriter, rule: Rule, request: Request, close: bool
    ) -> None:
        host = request.by_name.get("host", "")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{rule.error_code}</Code>"
            f"<Message>We encountered an internal error at {host}. Please try again.</Message>"
            f"<Resource>{request.target}</Resource><RequestId>FAULTPROXY</RequestId></Error>"
        ).encode()
        headers = [
            f"HTTP/1.1 {rule.error_status} {rule.error_code}",
            "Content-Type: application/xml",
            f"Content-Length: {len(body)}",
            "Connection: close" if close else "Connection: keep-alive",
        ]
        body = b"" if request.method == "HEAD" else body
        await _write(writer, ("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        with self._lock:
            self.bytes_out += len(body)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed between requests
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    headers = []
    for line in lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return Request(method, target, version, headers)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """A request's body: a request without framing headers has none (RFC 9112 6.3)."""
    if "content-length" not in headers and "transfer-encoding" not in headers:
        return b""
    return b"".join([chunk async for chunk in _body_chunks(reader, headers)])


async def _body_chunks(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    """The decoded body: by Content-Length, chunked, or (a response) until EOF."""
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            chunk = await reader.read(min(left, RELAY_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(chunk)
            yield chunk
    else:
        while chunk := await reader.read(RELAY_CHUNK):
            yield chunk


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if writer.transport.is_closing():
        raise ClientGone
    writer.write(data)
    try:
        await writer.drain()
    except ConnectionError as exc:
        raise ClientGone from exc


def _corrupted(chunk: bytes, at: int) -> bytes:
    """`chunk` with its byte `at` inverted, when it holds that byte."""
    if not 0 <= at < len(chunk):
        return chunk
    return chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
