"""A worker waits for a restarting filler, but not for ever.

Real Unix sockets; the "fillers" here are listeners that refuse, queue and
reset, hang up, or answer one protocol line, as a dying or restarted filler does.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from ferryman.cache import link
from ferryman.cache.health import CacheDeclined
from ferryman.cache.link import FillerLink
from ferryman.cache.protocol import Entry, encode, error_reply
from ferryman.stores.base import Throttled, Unavailable

ENTRY = encode(Entry({"etag": '"v1"'}))  # what a worker reads of the filler's open answer


def test_nobody_listening_is_unavailable_after_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link, "CONNECT_TIMEOUT", 0.3)
    tries: list[float] = []
    once = FillerLink._connect_once  # the class's own, before it is replaced

    async def counted(cls: type[FillerLink], path: str) -> FillerLink:
        tries.append(time.monotonic())
        return await once(path)

    monkeypatch.setattr(FillerLink, "_connect_once", classmethod(counted))
    stale = socket.socket(socket.AF_UNIX)  # a crashed filler's socket file: refused
    stale.bind(str(tmp_path / "filler.sock"))
    stale.close()
    with pytest.raises(Unavailable, match="not reachable") as raised:
        asyncio.run(FillerLink.connect(str(tmp_path / "filler.sock")))
    assert not isinstance(raised.value, CacheDeclined)  # a filler being restarted: no store
    assert len(tries) > 2  # it kept trying ...
    assert tries[-1] - tries[0] >= 0.3 - 0.01  # ... until the deadline, not a backoff step short


def test_a_socket_that_stays_missing_sends_reads_to_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link, "CONNECT_TIMEOUT", 0.3)
    with pytest.raises(CacheDeclined, match="no socket"):
        asyncio.run(FillerLink.connect(str(tmp_path / "filler.sock")))


def test_a_cache_directory_that_is_gone_sends_reads_to_the_store_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(CacheDeclined, match="the cache directory is gone"):
        asyncio.run(FillerLink.connect(str(tmp_path / "gone" / "filler.sock")))
    assert time.monotonic() - started < link.CONNECT_TIMEOUT  # no wait for a filler


def test_a_filler_that_comes_up_meanwhile_is_reached(tmp_path: Path) -> None:
    path = str(tmp_path / "filler.sock")

    async def run() -> None:
        async def start_late() -> None:
            await asyncio.sleep(0.1)  # the filler is being restarted
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(path)
            listener.listen()
            await asyncio.sleep(1.0)
            listener.close()

        starter = asyncio.ensure_future(start_late())
        connected = await FillerLink.connect(path)
        connected.close()
        await starter

    asyncio.run(run())


async def readable(sock: socket.socket) -> None:
    """Return once `sock` is readable (a listening socket: a connection waits in its queue)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class Answering:
    """A filler at `path` whose first `hangups` connections close without a word (it was
    killed after taking them); after that, each open is answered with `answer`."""

    def __init__(self, path: str, hangups: int, answer: bytes = ENTRY) -> None:
        self.path = path
        self.hangups = hangups
        self.answer = answer
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Answering:
        self.server = await asyncio.start_unix_server(self._session, path=self.path)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for session in self.sessions:
            session.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        self.connections += 1
        try:
            await reader.readline()
            if self.connections > self.hangups:
                writer.write(self.answer)
                await writer.drain()
                await reader.readline()  # until the worker is done
        finally:
            writer.close()
            self.sessions.discard(task)


def test_a_connection_the_dying_filler_queued_and_reset_waits_for_the_next_filler(
    tmp_path: Path,
) -> None:
    """A killed filler's listening socket can outlive its connections for a moment: a worker's
    connect succeeds into its queue, and the kernel resets it when the socket closes."""
    path = str(tmp_path / "filler.sock")

    async def run() -> str:
        dying = socket.socket(socket.AF_UNIX)
        dying.bind(path)
        dying.listen()
        opening = asyncio.ensure_future(FillerLink.opened(path, "k", check=False))
        await readable(dying)  # the connection is queued
        dying.close()  # the kernel resets it
        async with Answering(path, hangups=0) as filler:  # the restarted one, its socket anew
            connected, etag = await opening
            connected.close()
        assert filler.connections == 1
        return etag

    assert asyncio.run(run()) == '"v1"'


def test_a_filler_that_hangs_up_before_answering_is_asked_again(tmp_path: Path) -> None:
    async def run() -> str:
        async with Answering(str(tmp_path / "filler.sock"), hangups=2) as filler:
            connected, etag = await FillerLink.opened(filler.path, "k", check=False)
            connected.close()
        assert filler.connections == 3
        return etag

    assert asyncio.run(run()) == '"v1"'


def test_a_filler_that_always_hangs_up_is_unavailable_after_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link, "CONNECT_TIMEOUT", 0.3)

    async def run() -> None:
        async with Answering(str(tmp_path / "filler.sock"), hangups=10**6) as filler:
            with pytest.raises(Unavailable, match=r"not reachable .*went away") as raised:
                await FillerLink.opened(filler.path, "k", check=False)
        assert not isinstance(raised.value, CacheDeclined)  # as for a filler that refuses

    asyncio.run(run())


def test_what_the_filler_answers_is_final(tmp_path: Path) -> None:
    """An error the filler relays (the store's) is not a filler going away: not asked again."""
    throttled = encode(error_reply(Throttled("slow down", 3)))

    async def run() -> None:
        path = str(tmp_path / "filler.sock")
        async with Answering(path, hangups=0, answer=throttled) as filler:
            with pytest.raises(Throttled, match="slow down"):
                await FillerLink.opened(path, "k", check=False)
        assert filler.connections == 1

    asyncio.run(run())
