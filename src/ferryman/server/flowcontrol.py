"""Flow control of one connection, both ways, in one object.

Reading. The client's bytes wait in the parser until something asks for
them: the request loop (the next request) or a handler reading the request
body. While an answer is in progress, or our writing is paused (a client
sending requests and reading no answers), nothing asks, so pipelined
requests, or a body its handler reads slowly, pile up there; past
`pipeline_buffer` unparsed bytes (--pipeline-buffer) the transport stops
reading (`hold`). It reads again as soon as something needs bytes
(`want_input`): the request loop finding no whole request, or the body's
reader finding the parser empty.

Writing. The transport calls pause_writing above `write_buffer` buffered bytes
(--write-buffer)
and resume_writing once its buffer has drained; a buffered writer waits in
`drain` meanwhile, and `flush` waits for an empty buffer. The zero-copy
writer bypasses the buffer: it sends on a duplicate of the socket (made at
its first use, closed with the connection) and `send_while_writable` waits
on the socket itself.

Each direction has one wait, with never more than one coroutine in it: a
writer (woken by resume_writing or the socket's writability) and a body
reader (woken by data_received). Waking with an exception ends the wait with
it: the peer left, or a deadline passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ferryman.server.zerocopy import BLOCKED, SocketWriter


class Waiter:
    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> bool:
        return self._future is not None

    async def wait(self) -> None:
        future = self._loop.create_future()
        self._future = future
        try:
            await future
        finally:
            if self._future is future:
                self._future = None

    def wake(self, exc: BaseException | None = None) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)


class FlowControl:
    """Pause and resume of a connection's reading and writing, and their two waits."""

    __slots__ = ("_input", "_loop", "_output", "_transport", "_writer", "input_ended",
                 "pipeline_buffer", "reading_paused", "write_buffer", "writing_paused")  # fmt: skip

    def __init__(
        self, loop: asyncio.AbstractEventLoop, write_buffer: int, pipeline_buffer: int
    ) -> None:
        self._loop = loop
        self.write_buffer = write_buffer  # transport buffer that pauses the loop's writes
        self.pipeline_buffer = pipeline_buffer  # unparsed bytes held before reading pauses
        self._transport: asyncio.Transport = None  # type: ignore[assignment]  # attach() sets it
        self.reading_paused = False  # we paused the transport's reading
        self.writing_paused = False  # the transport paused our writing
        self.input_ended = False  # the client sent EOF: no more bytes will come
        self._input = Waiter(loop)  # a handler waiting for request-body bytes
        self._output = Waiter(loop)  # a writer waiting for the socket or the buffer
        self._writer: SocketWriter | None = None

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=self.write_buffer)

    # -- reading ----------------------------------------------------------------

    def received(self) -> None:
        """Bytes arrived: a body reader waiting for them carries on."""
        self._input.wake()

    def hold(self, buffered: int) -> None:
        """Bytes arrived that nothing reads yet; past the limit, stop reading."""
        if buffered > self.pipeline_buffer and not self.reading_paused:
            self.reading_paused = True
            self._transport.pause_reading()

    def want_input(self) -> None:
        """Something needs the client's next bytes: read again."""
        if self.reading_paused:
            self.reading_paused = False
            self._transport.resume_reading()

    def end_of_input(self) -> None:
        self.input_ended = True
        self._input.wake(ConnectionResetError("client closed before the body ended"))

    def fail_input(self, exc: BaseException) -> None:
        """End a body reader's wait with `exc` (its deadline passed)."""
        self._input.wake(exc)

    async def wait_for_input(self) -> None:
        """Wait for more request-body bytes, reading again if reading was paused."""
        self.want_input()
        await self._input.wait()

    # -- writing ----------------------------------------------------------------

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> bool:
        """The transport's buffer drained; True if a writer was waiting for it (now woken)."""
        self.writing_paused = False
        if self._output.waiting:
            self._output.wake()
            return True
        return False

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if self.writing_paused:
            await self._output.wait()

    async def flush(self) -> None:
        """Wait until the transport's buffer is empty (before writing beside it)."""
        transport = self._transport
        if not transport.get_write_buffer_size():
            return
        transport.set_write_buffer_limits(high=0)  # pause now, resume when empty
        try:
            if self.writing_paused:
                await self._output.wait()
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=self.write_buffer)

    def socket_writer(self) -> SocketWriter | None:
        """The socket's duplicate, made at first use; None if none can be had."""
        if self._writer is None:
            if self._transport.get_extra_info("sslcontext") is not None:
                return None  # never plaintext beside a TLS transport (ServerContext.sendfile)
            try:
                self._writer = SocketWriter(self._transport.get_extra_info("socket"))
            except OSError:  # out of descriptors: the caller copies instead
                return None
        return self._writer

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def send_while_writable(self, fd: int, send: Callable[[], str]) -> str:
        """Call `send` whenever the socket (through the duplicate `fd`) takes bytes,
        until it answers something other than BLOCKED; return that answer.

        `send` runs in the writability callback itself, not in a task that the
        callback wakes: the socket's buffer is refilled one loop turn sooner,
        and big files cost about a tenth less CPU per GB (docs/performance.md).
        """
        answer = BLOCKED

        def on_writable() -> None:
            nonlocal answer
            try:
                answer = send()
            except Exception as exc:  # the peer left, the file shrank: the waiter raises it
                self._output.wake(exc)
                return
            if answer != BLOCKED:
                self._output.wake()

        self._loop.add_writer(fd, on_writable)
        try:
            await self._output.wait()
        finally:
            self._loop.remove_writer(fd)
        return answer

    # -- both -------------------------------------------------------------------

    def lost(self) -> None:
        """The connection is gone: every wait ends with ConnectionResetError."""
        self._output.wake(ConnectionResetError("connection lost"))
        self._input.wake(ConnectionResetError("connection lost"))
