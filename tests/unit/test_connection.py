"""One HttpConnection driven event by event through a recording transport.

The transport is the part a test must stand in for: a real socket cannot be
told to pause writing, or to deliver EOF, at one exact point of an answer.
It records every call; a scripted app answers each request in a way its path
names (at once, in a task, streamed, reading the request body), and counts
the release of every body it hands out. Deadlines run on a clock the test
moves, so no test waits for one. Hypothesis then throws random interleavings
of bytes, pauses, resumes, EOF, deadlines, the server stopping and loss at
the connection, and checks what must always hold: every body released
exactly once, nothing written after the close, answers in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import types
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.body import Body, BodyReader, FileRegion
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.server.accesslog import AccessLog
from ferryman.server.connection import HttpConnection
from ferryman.server.context import ServerContext
from ferryman.server.deadline import Timers
from tests.asynctime import FakeLoop

BIG = 100_000  # over four times --small-body: sent by a task
UPLOAD = 3000  # request-body bytes of an upload


class FakeTransport(asyncio.Transport):
    """Records what the connection asks of it; the test decides what it reports."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        super().__init__()
        self.sock = sock
        self.out = bytearray()
        self.calls: list[str] = []
        self.buffered = 0  # what get_write_buffer_size() answers
        self.closing = False
        self.reading = True
        self.late_writes: list[bytes] = []  # written after close() or abort()
        self.misuse: list[str] = []  # pause while paused, resume while reading

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            self.late_writes.append(bytes(data))
        self.out += data
        self.buffered += len(data)

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")
        if not self.reading:
            self.misuse.append("pause_reading while paused")
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")
        if self.reading:
            self.misuse.append("resume_reading while reading")
        self.reading = True

    def close(self) -> None:
        if not self.closing:  # a second close() does nothing on a real transport
            self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        return ("192.0.2.7", 40000) if name == "peername" else default


class ScriptedApp:
    """Answers by path; numbers its answers (X-N) and counts each body's releases."""

    def __init__(self, file: Path) -> None:
        self.file = file  # what /file answers with, sendfile'd on a real socket
        self.handled = 0
        self.releases: list[int] = []  # per body handed out
        self.read: list[int] = []  # request-body bytes each upload handler read
        self.stream_end: asyncio.Future[None] | None = None  # set: streams wait for it

    def handler(self) -> Any:
        return self.handle

    def body(self, size: int) -> Body:
        index = len(self.releases)
        self.releases.append(0)

        def release() -> None:
            self.releases[index] += 1

        return Body([b"x" * size], cleanup=release)

    def answer(self, size: int, status: int = 200) -> Response:
        self.handled += 1
        return Response(status, [("X-N", str(self.handled - 1))], self.body(size))

    def handle(self, request: Request, body: BodyReader | None) -> Response | Awaitable[Response]:
        path = request.path.decode()
        if path == "/small":
            return self.answer(100)
        if path == "/big":
            return self.answer(BIG)
        if path in ("/stream", "/chunked"):  # a declared length, or none
            response = self.answer(0)
            length = 3000 if path == "/stream" else None
            response.body = Body(
                stream=self._chunks(), length=length, cleanup=response.body.cleanup
            )
            return response
        if path in ("/file", "/shrunk", "/broken"):
            return self._file(path)
        if path == "/slow":
            return self._slow()
        if path == "/injected":  # a header value no HTTP/1.1 head can carry
            self.handled += 1
            return Response(200, [("X-Bad", "a\r\nSet-Cookie: x=1")], self.body(100))
        if path == "/injected-later":
            return self._injected_later()
        if path in UPLOADS:
            assert body is not None
            return self._upload(body, refuse=path == "/refuse")
        raise AssertionError(path)

    def _file(self, path: str) -> Response:
        """The file, sendfile'd on a real socket; `/shrunk` promises 4 KiB more than
        the file holds (it shrank after its answer was planned), `/broken` names a
        descriptor no system call accepts (a bug in what the answer was given)."""
        self.handled += 1
        fd = os.open(self.file, os.O_RDONLY)
        index = len(self.releases)
        self.releases.append(0)

        def release() -> None:
            self.releases[index] += 1
            os.close(fd)

        size = self.file.stat().st_size
        if path == "/shrunk":
            size += 4096
        region = FileRegion(2**40 if path == "/broken" else fd, 0, size)
        return Response(200, [("X-N", str(self.handled - 1))], Body([region], cleanup=release))

    async def _chunks(self) -> AsyncIterator[bytes]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield b"x" * 1000
        await asyncio.sleep(0)  # the source's last read, which finds the end
        if self.stream_end is not None:
            await self.stream_end

    async def _slow(self) -> Response:
        for _ in range(3):
            await asyncio.sleep(0)
        return self.answer(100)

    async def _injected_later(self) -> Response:
        await asyncio.sleep(0)
        self.handled += 1
        return Response(200, [("X-Bad", "a\nb")], self.body(100))

    async def _upload(self, body: BodyReader, refuse: bool) -> Response:
        self.read.append(0)
        async for chunk in body:
            self.read[-1] += len(chunk)
            if refuse:
                raise HttpError(413, "content_too_large", "refused after the first piece")
        return self.answer(10, 201)


