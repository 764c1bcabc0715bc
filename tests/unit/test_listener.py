"""The listener: accept errors pause it and it resumes, a shared socket is taken one
connection per turn, and closing waits for the connections already accepted."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from ferryman.server import listener as listener_module
from ferryman.server.listener import BATCH_SHARED, Listener


class FlakySocket(socket.socket):
    """A listening socket whose first accepts fail as if the process were out of descriptors."""

    failures: list[int] = []

    def _accept(self) -> tuple[int, object]:  # what the listener calls
        if self.failures:
            raise OSError(self.failures.pop(0), "injected")
        accepted: tuple[int, object] = super()._accept()  # type: ignore[misc]
        return accepted


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_resource_errors_back_off_and_retry(code: int) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = FlakySocket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.failures = [code, code]
        made = asyncio.Event()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.set()
                transport.close()

        listener = Listener(loop, sock, Proto, lambda: 0, 10)
        listener.start()
        client = socket.create_connection(sock.getsockname())
        try:
            started = loop.time()
            await asyncio.wait_for(made.wait(), 5)
            # Two failures, each followed by a pause: the connection was not lost.
            assert loop.time() - started >= 2 * listener_module._BACKOFF * 0.9
        finally:
            client.close()
            await listener.close()

    asyncio.run(scenario())


def test_a_shared_socket_is_accepted_one_connection_per_turn() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_server(("127.0.0.1", 0))
        accepted = 0

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                nonlocal accepted
                accepted += 1
                transport.close()

        listener = Listener(loop, sock, Proto, lambda: 0, 10, BATCH_SHARED)
        clients = [socket.create_connection(sock.getsockname()) for _ in range(5)]
        try:
            listener.start()
            listener._on_readable()  # one readiness event
            assert len(listener.setting_up) == 1
            for _ in range(200):
                if accepted == 5:
                    break
                await asyncio.sleep(0.01)
            assert accepted == 5  # the rest on later turns of the loop
        finally:
            for client in clients:
                client.close()
            await listener.close()

    asyncio.run(scenario())


def test_closing_waits_for_the_connections_already_accepted() -> None:
    """A connection accepted in the loop turn of the stop is set up (and so
    counted by the drain) by the time close() returns; none accepted after."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_server(("127.0.0.1", 0))
        opened: list[asyncio.BaseTransport] = []

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                opened.append(transport)

        listener = Listener(loop, sock, Proto, lambda: len(opened), 10, BATCH_SHARED)
        address = sock.getsockname()
        first, second = (socket.create_connection(address) for _ in range(2))
        try:
            listener.start()
            listener._on_readable()  # the readiness event of the stop's loop turn
            assert len(listener.setting_up) == 1 and not opened
            await listener.close()
            assert len(opened) == 1 and not listener.setting_up
            for _ in range(5):
                await asyncio.sleep(0)
            assert len(opened) == 1  # the second stays for the other workers
        finally:
            first.close()
            second.close()
            for transport in opened:
                transport.close()

    asyncio.run(scenario())


def test_a_connection_whose_setup_fails_frees_its_slot_and_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_server(("127.0.0.1", 0))
        failed: list[socket.socket] = []

        async def failing_setup(factory: object, conn: socket.socket) -> None:
            failed.append(conn)
            raise OSError(errno.ENOTCONN, "the client left before its setup")

        monkeypatch.setattr(loop, "connect_accepted_socket", failing_setup)
        listener = Listener(loop, sock, asyncio.Protocol, lambda: 0, 1, BATCH_SHARED)
        client = socket.create_connection(sock.getsockname())
        try:
            listener.start()
            listener._on_readable()
            assert len(listener.setting_up) == 1 and listener._at_limit()  # the one slot
            await listener.close()
            assert not listener.setting_up and not listener._at_limit()  # free again
            assert len(failed) == 1 and failed[0].fileno() == -1  # closed, not leaked
        finally:
            client.close()

    asyncio.run(scenario())


# -- alone on uvloop, the loop's own server accepts -------------------------------


def on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        # Transports a failed scenario left open close first: uvloop's close
        # would otherwise wait on them for ever.
        for transport in Held.every_open:
            transport.abort()
        Held.every_open.clear()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


