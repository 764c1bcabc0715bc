"""The listener: accept errors pause it and it resumes, a shared socket is taken one
connection per turn, and closing waits for the connections already accepted."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

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
