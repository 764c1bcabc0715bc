"""A worker waits for a restarting filler, but not for ever."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from ferryman.cache import link
from ferryman.cache.health import CacheDeclined
from ferryman.cache.link import FillerLink
from ferryman.stores.base import Unavailable


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