UPLOADS = ("/upload", "/continue", "/refuse")  # PUTs whose handler reads the body


def request(path: str, *, close: bool = False) -> bytes:
    head = f"{'PUT' if path in UPLOADS else 'GET'} {path} HTTP/1.1\r\nHost: t\r\n"
    if close:
        head += "Connection: close\r\n"
    if path == "/continue":
        head += "Expect: 100-continue\r\n"
    if path in UPLOADS:
        return (head + f"Content-Length: {UPLOAD}\r\n\r\n").encode() + b"u" * UPLOAD
    return (head + "\r\n").encode()


class Harness:
    def __init__(self, tmp_path: Path, sock: socket.socket | None = None, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.failures: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.failures.append(context))
        # Zero-copy only with a real socket to duplicate; a small --small-body
        # sends /file from a task.
        self.config = Config(
            source=str(tmp_path), sendfile=sock is not None, small_body=1024, **settings
        )
        file = tmp_path / "file.bin"
        file.write_bytes(b"f" * 20_000)
        self.app = ScriptedApp(file)
        self.ctx = ServerContext(self.config, self.app, self.loop, AccessLog("off"))  # type: ignore[arg-type]
        self.clock = FakeLoop()
        self.ctx.timers = Timers(self.clock)  # type: ignore[arg-type]
        self.conn = HttpConnection(self.ctx)
        self.transport = FakeTransport(sock)
        self.conn.connection_made(self.transport)
        self.lost = False

    def step(self, turns: int = 1) -> None:
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))

    def settle(self) -> None:
        self.step(40)

    def send(self, data: bytes) -> None:
        self.conn.data_received(data)

    def lose(self) -> None:
        self.lost = True
        self.conn.connection_lost(None)

    def answers(self) -> list[int]:
        return [int(n) for n in re.findall(rb"X-N: (\d+)", bytes(self.transport.out))]

    def statuses(self) -> list[int]:
        return [int(s) for s in re.findall(rb"HTTP/1.1 (\d{3}) ", bytes(self.transport.out))]

    def finish(self) -> None:
        """The client leaves; every task must end and every body be released once."""
        if not self.lost:
            self.lose()
        self.settle()
        assert not [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        assert self.failures == []
        assert self.app.releases == [1] * len(self.app.releases)
        assert self.transport.late_writes == []
        assert self.transport.misuse == []
        assert self.conn not in self.ctx.connections

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):  # only after a failed test
            task.cancel()
        self.settle()
        self.loop.close()


@contextlib.contextmanager
def on_socket(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket] | None = None
) -> Iterator[tuple[Harness, socket.socket]]:
    """A harness whose connection has a real socket (so file bodies go zero-copy),
    and the client's end of it; both closed after."""
    ours, theirs = pair or socket.socketpair()
    h = Harness(tmp_path, ours)
    try:
        yield h, theirs
    finally:
        h.close()
        ours.close()
        theirs.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


def test_pipelined_requests_are_answered_in_order_one_at_a_time(harness: Harness) -> None:
    harness.send(request("/big") + request("/small") + request("/slow") + request("/stream"))
    assert harness.answers() == []  # the big body goes from a task; the rest wait behind it
    harness.settle()
    assert harness.answers() == [0, 1, 2, 3]
    assert harness.statuses() == [200, 200, 200, 200]
    assert harness.app.releases == [1, 1, 1, 1]
    assert "close" not in harness.transport.calls  # keep-alive
    harness.finish()


def test_pipelined_bytes_past_the_limit_pause_reading_until_the_loop_wants_more(
    harness: Harness,
) -> None:
    harness.send(request("/big"))
    assert harness.transport.calls == []
    harness.send(request("/small") * 30000)  # about 1 MiB of requests while the task sends
    assert harness.transport.calls == ["pause_reading"]
    harness.settle()
    assert harness.transport.calls == ["pause_reading", "resume_reading"]
    assert harness.answers() == list(range(30001))
    harness.finish()