class Held:
    """Connections a test's protocol keeps, telling the listener of each as a
    worker's connection does (ServerContext.connection_opened and _closed)."""

    every_open: list[asyncio.Transport] = []

    def __init__(self) -> None:
        self.open: list[asyncio.Transport] = []
        Held.every_open.clear()
        self.listener: Listener | None = None

    def protocol(self) -> asyncio.Protocol:
        held = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                held.open.append(transport)  # type: ignore[arg-type]
                Held.every_open.append(transport)  # type: ignore[arg-type]
                assert held.listener is not None
                held.listener.connection_opened()
                transport.write(b"ok")  # type: ignore[attr-defined]

            def connection_lost(self, exc: Exception | None) -> None:
                held.open.remove(self.transport)  # type: ignore[arg-type]
                assert held.listener is not None
                held.listener.connection_closed()

        return Proto()

    def listen(self, limit: int, sock: socket.socket | None = None) -> Listener:
        """A listener alone on `sock` (a new one on a free port if None), on this loop."""
        if sock is None:
            sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        loop = asyncio.get_running_loop()
        self.listener = Listener(loop, sock, self.protocol, lambda: len(self.open), limit)
        return self.listener


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in time")


async def greeted(address: tuple[str, int]) -> socket.socket:
    """A client the server answered (its protocol writes b"ok" when made)."""
    loop = asyncio.get_running_loop()
    client = socket.create_connection(address)
    client.setblocking(False)
    assert await asyncio.wait_for(loop.sock_recv(client, 2), 5) == b"ok"
    return client


def test_alone_on_uvloop_the_loop_accepts_every_client() -> None:
    async def scenario() -> None:
        held = Held()
        listener = held.listen(100)
        sock = listener.sock
        assert listener.loop_accepts
        listener.start()
        clients = [await greeted(sock.getsockname()) for _ in range(20)]
        assert len(held.open) == 20 and listener._server is not None
        assert listener._unopened == 0  # each told the listener it was made
        await listener.close()
        assert listener._server is None and sock.fileno() == -1
        for client in clients:
            client.close()

    on_uvloop(scenario)


def test_the_loop_server_stops_at_the_limit_and_starts_again_when_a_slot_frees() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        held = Held()
        listener = held.listen(3)
        sock = listener.sock
        listener.start()
        address = sock.getsockname()
        first = [await greeted(address) for _ in range(3)]
        await until(lambda: not listener.accepting)
        assert listener._server is None
        waiting = socket.create_connection(address)  # queued in the backlog
        waiting.setblocking(False)
        await asyncio.sleep(0.3)
        assert len(held.open) == 3  # not accepted while full
        held.open[0].close()  # a slot frees
        assert await asyncio.wait_for(loop.sock_recv(waiting, 2), 5) == b"ok"
        assert len(held.open) == 3 and not listener.accepting
        await listener.close()
        for client in [*first, waiting]:
            client.close()

    on_uvloop(scenario)


def test_a_queue_at_the_limit_is_taken_only_up_to_it() -> None:
    """libuv accepts one connection per turn of the loop, and the pause queued
    by the one that reaches the limit runs before the next: the rest wait in
    the backlog. (Were libuv to take a queue whole, the limit would be passed
    by what had queued: this fails then.)"""

    async def scenario() -> None:
        held = Held()
        listener = held.listen(3)
        sock = listener.sock
        queued = [socket.create_connection(sock.getsockname()) for _ in range(8)]
        try:
            listener.start()
            await until(lambda: not listener.accepting and len(held.open) == 3)
            await asyncio.sleep(0.3)
            assert len(held.open) == 3 and listener._server is None
        finally:
            await listener.close()
            for client in queued:
                client.close()

    on_uvloop(scenario)


def test_a_server_the_loop_stopped_by_itself_is_replaced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """uvloop closes its server on an accept error without a word: the listener
    notices, pauses and accepts again on a new one."""
    monkeypatch.setattr(listener_module, "_WATCH", 0.05)

    async def scenario() -> None:
        held = Held()
        listener = held.listen(100)
        sock = listener.sock
        listener.start()
        address = sock.getsockname()
        before = await greeted(address)
        stopped = listener._server
        assert stopped is not None
        stopped.close()  # what uvloop does on an accept error (its handle closed)
        await until(lambda: listener._server not in (None, stopped))
        after = await greeted(address)
        await listener.close()
        before.close()
        after.close()

    with caplog.at_level("WARNING", logger="ferryman.listener"):
        on_uvloop(scenario)
    assert "the event loop stopped its server" in caplog.text


