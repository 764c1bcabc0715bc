"""The filler service on a real Unix socket, and workers' cache clients talking to it.

Everything runs in one event loop: the service (with an in-memory store) and
any number of CacheClients, each with its own CacheDir handle as a worker
process would have. Bodies are collected the way a connection sends them
(FileRegions read with os.pread, streams iterated) and compared byte for
byte with the object's self-identifying pattern.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import queue
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop

from ferryman.app import storestream
from ferryman.cache import client as client_module
from ferryman.cache.client import CacheClient, open_cache_client
from ferryman.cache.crypto import BlockCipher
from ferryman.cache.entry import CacheDir
from ferryman.cache.eviction import Evictor
from ferryman.cache.filler import Filler
from ferryman.cache.health import CacheDeclined
from ferryman.cache.protocol import MAX_LINE
from ferryman.cache.service import FillerService, serve, socket_path
from ferryman.config import Config
from ferryman.errors import ConfigError
from ferryman.http.body import Body, FileRegion
from ferryman.http.spans import Span
from ferryman.stores.base import NotFound, PreconditionFailed, Throttled, Unavailable
from tests.memstore import Fault, MemStore
from tests.serverproc import pattern

BS = 4096
KEY = "media/film.bin"
SIZE = 40 * BS + 1234
NAMESPACE = "s3://bucket/prefix"


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the test on each event loop a worker may use (its `loop` parameter)."""

    @functools.wraps(test)
    @pytest.mark.parametrize("loop", sorted(LOOPS))
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=LOOPS[kwargs["loop"]]) as runner:
            runner.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return wrapper


@dataclass
class Cache:
    tmp: Path
    store: MemStore
    filler: Filler
    service: FillerService
    path: str
    cipher: BlockCipher | None

    def client(self, **options: Any) -> CacheClient:
        """A worker's client: its own CacheDir handle on the same directory."""
        cache = CacheDir(self.tmp / "cache", namespace=NAMESPACE, cipher=self.cipher)
        settings: dict[str, Any] = {"revalidate": 60.0, "readahead": 2}
        settings.update(options)
        return CacheClient(cache, self.path, **settings)

    async def stop(self) -> None:
        await self.service.close()
        await self.filler.close()


@asynccontextmanager
async def running(
    tmp: Path, *, cipher: BlockCipher | None = None, **options: Any
) -> AsyncIterator[Cache]:
    store = MemStore()
    store.put(KEY, pattern(SIZE), "video/mp4")
    cache = CacheDir(tmp / "cache", namespace=NAMESPACE, cipher=cipher)
    settings: dict[str, Any] = {"block_size": BS, "readahead": 0, "revalidate": 60.0}
    settings.update(options)
    filler = Filler(cache, store, **settings)
    path = str(tmp / "filler.sock")
    service = await serve(filler, path)
    running_cache = Cache(tmp, store, filler, service, path, cipher)
    try:
        yield running_cache
    finally:
        await running_cache.stop()


async def collect(body: Body) -> bytes:
    """The bytes a connection would send, then the body's cleanup (as the connection runs it)."""
    try:
        if body.stream is not None:
            data = b"".join([chunk async for chunk in body.stream])
            assert len(data) == body.length
            return data
        return b"".join(
            os.pread(p.fd, p.count, p.offset) if isinstance(p, FileRegion) else p
            for p in body.parts
        )
    finally:
        body.release()


def expected(spans: Sequence[bytes | Span]) -> bytes:
    return b"".join(s if isinstance(s, bytes) else pattern(s.length, s.start) for s in spans)


async def fetch(client: CacheClient, spans: Sequence[bytes | Span], key: str = KEY) -> bytes:
    obj = await client.lookup(key)
    return await collect(obj.body(spans))


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def is_socket(path: str) -> bool:
    return stat.S_ISSOCK(os.lstat(path).st_mode)


WHOLE = [Span(0, SIZE)]
MULTI: list[bytes | Span] = [
    b"--x\r\n\r\n",
    Span(10, 5001),
    b"\r\n--x\r\n\r\n",
    Span(SIZE - 7, SIZE),
    b"--",
]


# -- cold, then warm -------------------------------------------------------------------