@pytest.mark.parametrize("limit", [0, 100, 4096])
def test_the_pipeline_buffer_is_the_limit_it_says(tmp_path: Path, limit: int) -> None:
    """--pipeline-buffer: reading pauses once more unparsed bytes than it wait behind an
    answer in progress, and not before."""
    h = Harness(tmp_path, pipeline_buffer=limit)
    try:
        h.send(request("/big"))
        one = request("/small")
        held = 0
        while held + len(one) <= limit:
            h.send(one)
            held += len(one)
            assert h.transport.calls == []
        h.send(one)
        assert h.transport.calls == ["pause_reading"]
        h.settle()
        assert h.transport.calls == ["pause_reading", "resume_reading"]
        h.finish()
    finally:
        h.close()


def test_the_write_buffer_is_the_transports_high_water_mark(tmp_path: Path) -> None:
    limits: list[int | None] = []
    h = Harness(tmp_path, write_buffer=12345)
    try:
        h.transport.set_write_buffer_limits = (  # type: ignore[method-assign]
            lambda high=None, low=None: limits.append(high)
        )
        h.conn.connection_made(h.transport)
        assert limits == [12345]
    finally:
        h.close()


def test_pipelined_bytes_past_the_limit_pause_reading_while_writing_is_paused(
    harness: Harness,
) -> None:
    harness.send(request("/small"))
    harness.conn.pause_writing()  # a client that sends requests and reads no answer
    harness.send(request("/small") * 30000)
    assert harness.transport.calls == ["pause_reading"]
    assert harness.answers() == [0]
    harness.transport.buffered = 0
    harness.conn.resume_writing()
    assert harness.transport.calls == ["pause_reading", "resume_reading"]
    assert harness.answers() == list(range(30001))
    harness.finish()


def test_a_body_is_read_while_writing_is_paused_and_the_answer_waits(harness: Harness) -> None:
    harness.send(request("/upload")[:200])
    harness.conn.pause_writing()  # an earlier answer still fills the transport's buffer
    harness.settle()
    harness.send(request("/upload")[200:] + request("/big") + request("/small"))
    harness.settle()
    assert harness.app.read == [UPLOAD]  # reading never waited for writing
    assert harness.answers() == [0]  # the 201 went out whole; the loop waits for resume
    harness.conn.resume_writing()
    harness.conn.pause_writing()  # the big answer's task will find the buffer full
    harness.settle()
    assert harness.answers() == [0, 1]  # its task waits in drain(), the next request too
    assert harness.app.releases == [1, 0]
    harness.transport.buffered = 0
    harness.conn.resume_writing()
    harness.settle()
    assert harness.answers() == [0, 1, 2]
    assert harness.statuses() == [201, 200, 200]
    harness.finish()


def test_a_client_closing_mid_body_gets_no_answer_and_is_cut(harness: Harness) -> None:
    harness.send(request("/upload")[:-1000])
    harness.settle()
    harness.conn.eof_received()
    harness.settle()
    assert harness.statuses() == []
    assert harness.transport.calls == ["abort"]
    assert harness.app.read == [UPLOAD - 1000]
    harness.finish()


def test_a_client_lost_mid_body_gets_no_answer(harness: Harness) -> None:
    harness.send(request("/upload")[:-1000])
    harness.settle()
    harness.lose()
    harness.settle()
    assert harness.statuses() == []
    harness.finish()


def test_keepalive_idle_then_closed_by_its_timeout(harness: Harness) -> None:
    harness.send(request("/small"))
    assert harness.statuses() == [200]
    harness.clock.advance(harness.config.keepalive_timeout - 1)
    assert harness.transport.calls == []
    harness.clock.advance(2)
    assert harness.transport.calls == ["close"]
    assert b"Connection: close" not in harness.transport.out
    harness.finish()


def test_a_trickled_head_gets_408_at_the_header_timeout(harness: Harness) -> None:
    harness.send(request("/small")[:10])
    harness.clock.advance(harness.config.header_timeout + 1)
    assert harness.statuses() == [408]
    assert harness.transport.calls == ["close"]
    harness.finish()