def test_closing_the_loop_server_waits_for_the_connections_it_accepted() -> None:
    """A stop that comes between the loop's accept and connection_made (queued
    after it) returns only once the connection is made, so the drain counts it."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        held = Held()
        listener = held.listen(100)
        sock = listener.sock
        made = listener._made
        open_when_closed: list[int] = []
        stopping: list[asyncio.Task[None]] = []

        async def stop() -> None:
            await listener.close()
            open_when_closed.append(len(held.open))

        def made_then_stop() -> asyncio.Protocol:
            protocol = made()
            stopping.append(loop.create_task(stop()))  # queued before connection_made
            return protocol

        listener._made = made_then_stop  # type: ignore[method-assign]
        listener.start()
        client = socket.create_connection(sock.getsockname())
        try:
            await until(lambda: bool(open_when_closed))
            assert open_when_closed == [1] and listener._unopened == 0
        finally:
            client.close()

    on_uvloop(scenario)


OUT_OF_DESCRIPTORS = r"""
import asyncio, os, resource, socket, sys
import uvloop
from ferryman.server.listener import Listener

async def main():
    loop = asyncio.get_running_loop()
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    held = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            held.append(transport)
            listener.connection_opened()
            transport.write(b"ok")

        def data_received(self, data):  # any byte: let go of every connection
            for transport in list(held):
                transport.close()

        def connection_lost(self, exc):
            held.remove(next(t for t in held if t.is_closing()))
            listener.connection_closed()

    listener = Listener(loop, sock, Proto, lambda: len(held), 1000)
    listener.start()
    await asyncio.sleep(0.2)
    # Room for three connections more than what is open now.
    in_use = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 3, hard))
    print(sock.getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes it
    await listener.close()

uvloop.run(main())
"""


def test_out_of_descriptors_the_loop_server_goes_on() -> None:
    """A worker out of descriptors (EMFILE) with the loop accepting: the clients it
    cannot take are closed rather than left hanging, and once descriptors are free
    again it accepts as before, with no traceback."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())

        def answer(client: socket.socket) -> bytes:
            client.settimeout(3)
            try:
                return client.recv(2)
            except ConnectionResetError:
                return b""

        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        answers = [answer(client) for client in clients]
        served = [c for c, a in zip(clients, answers, strict=True) if a == b"ok"]
        assert 1 <= len(served) < len(clients) and b"" in answers  # some taken, the rest closed
        served[0].sendall(b"x")  # the child lets go of its connections
        for _ in range(100):
            late = socket.create_connection(("127.0.0.1", port))
            if answer(late) == b"ok":
                break
            late.close()
        else:
            raise AssertionError("no client served after descriptors were freed")
        for client in [*clients, late]:
            client.close()
        _, errors = child.communicate(timeout=15)
        assert child.returncode == 0, errors
        assert "Traceback" not in errors
    finally:
        child.kill()


class NoCopySocket(socket.socket):
    """A listening socket whose first copies fail as if out of descriptors."""

    failures = 0

    def dup(self) -> NoCopySocket:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().dup()


def test_a_copy_of_the_socket_that_cannot_be_made_pauses_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loop's server needs a copy of the listening socket: out of descriptors
    for it, the listener pauses 100 ms and tries again, the client waits."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sock = NoCopySocket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.failures = 2
        listener = Held().listen(10, sock)
        started = loop.time()
        listener.start()
        client = await greeted(sock.getsockname())
        try:
            assert loop.time() - started >= 2 * listener_module._BACKOFF * 0.9
            assert sock.failures == 0 and listener._server is not None
        finally:
            client.close()
            await listener.close()

    with caplog.at_level("WARNING", logger="ferryman.listener"):
        on_uvloop(scenario)
    assert caplog.text.count("accept failed (Too many open files)") == 2
