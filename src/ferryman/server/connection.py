"""One client connection: read requests, answer them in order, time out, release.

The request loop runs synchronously inside data_received for as long as it
can: a request whose handler answers at once and whose body is small and
cached is parsed, handled and written in one pass, with no task and no
thread. Only a handler that must wait, or a body that must be streamed or
sendfile'd, moves the rest of that response into a task; the loop resumes
when it ends. Pipelined requests wait in the parser until then, so answers
leave in request order.

A single deadline per connection enforces every timeout; its meaning follows
the state: IDLE (keep-alive timeout), HEAD (header timeout, measured from the
first byte of the head so a trickling client cannot extend it), SEND (send
timeout, restarted whenever the client accepts bytes). Re-arming only moves a
deadline; the worker's deadline queue (server/deadline.py) holds them all
behind one loop timer.

Whatever happens, the response body's cleanup runs exactly once, after the
last byte has been handed to the kernel or the connection is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ferryman.errors import HttpError, ProtocolError
from ferryman.failures import log_request_failure, new_request_id
from ferryman.http.body import FileRegion, Part
from ferryman.http.parser import NEED_DATA, Request, RequestParser
from ferryman.http.response import Framing, Response, error_response, frame_head
from ferryman.server import transfer, zerocopy
from ferryman.server.deadline import BODY, HEAD, IDLE, SEND, Deadline, unsent_bytes
from ferryman.server.flowcontrol import Waiter
from ferryman.server.requestbody import RequestBody

if TYPE_CHECKING:
    from ferryman.server.context import ServerContext

log = logging.getLogger("ferryman.connection")

_HIGH_WATER = 256 * 1024  # transport buffer that pauses the loop's writes
_MAX_PIPELINE_BUFFER = 256 * 1024  # unparsed bytes held before reading pauses


class HttpConnection(asyncio.Protocol):
    # One per client, 10,000 idle ones per worker by default: slots instead of
    # a __dict__ save about 0.1 KiB each.
    __slots__ = (
        "_body", "_body_wait", "_task", "_unsent_mark", "_write_wait", "_writer", "body_sent",
        "busy", "closed", "closing", "ctx", "deadline", "eof", "loop", "parser", "peer",
        "reading_paused", "requests", "transport", "write_paused",
    )  # fmt: skip

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = RequestParser(ctx.limits)
        self.peer = "-"
        self.busy = False  # a response is being produced or sent by a task
        self.closing = False  # answer what is in progress, then close
        self.closed = False
        self.write_paused = False
        self.reading_paused = False
        self.eof = False
        self._write_wait = Waiter(self.loop)  # a writer waiting for the socket or buffer
        self._body_wait = Waiter(self.loop)  # a handler waiting for request-body bytes
        self._body: RequestBody | None = None  # the body of the request being answered
        self._task: asyncio.Task[None] | None = None
        self._writer: zerocopy.SocketWriter | None = None
        self.deadline = Deadline(ctx.timers, self._expired)
        self._unsent_mark = 0  # bytes not yet taken by the client when SEND was armed
        self.body_sent = 0  # body bytes of the current response handed to the kernel
        self.requests = 0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "-"
        self.ctx.connection_opened(self)
        self._arm(HEAD, self.ctx.config.header_timeout)

    def data_received(self, data: bytes) -> None:
        self.parser.receive(data)
        self._body_wait.wake()
        if not self.busy:
            self._process()
        elif self.parser.buffered > _MAX_PIPELINE_BUFFER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._body_wait.wake(ConnectionResetError("client closed before the body ended"))
        if not self.busy:
            self._process()
        return True  # keep the write side open until the answer is out

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline.cancel()
        # A running task is not cancelled: its wait fails, it notices the loss,
        # releases its body and closes the socket writer itself. Cancelling could
        # strike before it started (leaking the body) or while a worker thread
        # still reads the body's descriptor.
        self._write_wait.wake(ConnectionResetError("connection lost"))
        self._body_wait.wake(ConnectionResetError("connection lost"))
        if not self.busy:
            self._close_writer()
        self.ctx.connection_closed(self)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._arm(SEND, self.ctx.config.send_timeout)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.deadline.disarm()
        if self._write_wait.waiting:
            self._write_wait.wake()
        elif not self.busy:
            self._process()

    # -- the request loop ---------------------------------------------------------

    def _process(self) -> None:
        parser = self.parser
        while not (self.busy or self.closing or self.closed or self.write_paused):
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self._answer_protocol_error(exc)
                return
            if event is NEED_DATA:
                self._await_request()
                return
            if isinstance(event, Request):
                self._on_request(event)
            # Body events of a request nobody reads are never reached: such a
            # request closes the connection after its answer.
        if self.closing and not self.busy:
            self.close()

    def _await_request(self) -> None:
        if self.closing or self.eof:
            if not self.parser.mid_request or self.eof:
                self.close()
            return
        # Deadlines start at the first byte (HEAD) or at the end of the last
        # answer (IDLE); bytes trickling in later do not extend them.
        kind = HEAD if self.parser.mid_request else IDLE
        if self.deadline.kind != kind or not self.deadline.armed:
            config = self.ctx.config
            self._arm(kind, config.header_timeout if kind == HEAD else config.keepalive_timeout)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def _on_request(self, request: Request) -> None:
        self.deadline.disarm()
        self.requests += 1
        started = time.monotonic()
        self._body = None
        try:
            expect = request.headers.get("expect")
            if expect is not None and expect.lower() != "100-continue":
                raise HttpError(417, "expectation_failed", "only 100-continue is supported")
            if request.has_body:
                self._body = RequestBody(self, request, self.ctx.config.max_upload_size)
            result = self.ctx.app.handle(request, self._body)
        except HttpError as exc:
            result = self._error(request, exc)
        except Exception as exc:
            result = self._error(request, _internal_error(request, exc))
        if isinstance(result, Response):
            self._respond(request, result, started)
        else:
            self.busy = True
            self._task = self.loop.create_task(self._respond_later(request, result, started))

    def _error(self, request: Request | None, exc: HttpError) -> Response:
        accept = request.headers.get("accept") if request is not None else None
        return error_response(exc.status, exc.error, exc.detail, exc.headers, accept=accept)

    async def _respond_later(
        self, request: Request, pending: Awaitable[Response], started: float
    ) -> None:
        try:
            response = await pending
        except HttpError as exc:
            response = self._error(request, exc)
        except ConnectionError:  # the client left while the handler waited on it
            self.busy = False
            self.abort()
            self._close_writer()
            return
        except Exception as exc:
            response = self._error(request, _internal_error(request, exc))
        self.busy = False
        if self.closed:
            response.body.release()
            self._close_writer()
            return
        self._respond(request, response, started)
        if not self.busy:
            self._process()

    def _respond(self, request: Request, response: Response, started: float) -> None:
        """Frame and send a response; synchronous when the body allows it."""
        body = response.body
        try:
            keep_alive = (
                request.keep_alive
                and not self.closing
                and not self.ctx.stopping
                # a body left unread (or refused unread) still occupies the stream
                and (not request.has_body or (self._body is not None and self._body.done))
            )
            framing = frame_head(
                response,
                method=request.method,
                http11=request.http11,
                keep_alive=keep_alive,
                date=self.ctx.date_line(),
            )
            if not framing.send_body:
                self.transport.write(framing.head)
                self._finished(request, response, framing, 0, started)
                return
            self.body_sent = 0
            if body.stream is None:
                inline = self._inline(body.parts, body.length)
                if inline is not None:
                    self.transport.write(framing.head + inline)
                    self._finished(request, response, framing, len(inline), started)
                    return
        except BaseException:
            body.release()
            raise
        # Everything else is sent from a task, not here: the loop first reads
        # every ready request, then the sends run back to back. Measured on
        # random 64 KiB ranges (docs/performance.md): 11.2k req/s this way,
        # 8.6k sending sendfile bodies inside this callback.
        self.busy = True
        self._task = self.loop.create_task(self._transfer(request, response, framing, started))

    def _inline(self, parts: Sequence[Part], length: int | None) -> bytes | None:
        """The body as bytes for one write with the head, when that beats sendfile.

        A small body always does. So does a body of several small regions
        (multipart/byteranges) up to four times --small-body: one copy from the
        page cache costs less than a sendfile and a send per region.
        """
        small = self.ctx.config.small_body
        if length is None or length > small:
            if length is None or length > 4 * small:
                return None
            if any(isinstance(p, FileRegion) and p.count > small for p in parts):
                return None
        return transfer.inline_parts(parts)

    async def _transfer(
        self,
        request: Request,
        response: Response,
        framing: Framing,
        started: float,
    ) -> None:
        try:
            await transfer.send_body(self, framing, response.body, self.ctx.config.sendfile)
        except BaseException as exc:
            self._aborted(request, response, started, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.busy = False
        self._finished(request, response, framing, self.body_sent, started)
        if not self.busy:
            self._process()

    def _aborted(
        self, request: Request, response: Response, started: float, exc: BaseException
    ) -> None:
        """The body could not be sent whole: log it, release it, cut the connection."""
        if not isinstance(exc, transfer.TransferAborted | asyncio.CancelledError):
            # The head is out: the id cannot reach this client, but names the line.
            log_request_failure(log, new_request_id(), exc, request.method, request.target)
        reason = str(exc) or type(exc).__name__
        self.ctx.access_log.record(self, request, response.status, self.body_sent, started, reason)
        response.body.release()
        self.abort()  # connection_lost follows on a later turn of the loop
        self.busy = False
        self._close_writer()

    def _finished(
        self, request: Request, response: Response, framing: Framing, sent: int, started: float
    ) -> None:
        response.body.release()
        self.ctx.access_log.record(self, request, response.status, sent, started)
        if not framing.keep_alive:
            self.closing = True
            self.close()

    def _answer_protocol_error(self, exc: ProtocolError) -> None:
        response = self._error(None, exc)
        framing = frame_head(response, method="GET", http11=True, keep_alive=False,
                             date=self.ctx.date_line())  # fmt: skip
        self.transport.write(framing.head + b"".join(response.body.parts))  # type: ignore[arg-type]
        self.ctx.access_log.record_error(self, exc.status)
        self.closing = True
        self.close()

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Close after the buffered bytes are out; a client that never reads them is cut."""
        if self.closed:
            return
        self.closing = True
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self._arm(SEND, self.ctx.config.send_timeout)

    def abort(self) -> None:
        if not self.closed:
            self.closing = True
            self.transport.abort()

    def shutdown(self) -> None:
        """Server is stopping: finish the response in progress, then close.

        A half-received request head is not in flight (nothing was promised
        for it): that connection closes now, and the client may retry.
        """
        self.closing = True
        if not self.busy:
            self.close()

    # -- timeouts -----------------------------------------------------------------

    def _arm(self, kind: str, timeout: float) -> None:
        if kind == SEND and (self.deadline.kind != SEND or not self.deadline.armed):
            self._unsent_mark = unsent_bytes(self.transport)
        self.deadline.arm(kind, timeout)

    def _expired(self, kind: str) -> float | None:
        """The connection's deadline passed: act, or return a timeout to wait on."""
        if self.closed:
            return None
        config = self.ctx.config
        if kind == SEND:
            unsent = unsent_bytes(self.transport)
            if unsent < self._unsent_mark:  # the client took bytes: slow, not stalled
                self._unsent_mark = unsent
                return config.send_timeout
            log.info("closing %s: no progress sending for %ss", self.peer, config.send_timeout)
            self.abort()
        elif kind == HEAD and self.parser.mid_request and not self.closing:
            self._answer_protocol_error(
                ProtocolError(408, "request_timeout", "request head not received in time")
            )
            self.abort_later()
        elif kind == BODY:
            self._body_wait.wake(
                HttpError(408, "request_timeout", "request body not received in time")
            )
        else:
            self.close()
        return None

    def abort_later(self) -> None:
        """After a final error answer: give the client the send timeout to read it."""
        if not self.closed and self.transport.get_write_buffer_size():
            self._arm(SEND, self.ctx.config.send_timeout)

    # -- what body writers need (transfer.Connection) -------------------------------

    def progress(self) -> None:
        if self.deadline.kind == SEND and self.deadline.armed:
            self.deadline.extend(self.ctx.config.send_timeout)

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if self.closed:
            raise ConnectionResetError("connection lost")
        if self.write_paused:
            await self._write_wait.wait()

    async def flush(self) -> None:
        """Wait until the transport's buffer is empty (before writing beside it)."""
        if self.closed:
            raise ConnectionResetError("connection lost")
        if not self.transport.get_write_buffer_size():
            return
        self.transport.set_write_buffer_limits(high=0)  # pause now, resume when empty
        try:
            if self.write_paused:
                await self._write_wait.wait()
        finally:
            if not self.closed:
                self.transport.set_write_buffer_limits(high=_HIGH_WATER)

    async def send_while_writable(self, fd: int, send: Callable[[], str]) -> str:
        """Call `send` whenever the socket (through the duplicate `fd`) takes bytes,
        until it answers something other than BLOCKED; return that answer.

        `send` runs in the writability callback itself, not in a task that the
        callback wakes: the socket's buffer is refilled one loop turn sooner,
        and big files cost about a tenth less CPU per GB (docs/performance.md).
        """
        self._arm(SEND, self.ctx.config.send_timeout)  # send() extends it on progress
        answer = zerocopy.BLOCKED

        def on_writable() -> None:
            nonlocal answer
            try:
                answer = send()
            except Exception as exc:  # the peer left, the file shrank: the waiter raises it
                self._write_wait.wake(exc)
                return
            if answer != zerocopy.BLOCKED:
                self._write_wait.wake()

        self.loop.add_writer(fd, on_writable)
        try:
            await self._write_wait.wait()
        finally:
            self.loop.remove_writer(fd)
            self.deadline.disarm()
        return answer

    async def wait_for_body(self) -> None:
        """Wait for more request-body bytes (RequestBody.read calls this)."""
        if self.closed or self.eof:
            raise ConnectionResetError("client closed before the body ended")
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        self._arm(BODY, self.ctx.config.body_timeout)
        try:
            await self._body_wait.wait()
        finally:
            self.deadline.disarm()

    def socket_writer(self) -> zerocopy.SocketWriter | None:
        """The connection's socket duplicate, made at first use; None if none can be had."""
        if self._writer is None:
            try:
                self._writer = zerocopy.SocketWriter(self.transport.get_extra_info("socket"))
            except OSError:  # out of descriptors: the caller copies instead
                return None
        return self._writer


def _internal_error(request: Request, exc: Exception) -> HttpError:
    """A handler's bug: one log line and a 500 that carry the same request id."""
    request_id = new_request_id()
    log_request_failure(log, request_id, exc, request.method, request.target)
    detail = f"request {request_id} failed; the server log names it"
    return HttpError(500, "internal_error", detail, (("X-Request-Id", request_id),))