def test_an_error_answer_mid_body_closes_the_connection(harness: Harness) -> None:
    harness.send(request("/refuse") + request("/small"))
    harness.settle()
    assert harness.statuses() == [413]
    assert b"Connection: close" in harness.transport.out
    assert harness.transport.calls == ["close"]  # the rest of the body is never parsed
    assert harness.app.handled == 0
    harness.finish()


def test_a_body_never_sent_gets_408_at_the_body_timeout(harness: Harness) -> None:
    harness.send(request("/upload")[:-1000])
    harness.settle()
    harness.clock.advance(harness.config.body_timeout + 1)
    harness.settle()
    assert harness.statuses() == [408]
    assert harness.transport.calls == ["close"]
    harness.finish()


def test_a_client_gone_while_its_answer_is_sent_releases_the_body(harness: Harness) -> None:
    harness.send(request("/big") + request("/small"))
    harness.conn.pause_writing()
    harness.settle()
    assert harness.app.releases == [0]
    harness.lose()
    harness.settle()
    assert harness.app.releases == [1]
    assert harness.answers() == [0]  # nothing after the loss
    harness.finish()


def test_a_stalled_client_is_cut_at_the_send_timeout_and_the_body_released(
    harness: Harness,
) -> None:
    harness.send(request("/big"))
    harness.conn.pause_writing()
    harness.settle()
    harness.clock.advance(harness.config.send_timeout + 1)
    assert harness.transport.calls == ["abort"]
    harness.finish()


def test_a_closing_connection_keeps_its_send_timeout_after_resume_writing(
    harness: Harness,
) -> None:
    harness.send(request("/small", close=True))
    assert harness.transport.calls == ["close"]  # its answer is still in the buffer
    harness.conn.pause_writing()
    harness.clock.advance(1)
    harness.conn.resume_writing()  # some went out, then the client stalls
    harness.clock.advance(harness.config.send_timeout + 1)
    assert harness.transport.calls == ["close", "abort"]
    harness.finish()


def test_an_answer_cut_before_its_task_runs_sends_nothing(harness: Harness) -> None:
    harness.send(request("/big"))  # its task is made, not yet run
    harness.conn.pause_writing()
    harness.clock.advance(harness.config.send_timeout + 1)
    assert harness.transport.calls == ["abort"]
    harness.settle()
    assert harness.transport.out == b""
    assert harness.app.releases == [1]
    harness.finish()


def test_100_continue_goes_out_at_the_first_read_only(harness: Harness) -> None:
    harness.send(request("/continue")[:-UPLOAD])
    harness.settle()
    assert harness.statuses() == [100]
    harness.send(request("/continue")[-UPLOAD:])
    harness.settle()
    assert harness.statuses() == [100, 201]
    harness.finish()


def test_a_writer_woken_after_the_cut_writes_nothing_more(harness: Harness) -> None:
    harness.send(request("/stream"))
    harness.conn.pause_writing()
    harness.settle()  # the head is out; the first chunk waits in drain()
    harness.clock.advance(harness.config.send_timeout + 1)
    assert harness.transport.calls == ["abort"]
    harness.conn.resume_writing()
    harness.settle()
    assert harness.app.releases == [1]
    harness.finish()


def test_a_body_read_after_the_cut_sends_no_100_continue(harness: Harness) -> None:
    harness.send(request("/continue")[:-UPLOAD])  # its handler's task is made, not yet run
    harness.conn.pause_writing()
    harness.clock.advance(harness.config.send_timeout + 1)
    assert harness.transport.calls == ["abort"]
    harness.settle()
    assert harness.transport.out == b""
    harness.finish()


def test_the_socket_duplicate_is_closed_when_the_client_leaves_at_a_streams_end(
    tmp_path: Path,
) -> None:
    with on_socket(tmp_path) as (h, theirs):
        h.send(request("/file"))
        h.settle()
        assert theirs.recv(65536).startswith(b"HTTP/1.1 200 OK\r\nX-N: 0")  # sendfile'd
        with_duplicate = len(os.listdir("/proc/self/fd"))
        h.app.stream_end = h.loop.create_future()
        h.send(request("/stream"))
        h.settle()  # every byte is out; the stream's source has yet to find its end
        assert h.answers() == [1]
        h.lose()
        h.app.stream_end.set_result(None)
        h.settle()
        assert len(os.listdir("/proc/self/fd")) == with_duplicate - 1
        h.finish()


def receive_exactly(sock: socket.socket, count: int, h: Harness | None = None) -> bytes:
    """`count` bytes from the client's end, turning the harness's loop while it waits."""
    sock.setblocking(False)
    got = b""
    for _ in range(1000):
        try:
            got += sock.recv(65536)
        except BlockingIOError:
            if h is None:
                break
            h.step()
        if len(got) >= count:
            break
    return got


