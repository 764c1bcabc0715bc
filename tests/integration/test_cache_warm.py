"""The synchronous warm path: a cached object is answered without the filler and without a task.

In-process (CacheClient.lookup_warm against a real cache directory and a
real filler service), then end to end: ferryman in front of moto with its
filler stopped (SIGSTOP), so that any request that needed the filler would
never be answered. Every body is compared byte for byte with the object.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ferryman.cache.client import CacheClient
from ferryman.cache.entry import CacheDir
from ferryman.http.spans import Span
from tests.faultproxy import FaultProxy
from tests.integration.test_cache_gateway import Gateway
from tests.integration.test_cache_service import (
    KEY,
    NAMESPACE,
    SIZE,
    WHOLE,
    collect,
    fetch,
    run,
    running,
)
from tests.s3server import MotoServer
from tests.serverproc import pattern

MIB = 1024 * 1024

# -- in-process -------------------------------------------------------------------------------


@run
async def test_lookup_warm_serves_a_complete_entry_with_the_filler_gone(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        assert client.lookup_warm(KEY) is None  # not cached: only `lookup` can make it
        assert await fetch(client, WHOLE) == pattern(SIZE)
        await cache.stop()
        obj = client.lookup_warm(KEY)
        assert obj is not None
        spans = [Span(7, 4101), Span(SIZE - 3, SIZE)]
        assert await collect(obj.body(spans)) == pattern(4094, 7) + pattern(3, SIZE - 3)
        assert client.stats.hits == 1


@run
async def test_lookup_warm_refuses_a_version_not_confirmed_recently(
    tmp_path: Path, loop: str
) -> None:
    now = [1_000_000.0]
    async with running(tmp_path) as cache:
        client = cache.client(revalidate=10.0, clock=lambda: now[0])
        assert await fetch(client, WHOLE) == pattern(SIZE)
        now[0] += 9.0
        obj = client.lookup_warm(KEY)
        assert obj is not None
        obj.close()
        now[0] += 2.0  # 11 s after the check: `lookup` must ask the filler again
        assert client.lookup_warm(KEY) is None
        assert await fetch(client, WHOLE) == pattern(SIZE)  # the filler confirmed it
        assert client.lookup_warm(KEY) is not None


@run
async def test_lookup_warm_refuses_an_entry_written_through_this_worker(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        assert await fetch(client, WHOLE) == pattern(SIZE)
        client.forget(KEY)
        assert client.lookup_warm(KEY) is None
        client.close()


@run
async def test_lookup_warm_refuses_a_dropped_entry_and_holds_a_served_one(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        assert await fetch(client, WHOLE) == pattern(SIZE)
        held = client.lookup_warm(KEY)
        assert held is not None
        filler_side = CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None)
        (usage,) = list(filler_side.entries())
        assert usage.in_use
        assert not filler_side.drop_if_unused(usage)  # the evictor skips an entry being sent
        filler_side.drop(KEY)  # replaced: the transfer keeps reading the version it pinned
        assert await collect(held.body(WHOLE)) == pattern(SIZE)
        assert client.lookup_warm(KEY) is None  # but no new request is served from it
        client.close()


async def memory_check(client: CacheClient) -> Callable[[], bool]:
    """Fetch KEY whole, then the check an answer kept in memory would carry."""
    assert await fetch(client, WHOLE) == pattern(SIZE)
    obj = client.lookup_warm(KEY)
    assert obj is not None
    current = obj.still_current()
    obj.close()
    return current


@run
async def test_an_answer_kept_in_memory_stays_current_only_while_lookup_warm_would_serve_it(
    tmp_path: Path, loop: str
) -> None:
    now = [1_000_000.0]
    async with running(tmp_path) as cache:
        client = cache.client(revalidate=10.0, clock=lambda: now[0])
        current = await memory_check(client)
        hits = client.stats.hits
        assert current() and current()
        assert client.stats.hits == hits + 2  # a use of the entry, as a warm hit is
        now[0] += 11.0  # not confirmed within `revalidate`
        assert not current()

        current = await memory_check(client)
        assert current()
        client.forget(KEY)  # written through this worker
        assert not current()

        current = await memory_check(client)
        assert current()
        CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None).drop(KEY)
        assert not current()  # replaced by another process
        client.close()


# -- end to end, filler stopped ---------------------------------------------------------------


@pytest.fixture
def gateway(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(moto_server, fault_proxy, tmp_path)
    yield gw
    gw.stop()


def test_warm_objects_are_served_while_the_filler_is_stopped(gateway: Gateway) -> None:
    small, big = pattern(1024, 5), pattern(3 * MIB + 17, 11)
    gateway.put("small.bin", small)
    gateway.put("dir/big.bin", big)
    srv = gateway.start()
    for path, data in (("/small.bin", small), ("/dir/big.bin", big)):
        r = srv.get(path)
        assert r.status == 200 and r.whole and r.body == data
    fetched = len(gateway.proxy.log)
    (pid,) = re.findall(r"started cache filler \(pid (\d+)\)", srv.log_text())
    os.kill(int(pid), signal.SIGSTOP)
    try:
        for _ in range(3):
            r = srv.get("/small.bin")
            assert r.status == 200 and r.whole and r.body == small
        etag = r.header("etag")
        assert etag
        r = srv.get("/dir/big.bin", {"Range": "bytes=2097100-2097251"})
        assert r.status == 206 and r.whole and r.body == big[2097100:2097252]
        r = srv.get("/small.bin", {"If-None-Match": etag})
        assert r.status == 304 and r.body == b""
        assert srv.get("/small.bin", {"Range": "bytes=5000-6000"}).status == 416
        assert srv.get("/small.bin", {"If-Match": '"other"'}).status == 412
    finally:
        os.kill(int(pid), signal.SIGCONT)
    assert len(gateway.proxy.log) == fetched  # nothing reached the store meanwhile
