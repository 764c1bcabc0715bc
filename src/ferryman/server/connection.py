"""One client connection: read requests, answer them in order, time out, release.

The connection is always in one Phase (server/phase.py: what each means, and
the legal moves); its pauses and waits, both ways, belong to its FlowControl
(server/flowcontrol.py); one Deadline (server/deadline.py) enforces every
timeout, its kind following the phase. The request loop runs synchronously
inside data_received for as long as it can: a request whose handler answers
at once and whose body is small and cached is parsed, handled and written in
one pass, with no task and no thread. Only a handler that must wait, or a
body that must be streamed or sendfile'd, moves the rest of that answer into
a task; the loop resumes when it ends. Pipelined requests wait in the parser
until then, so answers leave in request order.

Whatever happens, the response body's cleanup runs exactly once, after the
last byte has been handed to the kernel or the connection is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ferryman.errors import HttpError, ProtocolError
from ferryman.failures import internal_error, log_request_failure
from ferryman.http.parser import NEED_DATA, Request, RequestParser
from ferryman.http.response import Framing, Response, error_response, frame_head
from ferryman.requestid import new_request_id, request_id
from ferryman.server import transfer, zerocopy
from ferryman.server.deadline import BODY, HEAD, IDLE, SEND, Deadline, unsent_bytes
from ferryman.server.flowcontrol import FlowControl
from ferryman.server.phase import Phase, move
from ferryman.server.requestbody import RequestBody

if TYPE_CHECKING:
    from ferryman.server.context import ServerContext

log = logging.getLogger("ferryman.connection")

# A zero-copy send about to start: request, response, framing, start time, sender.
_PendingSend = tuple[Request, Response, Framing, float, zerocopy.ZeroCopySend]


class HttpConnection(asyncio.Protocol):
    # One per client, 10,000 idle ones per worker by default: slots instead of
    # a __dict__ save about 0.1 KiB each.
    __slots__ = (
        "_body", "_pending", "_task", "_unsent_mark", "body_sent", "ctx", "deadline", "flow",
        "loop", "parser", "peer", "phase", "transport",
    )  # fmt: skip

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = RequestParser(ctx.limits)
        self.peer = "-"
        self.phase = Phase.HEAD  # the first head is due from the start
        config = ctx.config
        self.flow = FlowControl(self.loop, config.write_buffer, config.pipeline_buffer)
        self._body: RequestBody | None = None  # the body of the request being answered
        # The task (or the handle of a send about to start) that owns the answer
        # in progress and the socket writer, if one does; it lets go before the
        # next answer starts.
        self._task: asyncio.Task[None] | asyncio.Handle | None = None
        self._pending: _PendingSend | None = None  # what that handle is to send
        self.deadline = Deadline(ctx.timers, self._expired)
        self._unsent_mark = 0  # bytes not yet taken by the client when SEND was armed
        self.body_sent = 0  # body bytes of the current response handed to the kernel

    def _enter(self, phase: Phase) -> None:
        self.phase = move(self.phase, phase)

    @property
    def closed(self) -> bool:
        """Nothing more may be sent: the connection is closing, or gone."""
        phase = self.phase
        return phase is Phase.CLOSING or phase is Phase.CLOSED

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.flow.attach(self.transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "-"
        self.ctx.connection_opened(self)
        self._arm(HEAD, self.ctx.config.header_timeout)

    def data_received(self, data: bytes) -> None:
        self.parser.receive(data)
        self.flow.received()
        phase = self.phase
        if (phase is Phase.IDLE or phase is Phase.HEAD) and not self.flow.writing_paused:
            self._process()
        elif phase is not Phase.CLOSING and phase is not Phase.CLOSED:
            self.flow.hold(self.parser.buffered)  # nothing parses them now

    def eof_received(self) -> bool:
        self.flow.end_of_input()
        phase = self.phase
        if phase is Phase.IDLE or phase is Phase.HEAD:
            self._process()
        # Keep the write side open until the answer is out. TLS has no half-close:
        # its transport closes after a close_notify whatever this says, and warns
        # when told otherwise.
        return not self.ctx.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(Phase.CLOSED)
        # Nothing is parsed or timed out after this: both let go of their callbacks,
        # so the connection's objects are freed here, not by the garbage collector.
        self.deadline.close()
        self.parser.close()
        # A running task is not cancelled: its wait fails, it notices the loss,
        # releases its body and closes the socket writer itself. Cancelling could
        # strike before it started (leaking the body) or while a worker thread
        # still reads the body's descriptor.
        self.flow.lost()
        if self._task is None:
            self.flow.close_writer()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        self._arm(SEND, self.ctx.config.send_timeout)

    def resume_writing(self) -> None:
        self.deadline.disarm()
        if self.flow.resume_writing():
            return  # the writer that waited carries on
        phase = self.phase
        if phase is Phase.IDLE or phase is Phase.HEAD:
            self._process()
        elif phase is Phase.CLOSING and self._task is None:
            self._linger()  # what is left still has the send timeout to go

    # -- the request loop ---------------------------------------------------------

    def _process(self) -> None:
        parser = self.parser
        flow = self.flow
        while (self.phase is Phase.IDLE or self.phase is Phase.HEAD) and not flow.writing_paused:
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

    def _await_request(self) -> None:
        if self.flow.input_ended:
            self.close()
            return
        # Deadlines start at a head's first byte (HEAD) or at the end of the last
        # answer (IDLE), so a client trickling bytes cannot extend them.
        if self.parser.mid_request:
            phase, kind = Phase.HEAD, HEAD
        else:
            phase, kind = Phase.IDLE, IDLE
        if self.phase is not phase:
            self._enter(phase)
        if self.deadline.kind != kind or not self.deadline.armed:
            config = self.ctx.config
            self._arm(kind, config.header_timeout if kind == HEAD else config.keepalive_timeout)
        self.flow.want_input()

    def _on_request(self, request: Request) -> None:
        self.deadline.disarm()
        self._enter(Phase.HANDLING)
        started = time.monotonic()
        request.peer = self.peer
        request.id = request_id(request.headers.get("x-request-id"))
        self._body = None
        try:
            expect = request.headers.get("expect")
            if expect is not None and expect.lower() != "100-continue":
                raise HttpError(417, "expectation_failed", "only 100-continue is supported")
            if request.has_body:
                self._body = RequestBody(self, request, self.ctx.config.max_upload_size)
            result = self.ctx.handle(request, self._body)
        except Exception as exc:
            result = self._error(request, exc)
        if isinstance(result, Response):
            self._respond(request, result, started)
        else:
            self._task = self.loop.create_task(self._respond_later(request, result, started))

    def _error(self, request: Request, exc: Exception) -> Response:
        """The answer to a handler's error: its HttpError, or a bug's 500."""
        if not isinstance(exc, HttpError):
            exc = internal_error(log, exc, request.method, request.target, request.id)
        accept = request.headers.get("accept")
        return error_response(exc.status, exc.error, exc.detail, exc.headers, accept=accept)

    async def _respond_later(
        self, request: Request, pending: Awaitable[Response], started: float
    ) -> None:
        try:
            response = await pending
        except ConnectionError:  # the client left while the handler waited on it
            self._task = None
            self.abort()
            self.flow.close_writer()
            return
        except Exception as exc:
            response = self._error(request, exc)
        self._task = None
        if self.closed:  # cut or gone while the handler worked
            response.body.release()
            self.flow.close_writer()
            return
        self._respond(request, response, started)
        if self.phase is Phase.IDLE:
            self._process()

    def _respond(self, request: Request, response: Response, started: float) -> None:
        """Frame and send a response; synchronous when the body allows it."""
        body = response.body
        try:
            keep_alive = (
                request.keep_alive
                and not self.ctx.stopping
                # a body left unread (or refused unread) still occupies the stream
                and (not request.has_body or (self._body is not None and self._body.done))
            )
            try:
                framing = frame_head(
                    response,
                    method=request.method,
                    http11=request.http11,
                    keep_alive=keep_alive,
                    date=self.ctx.date_line(),
                    extra=_id_line(request.id),
                )
            except ValueError as exc:  # a header value holding CR or LF: never sent
                body.release()
                response = self._error(request, exc)
                body = response.body
                framing = frame_head(response, method=request.method, http11=request.http11,
                                     keep_alive=False, date=self.ctx.date_line(),
                                     extra=_id_line(request.id))  # fmt: skip
            if not framing.send_body:
                self.transport.write(framing.head)
                self._finished(request, response, framing, 0, started)
                return
            self.body_sent = 0
            if body.stream is None:
                small = self.ctx.config.small_body
                inline = transfer.inline_answer(framing.head, body.parts, body.length, small)
                if inline is not None:
                    self.transport.write(inline)
                    sent = len(inline) - len(framing.head)
                    self._finished(request, response, framing, sent, started)
                    return
            send = transfer.zero_copy_now(self, framing, body, self.ctx.sendfile)
        except BaseException:
            body.release()
            raise
        self._enter(Phase.SENDING)
        if send is not None:
            # A handle, not a task: a task's setup and steps are about a seventh
            # of a 64 KiB range's Python. Not sent here either: the loop first
            # reads every ready request, then the sends run back to back, which
            # costs the kernel less than sends between reads (docs/performance.md).
            self._pending = (request, response, framing, started, send)
            self._task = self.loop.call_soon(self._send_zero_copy)
        else:
            self._task = self.loop.create_task(
                self._transfer(request, response, framing, started, None, "")
            )

    def _send_zero_copy(self) -> None:
        """The first step of a zero-copy send; a task carries on only if it blocks."""
        # What it sends waits in a slot: arguments through call_soon cost more.
        assert self._pending is not None
        request, response, framing, started, send = self._pending
        self._pending = None
        self._task = None
        try:
            if self.closed:  # cut before this ran: not even the head goes out
                raise ConnectionResetError("connection lost")
            state = send.advance()
        except Exception as exc:
            failure = transfer.aborted(exc) if isinstance(exc, transfer.SEND_FAILURES) else exc
            self._aborted(request, response, started, failure)
            return
        if state == zerocopy.DONE:
            self._sent(request, response, framing, started)
        else:
            self._task = self.loop.create_task(
                self._transfer(request, response, framing, started, send, state)
            )

    async def _transfer(
        self,
        request: Request,
        response: Response,
        framing: Framing,
        started: float,
        send: zerocopy.ZeroCopySend | None,
        state: str,
    ) -> None:
        """Send the body (or, given `send`, the rest of a zero-copy send whose first
        step returned `state`), then finish the answer."""
        try:
            if send is None:
                await transfer.send_body(self, framing, response.body, self.ctx.sendfile)
            else:
                await transfer.finish_zero_copy(send, state)
        except BaseException as exc:
            self._aborted(request, response, started, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._sent(request, response, framing, started)

    def _sent(self, request: Request, response: Response, framing: Framing, started: float) -> None:
        """The whole body is out: finish the answer and go on to the next request."""
        self._task = None
        self._finished(request, response, framing, self.body_sent, started)
        if self.phase is Phase.IDLE:
            self._process()
        elif self.phase is Phase.CLOSED:
            self.flow.close_writer()  # lost after the last byte: nobody else closes it

    def _aborted(
        self, request: Request, response: Response, started: float, exc: BaseException
    ) -> None:
        """The body could not be sent whole: log it, release it, cut the connection."""
        if not isinstance(exc, transfer.TransferAborted | asyncio.CancelledError):
            # The head is out: the id cannot reach this client, but names the line.
            log_request_failure(log, request.id, exc, request.method, request.target)
        reason = str(exc) or type(exc).__name__
        self.ctx.access_log.record(self, request, response.status, self.body_sent, started, reason)
        tally = self.ctx.tally
        if tally is not None:
            tally.count(request.method, response.status, self.body_sent,
                        time.monotonic() - started)  # fmt: skip
        response.body.release()
        self.abort()  # connection_lost follows on a later turn of the loop
        self._task = None
        self.flow.close_writer()

    def _finished(
        self, request: Request, response: Response, framing: Framing, sent: int, started: float
    ) -> None:
        response.body.release()
        ctx = self.ctx
        ctx.access_log.record(self, request, response.status, sent, started)
        tally = ctx.tally
        if tally is not None:
            tally.count(request.method, response.status, sent, time.monotonic() - started)
        if self.closed:
            return  # cut or gone meanwhile: nothing follows
        if framing.keep_alive and not self.ctx.closing_idle:
            self._enter(Phase.IDLE)
        else:  # the last answer: said so, or the server stopped while it went out
            self.close()

    def _answer_protocol_error(self, exc: ProtocolError) -> None:
        response = error_response(exc.status, exc.error, exc.detail, exc.headers)
        rid = new_request_id()
        framing = frame_head(response, method="GET", http11=True, keep_alive=False,
                             date=self.ctx.date_line(), extra=_id_line(rid))  # fmt: skip
        payload = b"".join(response.body.parts)  # type: ignore[arg-type]
        self.transport.write(framing.head + payload)
        self.ctx.access_log.record_error(self, exc.status, rid)
        tally = self.ctx.tally
        if tally is not None:
            tally.count("other", exc.status, len(payload), 0.0)
        self.close()  # its bytes get the send timeout to go out

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Close after the buffered bytes are out; a client that never reads them is cut."""
        if self.closed:
            return
        self._enter(Phase.CLOSING)
        self.transport.close()
        self._linger()

    def _linger(self) -> None:
        if self.transport.get_write_buffer_size():
            self._arm(SEND, self.ctx.config.send_timeout)

    def abort(self) -> None:
        """Cut the connection now; a task still answering sends nothing more."""
        phase = self.phase
        if phase is not Phase.CLOSED:
            if phase is not Phase.CLOSING:
                self._enter(Phase.CLOSING)
            self.transport.abort()

    def shutdown(self) -> None:
        """Server is stopping: an answer in progress goes out, then the connection
        closes (_finished sees ServerContext.closing_idle); any other closes now,
        even with half a head in: nothing was promised for it, the client may retry.
        """
        phase = self.phase
        if phase is Phase.IDLE or phase is Phase.HEAD:
            self.close()

    # -- timeouts -----------------------------------------------------------------

    def _arm(self, kind: str, timeout: float) -> None:
        if kind == SEND and (self.deadline.kind != SEND or not self.deadline.armed):
            self._unsent_mark = unsent_bytes(self.transport)
        self.deadline.arm(kind, timeout)

    def _expired(self, kind: str) -> float | None:
        """The connection's deadline passed: act, or return a timeout to wait on."""
        phase = self.phase
        if phase is Phase.CLOSED:
            return None
        config = self.ctx.config
        if kind == SEND:
            unsent = unsent_bytes(self.transport)
            if unsent < self._unsent_mark:  # the client took bytes: slow, not stalled
                self._unsent_mark = unsent
                return config.send_timeout
            log.info("closing %s: no progress sending for %ss", self.peer, config.send_timeout)
            self.abort()
        elif kind == BODY:
            self.flow.fail_input(
                HttpError(408, "request_timeout", "request body not received in time")
            )
        elif phase is Phase.HEAD and kind == HEAD and self.parser.mid_request:
            self._answer_protocol_error(
                ProtocolError(408, "request_timeout", "request head not received in time")
            )
        else:  # keep-alive timeout, or a connection that never sent a byte
            self.close()
        return None

    # -- what body writers need (transfer.Connection) -------------------------------

    def progress(self) -> None:
        if self.deadline.kind == SEND and self.deadline.armed:
            self.deadline.extend(self.ctx.config.send_timeout)

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if not self.closed:
            await self.flow.drain()
            if not self.closed:  # not cut while it waited
                return
        raise ConnectionResetError("connection lost")

    async def flush(self) -> None:
        """Wait until the transport's buffer is empty (before writing beside it)."""
        if not self.closed:
            await self.flow.flush()
            if not self.closed:
                return
        raise ConnectionResetError("connection lost")

    async def send_while_writable(self, fd: int, send: Callable[[], str]) -> str:
        """FlowControl.send_while_writable, under the send timeout."""
        self._arm(SEND, self.ctx.config.send_timeout)  # send() extends it on progress
        try:
            return await self.flow.send_while_writable(fd, send)
        finally:
            self.deadline.disarm()

    async def wait_for_body(self) -> None:
        """Wait for more request-body bytes (RequestBody.read calls this)."""
        if self.closed or self.flow.input_ended:
            raise ConnectionResetError("client closed before the body ended")
        self._arm(BODY, self.ctx.config.body_timeout)
        try:
            await self.flow.wait_for_input()
        finally:
            self.deadline.disarm()

    def socket_writer(self) -> zerocopy.SocketWriter | None:
        return self.flow.socket_writer()


def _id_line(rid: str) -> bytes:
    """The X-Request-Id line (a request id is ASCII: made so, or checked to be tchar)."""
    return b"X-Request-Id: " + rid.encode("ascii") + b"\r\n"