FILE_ANSWER = 20_000  # Harness's file.bin, sendfile'd as /file


def narrow_tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection whose buffers together hold less than FILE_ANSWER."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        theirs = socket.socket()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before the window
        theirs.connect(server.getsockname())
        ours, _ = server.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2048)
    ours.setblocking(False)  # as a transport's socket is
    return ours, theirs


def test_a_file_answer_the_socket_takes_at_once_goes_out_without_a_task(
    tmp_path: Path,
) -> None:
    """A zero-copy send starts on the loop's next turn, after the reads of this one,
    and needs no task when the socket takes it whole."""
    with on_socket(tmp_path) as (h, theirs):
        h.send(request("/file") + request("/file"))
        with pytest.raises(BlockingIOError):  # not sent inside the read callback
            theirs.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK)
        for _ in range(2):
            h.step()
            assert not asyncio.all_tasks(h.loop)
        assert h.app.releases == [1, 1] and h.conn._task is None
        got = receive_exactly(theirs, 2 * (len(b"\r\n\r\n") + FILE_ANSWER))
        answers = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"X-N: 0", b"X-N: 1"]
        assert [a.partition(b"\r\n\r\n")[2] for a in answers] == [b"f" * FILE_ANSWER] * 2
        assert h.app.releases == [1, 1]
        h.finish()


def test_a_file_answer_the_socket_cannot_take_at_once_is_finished_by_a_task(
    tmp_path: Path,
) -> None:
    with on_socket(tmp_path, narrow_tcp_pair()) as (h, theirs):
        h.send(request("/file") + request("/small"))
        h.step()
        assert isinstance(h.conn._task, asyncio.Task)  # the socket took part of it
        assert h.app.releases == [0]
        assert h.transport.out == b""  # the pipelined answer waits for the file's end
        got = receive_exactly(theirs, FILE_ANSWER + 100, h)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\nX-N: 0\r\n")
        assert body == b"f" * FILE_ANSWER
        h.settle()
        assert h.answers() == [1]
        assert h.app.releases == [1, 1]
        h.finish()


def test_a_file_answer_to_a_client_already_gone_is_cut_and_released(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with on_socket(tmp_path) as (h, theirs):
        theirs.close()
        h.send(request("/file") + request("/file"))
        h.step()
        assert h.transport.calls == ["abort"]
        assert h.app.releases == [1]  # the second was never answered
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        h.finish()


def test_a_file_that_shrank_under_its_answer_cuts_it_without_a_failure_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sendfile finds the end of the file before the promised length in the first
    step: the client gets what the file holds, then the connection is cut (no
    other honest end once the head is out); not a bug, so nothing is logged."""
    with on_socket(tmp_path) as (h, theirs):
        h.send(request("/shrunk") + request("/file"))
        h.step()
        assert h.transport.calls == ["abort"]
        assert h.app.releases == [1]  # the pipelined one was never answered
        assert h.conn._task is None
        got = receive_exactly(theirs, len(b"\r\n\r\n") + FILE_ANSWER)
        head, _, body = got.partition(b"\r\n\r\n")
        assert f"Content-Length: {FILE_ANSWER + 4096}".encode() in head
        assert body == b"f" * FILE_ANSWER
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        h.finish()


def test_a_bug_in_the_first_step_of_a_file_answer_is_logged_and_the_answer_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An error that is no send failure (here the system call refuses the descriptor
    before any byte moves) is logged with the request, the body released and the
    connection cut; it never reaches the loop's exception handler."""
    with on_socket(tmp_path) as (h, theirs):
        h.send(request("/broken") + request("/file"))
        h.step()
        assert h.transport.calls == ["abort"]
        assert h.app.releases == [1]
        got = theirs.recv(65536, socket.MSG_DONTWAIT)  # the head went out, no body byte
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n")
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failures) == 1
        message = failures[0].getMessage()  # what failed, where, and the request
        assert re.search(r"failed: (OverflowError|ValueError): .* \(at ferryman/", message)
        assert message.endswith("GET /broken")
        h.finish()  # no task left, every body released once, nothing on the loop's handler


def test_a_stopping_server_finishes_the_answer_in_progress_then_closes(
    harness: Harness,
) -> None:
    harness.send(request("/big") + request("/small"))
    harness.ctx.begin_shutdown()
    harness.settle()
    assert harness.answers() == [0]  # framed before the stop: keep-alive, yet the last
    assert harness.transport.calls == ["close"]
    harness.finish()