@run
async def test_a_cold_object_streams_then_serves_warm_without_the_filler(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        obj = await client.lookup(KEY)
        assert (obj.info.key, obj.info.size, obj.info.content_type) == (KEY, SIZE, "video/mp4")
        assert obj.info.etag == cache.store.objects[KEY].etag
        body = obj.body(WHOLE)
        assert body.stream is not None and body.length == SIZE
        assert await collect(body) == pattern(SIZE)
        assert client.stats.misses == 1 and client.stats.hits == 0
        assert cache.store.bytes_sent == SIZE
        await cache.stop()  # from now on, only the disk can answer
        obj = await client.lookup(KEY)
        body = obj.body(MULTI)
        assert all(isinstance(p, FileRegion) for p in body.parts if not isinstance(p, bytes))
        assert await collect(body) == expected(MULTI)
        assert client.stats.hits == 1
        other = cache.client()  # another worker, its LRU empty: opens the entry from disk
        assert await fetch(other, WHOLE) == pattern(SIZE)
        assert other.stats.hits == 1 and other.stats.misses == 0


@run
async def test_ranges_and_literals_cold_and_partly_cached(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        assert await fetch(client, [Span(BS * 3 + 5, BS * 4 + 10)]) == pattern(BS + 5, BS * 3 + 5)
        assert cache.store.reads == [(KEY, BS * 3, BS * 5)]  # the two blocks, one GET
        spans: list[bytes | Span] = [
            b"<", Span(0, BS * 6 + 1), b"|", Span(BS * 4, BS * 4 + 1), b">"
        ]  # fmt: skip
        obj = await client.lookup(KEY)
        body = obj.body(spans)
        assert body.stream is not None  # blocks 0-2 and 5-6 are missing
        assert await collect(body) == expected(spans)
        assert sorted(cache.store.reads)[0] == (KEY, 0, BS * 3)
        assert cache.store.bytes_sent == BS * 7  # nothing fetched twice
        assert await fetch(client, MULTI) == expected(MULTI)


@run
async def test_several_workers_at_once_share_one_fill(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path, readahead=4, max_fetches=2) as cache:
        cache.store.chunk = 1500
        clients = [cache.client() for _ in range(4)]
        wanted: list[Sequence[bytes | Span]] = [
            WHOLE,
            MULTI,
            [Span(BS * 20, SIZE)],
            [Span(1, 2), Span(BS * 39, BS * 39 + 4)],
        ]
        results = await asyncio.gather(*(fetch(c, spans) for c in clients for spans in wanted))
        assert results == [expected(spans) for _ in clients for spans in wanted]
        assert cache.store.bytes_sent == SIZE  # each block went upstream once
        assert cache.store.stats == 1  # one HEAD for sixteen cold lookups


# -- faults --------------------------------------------------------------------------------


@run
async def test_the_filler_going_away_ends_streams_with_an_error(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        cache.store.chunk = BS
        cache.store.hold_after = 3 * BS  # every read stalls after three blocks
        client = cache.client(readahead=0)
        obj = await client.lookup(KEY)
        body = obj.body(WHOLE)
        assert body.stream is not None
        received = b""
        with pytest.raises(Unavailable):
            async for chunk in body.stream:
                received += chunk
                if len(received) == 2 * BS:
                    await cache.stop()
        body.release()
        assert received == pattern(len(received))  # a true prefix, never a wrong byte
        with pytest.raises(Unavailable):
            await client.lookup("other/key")  # nobody serves the socket now


async def die_with_a_connection_queued(cache: Cache) -> socket.socket:
    """Stand in for a filler killed a moment ago: the service is gone, but its listening
    socket still takes connections into its queue (a killed process's listening socket can
    outlive its connections for a moment) and never answers them."""
    await cache.service.close()
    os.unlink(cache.path)
    dying = socket.socket(socket.AF_UNIX)
    dying.bind(cache.path)
    dying.listen()
    return dying


async def restart_once_a_connection_is_queued(cache: Cache, dying: socket.socket) -> None:
    """When a worker's connection waits in the dying socket's queue, close the socket (the
    kernel resets the connection) and serve again, as the restarted filler does."""
    try:
        await until(lambda: bool(select.select([dying], [], [], 0)[0]))
    finally:
        dying.close()
    cache.service = await serve(cache.filler, cache.path)


@run
async def test_a_request_after_the_filler_died_waits_for_the_restarted_one(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client(readahead=0)
        assert await fetch(client, [Span(0, BS)]) == pattern(BS)  # block 0 cached, version checked
        # Warm: the answer starts from the disk and asks the filler when block 1 is due.
        body = (await client.lookup(KEY)).body(WHOLE)
        dying = await die_with_a_connection_queued(cache)
        restart = asyncio.ensure_future(restart_once_a_connection_is_queued(cache, dying))
        assert await collect(body) == pattern(SIZE)
        await restart
        # Cold (its check is due): the filler is asked before the answer starts.
        dying = await die_with_a_connection_queued(cache)
        restart = asyncio.ensure_future(restart_once_a_connection_is_queued(cache, dying))
        assert await fetch(cache.client(revalidate=0), [Span(0, 10)]) == pattern(10)
        await restart


@run
async def test_store_errors_reach_the_worker_as_themselves(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        with pytest.raises(NotFound):
            await client.lookup("no/such/key")
        obj = await client.lookup(KEY)
        cache.store.faults = [Fault("throttle")]
        body = obj.body([Span(0, 11)])
        with pytest.raises(Throttled) as caught:
            await collect(body)
        assert caught.value.retry_after == 3
        assert await fetch(client, [Span(0, 11)]) == pattern(11)  # later it works


@run
async def test_a_version_change_aborts_readers_of_the_old_one(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        cache.store.chunk = BS
        cache.store.hold_after = BS
        old = cache.client(readahead=0)
        obj = await old.lookup(KEY)
        stream = obj.body(WHOLE).stream
        assert stream is not None
        first = await anext(stream)
        assert first == pattern(BS)
        new_data = pattern(3 * BS, 777)
        cache.store.put(KEY, new_data)
        cache.store.hold_after = None
        checker = cache.client(revalidate=0.0)  # checks on every lookup
        assert await fetch(checker, [Span(0, 3 * BS)]) == new_data
        with pytest.raises(PreconditionFailed):
            async for _ in stream:
                pass
        obj.close()
        cache.store.gate.set()


@run
async def test_a_stale_check_asks_for_a_head_and_keeps_the_blocks(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        now = [time.time()]
        client = cache.client(clock=lambda: now[0], revalidate=30.0)
        assert await fetch(client, WHOLE) == pattern(SIZE)
        heads = cache.store.stats
        now[0] += 10
        assert await fetch(client, WHOLE) == pattern(SIZE)
        assert cache.store.stats == heads  # still fresh
        now[0] += 30
        assert await fetch(client, WHOLE) == pattern(SIZE)
        assert cache.store.stats == heads + 1  # checked, same version: nothing refetched
        assert cache.store.bytes_sent == SIZE


@run
async def test_a_write_through_this_server_is_seen_at_once(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        writer, other = cache.client(), cache.client()
        assert await fetch(writer, WHOLE) == pattern(SIZE)
        assert await fetch(other, WHOLE) == pattern(SIZE)  # its LRU holds the old version
        new = pattern(2 * BS + 3, 4242)
        cache.store.put(KEY, new)
        writer.forget(KEY)  # what an upload or delete through ferryman calls
        assert await fetch(writer, [Span(0, len(new))]) == new
        await until(lambda: cache.filler._entries[KEY].meta.size == len(new))
        assert await fetch(other, [Span(0, len(new))]) == new
        await cache.store.delete(KEY)
        other.forget(KEY)
        with pytest.raises(NotFound):
            await other.lookup(KEY)
        await until(lambda: KEY not in cache.filler._entries)
        with pytest.raises(NotFound):
            await writer.lookup(KEY)


@run
async def test_an_idle_entry_is_released_to_the_evictor(
    tmp_path: Path, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "LINGER", 0.05)
    monkeypatch.setattr(client_module, "SWEEP_EVERY", 0.02)
    async with running(tmp_path) as cache:
        client = cache.client()

        def in_use() -> bool:
            return [u.in_use for u in cache.filler.cache.entries()] == [True]

        assert await fetch(client, [Span(0, 10)]) == pattern(10)
        await cache.stop()  # the filler lets go of its writer
        await until(lambda: not in_use())  # the worker's lock lingered, then was released
        obj = await client.lookup(KEY)  # warm: from the disk only
        assert in_use()
        assert await collect(obj.body([Span(0, 10)])) == pattern(10)
        await until(lambda: not in_use())


@run
async def test_a_worker_client_from_the_configuration(tmp_path: Path, loop: str) -> None:
    config = Config(source=NAMESPACE, cache_dir=str(tmp_path / "cache"), cache_readahead=1)
    async with running(tmp_path) as cache:
        service = await serve(cache.filler, socket_path(config))
        client = open_cache_client(config)
        assert client.socket_path == socket_path(config) and client.readahead == 1
        assert await fetch(client, MULTI) == expected(MULTI)
        await service.close()


@run
async def test_the_filler_speaking_nonsense_is_an_unavailable_store(
    tmp_path: Path, loop: str
) -> None:
    path = str(tmp_path / "liar.sock")

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"x" * (MAX_LINE + 10) + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(liar, path=path)
    cache = CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None)
    client = CacheClient(cache, path, revalidate=60.0, readahead=1)
    with pytest.raises(Unavailable):
        await client.lookup(KEY)
    server.close()
    await server.wait_closed()


# -- encryption ------------------------------------------------------------------------------


@run
async def test_encrypted_entries_stream_exact_bytes_and_heal_bad_blocks(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path, cipher=BlockCipher(os.urandom(32))) as cache:
        client = cache.client()
        assert await fetch(client, MULTI) == expected(MULTI)
        assert await fetch(client, WHOLE) == pattern(SIZE)
        obj = await client.lookup(KEY)
        body = obj.body(MULTI)
        # short and in the page cache: opened at once; never a region of the sealed file
        assert body.stream is None and all(isinstance(p, bytes) for p in body.parts)
        assert await collect(body) == expected(MULTI)
        assert client.stats.hits == 1
        data = cache.filler.cache.entry_path(KEY) / "data"
        fd = os.open(data, os.O_WRONLY)
        os.pwrite(fd, b"\x00" * 8, 5 * (BS + BlockCipher.OVERHEAD) + 40)
        os.close(fd)
        fetched = cache.store.bytes_sent
        assert await fetch(client, WHOLE) == pattern(SIZE)
        assert cache.filler.stats.bad_blocks == 1
        assert cache.store.bytes_sent == fetched + BS  # that block, once more


# -- the socket ------------------------------------------------------------------------------


def test_socket_path_falls_back_to_an_abstract_name(tmp_path: Path) -> None:
    short = Config(source="s3://b", cache_dir=str(tmp_path / "c"))
    assert socket_path(short) == str((tmp_path / "c").resolve() / "filler.sock")
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    long = Config(source="s3://b", cache_dir=str(deep))
    name = socket_path(long)
    assert name.startswith("\0ferryman-filler-") and len(name) < 60
    assert socket_path(Config(source="s3://b", cache_dir=str(deep))) == name  # stable
    with pytest.raises(ConfigError):
        socket_path(Config(source="s3://b"))


@run
async def test_a_stale_socket_file_is_replaced_and_abstract_names_work(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        await cache.stop()
        assert is_socket(cache.path)  # left behind, as after a crash
        service = await serve(cache.filler, cache.path)
        client = cache.client()
        assert await fetch(client, [Span(0, 100)]) == pattern(100)
        await service.close()
        abstract = f"\0ferryman-test-{os.getpid()}-{id(service)}"
        service = await serve(cache.filler, abstract)
        client = CacheClient(
            CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None),
            abstract,
            revalidate=60.0,
            readahead=1,
        )
        assert await fetch(client, [Span(BS * 30, BS * 30 + 10)]) == pattern(10, BS * 30)
        await service.close()


FILLER_MAIN = """
import logging, sys
from ferryman.cache.service import run_filler
from ferryman.config import Config
from ferryman.errors import ConfigError
logging.basicConfig(level=logging.INFO, format="%(message)s")
source, cache_dir, endpoint = sys.argv[1:4]
try:
    sys.exit(run_filler(Config(source=source, cache_dir=cache_dir, s3_endpoint=endpoint)))
except ConfigError as exc:
    print("cannot start:", exc, file=sys.stderr)
    sys.exit(2)
"""


class FillerProcess:
    """The filler process (run_filler) on a store endpoint where nobody listens."""

    def __init__(self, cache_dir: Path) -> None:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        args = [NAMESPACE, str(cache_dir), "http://127.0.0.1:9"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FILLER_MAIN, *args], stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for_line(self, text: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def ask(path: str, *requests: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(path)
        with sock.makefile("rb") as stream:
            replies = []
            for request in requests:
                sock.sendall(request)
                replies.append(json.loads(stream.readline()))
            return replies


def test_the_filler_process_serves_until_sigterm(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    filler = FillerProcess(cache_dir)
    second: FillerProcess | None = None
    try:
        filler.wait_for_line("filler ready")
        path = socket_path(Config(source=NAMESPACE, cache_dir=str(cache_dir)))
        stats, error = ask(path, b'{"op":"stats"}\n', b'{"op":"open","key":"a/b","check":false}\n')
        assert stats["op"] == "stats" and stats["stats"]["fills"] == 0
        assert error["op"] == "error" and error["kind"] == "Unavailable"  # nobody at the endpoint
        second = FillerProcess(cache_dir)
        assert second.proc.wait(20) == 2  # one writer per cache directory
        assert "another cache filler" in second.wait_for_line("cannot start")
        filler.proc.send_signal(signal.SIGTERM)
        assert filler.proc.wait(20) == 0
        filler.wait_for_line("filler stopped")
    finally:
        filler.stop()
        if second is not None:
            second.stop()


@run
async def test_stats_answer_over_the_socket(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        await fetch(cache.client(), WHOLE)
        # A block is visible on disk a moment before the filler's loop counts it.
        await until(lambda: cache.filler.stats.fills == 41)
        reader, writer = await asyncio.open_unix_connection(cache.path)
        writer.write(b'{"op":"stats"}\n')
        line = await reader.readline()
        writer.close()
        stats = json.loads(line)["stats"]
        assert stats["fills"] == 41 and stats["bytes_fetched"] == SIZE
        assert stats["upstream_requests"] == 1 + len(cache.store.reads)


async def until_closed(path: str, *lines: bytes) -> list[bytes]:
    """Send `lines` on one raw connection; the replies read until the service closed it."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(b"".join(lines))
        replies = []
        while line := await asyncio.wait_for(reader.readline(), 5):
            replies.append(line)
        return replies  # readline() == b"": closed
    finally:
        writer.close()


@run
async def test_a_line_over_the_limit_closes_the_connection(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        padded = b'{"op":"stats","pad":"' + b"x" * MAX_LINE + b'"}\n'
        assert await until_closed(cache.path, padded) == []


@run
async def test_want_or_bad_before_open_closes_the_connection(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        assert await until_closed(cache.path, b'{"op":"want","first":0,"last":0}\n') == []
        assert await until_closed(cache.path, b'{"op":"bad","block":0}\n') == []
        assert list(cache.filler.cache.entries()) == []
        assert cache.store.stats == 0 and cache.store.reads == []


@run
async def test_a_second_object_on_one_connection_closes_it(tmp_path: Path, loop: str) -> None:
    async with running(tmp_path) as cache:
        first = b'{"op":"open","key":"%s","check":false}\n' % KEY.encode()
        other = b'{"op":"open","key":"other/object","check":false}\n'
        replies = await until_closed(cache.path, first, first, other)
        assert [json.loads(line)["op"] for line in replies] == ["entry", "entry"]


def test_keys_written_by_a_worker_are_forgotten_beyond_max_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_CHANGED", 2)
    cache = CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None)
    client = CacheClient(cache, str(tmp_path / "filler.sock"), revalidate=60.0, readahead=0)
    for key in ("a", "b", "c"):
        client.version_gone(key)
    assert client._changed == {"c"}


# -- the bound and the store as the fallback ---------------------------------------------


@run
async def test_blocks_past_the_bound_stream_from_the_store_in_the_same_answer(
    tmp_path: Path, loop: str
) -> None:
    """The entry being sent is in use: once it fills the cache, the filler declines its
    next blocks and the rest of the answer comes from the store, pinned to its ETag."""
    store = MemStore()
    store.put(KEY, pattern(SIZE), "video/mp4")
    cache_dir = CacheDir(tmp_path / "cache", namespace=NAMESPACE, cipher=None)
    limit = 12 * BS  # the entry's small files and some ten blocks
    evictor = Evictor(cache_dir, max_size=limit, max_age=1e9, min_free=0)
    filler = Filler(cache_dir, store, block_size=BS, readahead=0, revalidate=60.0,
                    evictor=evictor)  # fmt: skip
    await filler.start()
    path = str(tmp_path / "filler.sock")
    service = await serve(filler, path)
    running_cache = Cache(tmp_path, store, filler, service, path, None)
    try:
        client = running_cache.client(readahead=0)
        obj = await client.lookup(KEY)
        etag = obj.info.etag
        fallback = functools.partial(storestream.read_spans, store, KEY, etag)
        assert await collect(obj.body(WHOLE, fallback)) == pattern(SIZE)
        assert filler.stats.declined >= 1 and client.stats.declined == 1
        held = sum(u.size_bytes for u in cache_dir.entries())
        assert held <= limit
        cached = filler.stats.fills
        assert 0 < cached < SIZE // BS
        # The store was asked once more, from the first block the cache declined on.
        assert store.reads[-1] == (KEY, cached * BS, SIZE)
        store.put("other", pattern(BS))
        with pytest.raises(CacheDeclined):  # no room for its entry: the caller asks the store
            await client.lookup("other")
    finally:
        await running_cache.stop()


@run
async def test_without_a_fallback_a_declined_block_still_ends_the_stream(
    tmp_path: Path, loop: str
) -> None:
    async with running(tmp_path) as cache:
        client = cache.client()
        obj = await client.lookup(KEY)
        cache.filler.health.fault(OSError(28, "No space left on device"))
        with pytest.raises(CacheDeclined):
            await collect(obj.body(WHOLE))
        with pytest.raises(CacheDeclined, match="no space left on the cache disk"):
            await client.lookup("never-cached")
        assert (await client.health()).startswith("degraded: no space left on the cache disk")