def test_an_idle_connection_closes_at_once_when_the_server_stops(harness: Harness) -> None:
    harness.send(request("/small"))
    harness.ctx.begin_shutdown()
    assert harness.transport.calls == ["close"]
    harness.finish()


# -- any interleaving -------------------------------------------------------------

KINDS = ["/small", "/big", "/stream", "/chunked", "/slow", "/upload", "/continue", "/refuse"]
EVENTS = st.one_of(
    st.tuples(st.just("data"), st.integers(1, 5000)),
    st.tuples(
        st.sampled_from(["pause", "resume", "drain", "eof", "lost", "stop", "cut"]), st.just(0)
    ),
    st.tuples(st.just("step"), st.integers(1, 5)),
    st.tuples(st.just("advance"), st.sampled_from([1, 30, 100])),
)


@pytest.mark.parametrize("path", ["/injected", "/injected-later"])
def test_an_answer_whose_head_cannot_be_framed_is_a_500_and_the_end(
    harness: Harness, path: str
) -> None:
    """A header value with CR or LF (a store's metadata, a bug) is never written: the
    client gets a 500 and the connection closes, whether the answer came at once or
    later; nothing is left waiting on it."""
    harness.send(request(path) + request("/small"))
    harness.settle()
    out = bytes(harness.transport.out)
    assert harness.statuses() == [500] and b"Set-Cookie" not in out and b"a\nb" not in out
    assert "close" in harness.transport.calls
    harness.finish()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
    events=st.lists(EVENTS, max_size=40),
)
def test_any_interleaving_keeps_the_invariants(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[str], events: list[tuple[str, int]]
) -> None:
    h = Harness(tmp_path_factory.getbasetemp())
    try:
        drive(h, kinds, events)
    finally:
        h.close()


def drive(h: Harness, kinds: list[str], events: list[tuple[str, int]]) -> None:
    stream = b"".join(request(kind) for kind in kinds)
    sent = 0
    paused = eof = False
    for name, arg in events:
        if h.lost:
            if name == "step":
                h.step(arg)
            elif name == "advance":
                h.clock.advance(arg)
            continue
        reading = not h.transport.closing and not eof
        if name == "data" and reading and sent < len(stream):
            h.send(stream[sent : sent + arg])
            sent += arg
        elif name == "eof" and reading:
            eof = True
            h.conn.eof_received()
        elif name == "pause" and not paused:
            paused = True
            h.conn.pause_writing()
        elif name == "resume" and paused:
            paused = False
            h.conn.resume_writing()
        elif name == "drain":
            h.transport.buffered = 0
        elif name == "lost":
            h.lose()
        elif name == "stop":  # the worker's graceful stop, past its keep-alive linger
            h.ctx.begin_shutdown()
        elif name == "cut":  # the grace period is over (ServerContext.wait_drained)
            h.conn.abort()
        elif name == "step":
            h.step(arg)
        elif name == "advance":
            h.clock.advance(arg)
    answers = h.answers()
    assert answers == list(range(len(answers)))  # in request order, none twice
    h.finish()


def reaches_itself(start: object, limit: int = 50_000) -> bool:
    """Whether `start` is in a reference cycle: reachable again from what it refers to."""
    import gc

    seen: set[int] = set()
    todo = list(gc.get_referents(start))
    while todo and len(seen) < limit:
        item = todo.pop()
        if item is start:
            return True
        if id(item) in seen or isinstance(item, (type, types.ModuleType)):
            continue
        seen.add(id(item))
        todo.extend(gc.get_referents(item))
    return False


def test_a_closed_connection_is_freed_by_reference_counts_alone(harness: Harness) -> None:
    """No reference cycle outlives a connection (the parser's llhttp callbacks, the
    deadline's): its objects go when it does, not at a garbage collection, which the
    worker therefore runs rarely (server/worker.py)."""
    conn = harness.conn
    parser, deadline = conn.parser, conn.deadline
    harness.send(request("/small") + request("/big"))
    harness.settle()
    assert harness.answers() == [0, 1]
    assert reaches_itself(parser) and reaches_itself(conn)  # the cycles, while it is open
    harness.finish()
    harness.conn = None  # type: ignore[assignment]  # the harness is reached through its loop
    assert not reaches_itself(parser)
    assert not reaches_itself(deadline)
    assert not reaches_itself(conn)
