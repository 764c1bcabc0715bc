"""The cache filler process: serves the filler protocol on a Unix socket (decisions/0012).

`run_filler` is the process main, started by the arbiter in its own slot
(supervisor/child.py) before the workers. It loads the cache key, recovers
the cache directory, builds the store and the Filler, and answers workers
until SIGTERM or SIGINT: then it stops accepting, fails what workers still
wait for (their transfers abort; their clients resume), closes the store and
exits 0. A configuration it cannot use is a ConfigError (exit status 2 in
child.py: the arbiter stops instead of restarting it).

`serve` runs the protocol for any Filler on any event loop, so tests drive
the real service in-process with an in-memory store.

With a PostgreSQL catalog the filler also listens for the other servers'
changes (notices.py) and keeps the trust floor (freshness.py): it is the
one process of the server that owns the entries, so one connection per
server hears every change, and a drop reaches every worker through the disk.

One `_Session` per worker connection owns that connection: it reads
requests in order, answers `open`, `stats` and `health` inline, and runs each `want`
and `bad` in a task of its own, so block notifications from several wants
interleave as blocks land. Ending the session (EOF, a bad line, the service
closing) cancels its tasks; fetches they started go on for other waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol

from ferryman.cache.entry import CacheDir
from ferryman.cache.eviction import Evictor
from ferryman.cache.filler import Filler
from ferryman.cache.fillstate import Outcome
from ferryman.cache.freshness import UNTRUSTED, Floor
from ferryman.cache.noticenames import listens, server_origin, store_name
from ferryman.cache.notices import ChangeListener
from ferryman.cache.protocol import (
    MAX_LINE,
    Bad,
    BadMessage,
    Entry,
    Have,
    Health,
    HealthReply,
    Open,
    Reply,
    Stats,
    StatsReply,
    Want,
    decode_request,
    encode,
    error_reply,
    failed_reply,
)
from ferryman.config import Config
from ferryman.errors import EXIT_OK, ConfigError
from ferryman.failures import log_failure
from ferryman.loops import new_event_loop
from ferryman.stores.base import StoreError, Unavailable

log = logging.getLogger("ferryman.cache")

SOCKET_NAME = "filler.sock"
LOCK_NAME = "filler.lock"
BACKLOG = 1024  # cold requests of every worker may connect at once
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the NUL


class Supervision(Protocol):
    """What the filler tells its supervisor (the same calls a worker makes)."""

    def ready(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None], name: str) -> None:
        """Serving; `stop` starts a graceful stop."""

    def closed(self) -> None:
        """No longer accepting."""


def socket_path(config: Config) -> str:
    """Where workers find the filler: CACHE_DIR/filler.sock, or an abstract name if too long.

    The abstract name (Linux: a leading NUL) is derived from the cache
    directory, so every process of one server computes the same one.
    """
    if not config.cache_dir:
        raise ConfigError("the cache filler needs --cache-dir")
    directory = Path(config.cache_dir).resolve()
    path = str(directory / SOCKET_NAME)
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(directory)).hexdigest()[:32]
    return f"\0ferryman-filler-{digest}"


# -- the process ---------------------------------------------------------------------


def run_filler(
    config: Config,
    supervision: Supervision | None = None,
    every_second: Callable[[Filler], None] | None = None,
) -> int:
    """The filler process: serve until SIGTERM or SIGINT; returns the exit status.
    `every_second` is called with the filler once a second (its metrics)."""
    loop = new_event_loop(config.loop)
    try:
        return loop.run_until_complete(_run(config, supervision, every_second))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _run(
    config: Config, supervision: Supervision | None, every_second: Callable[[Filler], None] | None
) -> int:
    loop = asyncio.get_running_loop()
    cache = CacheDir.of(config)
    with _sole_filler(cache.path):
        await asyncio.to_thread(cache.recover)
        from ferryman.stores.s3 import S3Store  # only the filler process needs the S3 client

        store = S3Store.from_config(config)
        evictor = Evictor(
            cache,
            max_size=config.cache_max_size,
            max_age=config.cache_max_age,
            min_free=config.cache_min_free,
        )
        filler = Filler(
            cache, store, block_size=config.cache_block_size,
            readahead=config.cache_readahead, revalidate=config.cache_revalidate,
            evictor=evictor,
        )  # fmt: skip
        floor = Floor(cache.path, writable=True) if listens(config) else None
        if floor is not None:
            floor.set(UNTRUSTED)  # until the listener listens
            filler.floor = floor.value
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        service: FillerService | None = None
        ticks = None if every_second is None else loop.create_task(_tick(filler, every_second))
        listening: asyncio.Task[None] | None = None
        try:
            await store.prepare()  # the first cold request must not wait for it
            await filler.start()
            if floor is not None:
                listening = loop.create_task(_listener(config, filler, floor).run())
            path = socket_path(config)
            service = await serve(filler, path)
            log.info("filler ready: %s at %s, %s", cache.path, path.replace("\0", "@"),
                     store.description)  # fmt: skip
            if supervision is not None:
                supervision.ready(loop, stop.set, type(loop).__module__.split(".")[0])
            await stop.wait()
            service.stop_accepting()
            if supervision is not None:
                supervision.closed()
            return EXIT_OK
        finally:
            if ticks is not None:
                ticks.cancel()
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
            if floor is not None:
                floor.close()
            if service is not None:
                await service.close()
            await filler.close()
            await store.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            log.info("filler stopped")


async def _tick(filler: Filler, every_second: Callable[[Filler], None]) -> None:
    while True:
        await asyncio.sleep(1)
        every_second(filler)


def _listener(config: Config, filler: Filler, floor: Floor) -> ChangeListener:
    return ChangeListener(
        config.catalog_location.target, store=store_name(config), origin=server_origin(config),
        floor=floor, drop=filler.changed_elsewhere,
        connect_timeout=config.catalog_connect_timeout,
    )  # fmt: skip


@contextlib.contextmanager
def _sole_filler(cache_dir: Path) -> Iterator[None]:
    """Hold CACHE_DIR/filler.lock: a second filler on one directory would be a second writer."""
    # Read-only: a descriptor open for writing would keep the disk from being remounted ro.
    fd = os.open(cache_dir / LOCK_NAME, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another cache filler is using {cache_dir}") from None
        yield
    finally:
        os.close(fd)


# -- the protocol server -----------------------------------------------------------------


class FillerService:
    """The listening socket and the sessions of connected workers."""

    def __init__(self, filler: Filler) -> None:
        self.filler = filler
        self.server: asyncio.AbstractServer | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            await _Session(self.filler, reader, writer).run()
        except asyncio.CancelledError:
            pass  # `close` ended the session; asyncio's server would log a cancelled one
        finally:
            self.sessions.discard(task)

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def close(self) -> None:
        """Stop accepting and end every session (workers see the connection close)."""
        self.stop_accepting()
        for task in list(self.sessions):
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)


async def serve(filler: Filler, path: str) -> FillerService:
    """Serve the filler protocol on the Unix socket `path` (a stale socket file is replaced).

    The socket is bound here rather than by the loop: uvloop cannot bind an
    abstract name (a leading NUL) itself, but serves a socket bound to one.
    """
    _unlink_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if not path.startswith("\0"):
            os.chmod(path, 0o600)  # workers run as the filler's user
        service = FillerService(filler)
        service.server = await asyncio.start_unix_server(
            service._accept, sock=sock, limit=MAX_LINE, backlog=BACKLOG
        )
    except BaseException:
        sock.close()
        raise
    return service


def _unlink_stale(path: str) -> None:
    if path.startswith("\0"):
        return
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket")
    os.unlink(path)  # _sole_filler (or the test) made sure nobody serves on it


class _Session:
    """One worker connection: one object, its version pinned by the first open."""

    def __init__(
        self, filler: Filler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.filler = filler
        self.reader = reader
        self.writer = writer
        self.key: str | None = None
        self.etag: str | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    line = await self.reader.readline()
                except ValueError:  # asyncio's name for "over the line limit"
                    log.warning("filler: a worker sent a line over %d bytes", MAX_LINE)
                    return
                except ConnectionError:
                    return
                if not line.endswith(b"\n"):
                    return  # EOF (possibly mid-line): the worker is done or gone
                try:
                    await self._dispatch(decode_request(line))
                except BadMessage as exc:
                    log.warning("filler: closing a worker connection: %s", exc)
                    return
        finally:
            self.writer.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _dispatch(self, request: Open | Want | Bad | Stats | Health) -> None:
        if isinstance(request, Stats):
            self._send(StatsReply(dict(self.filler.stats.snapshot())))
            return
        if isinstance(request, Health):
            health = self.filler.health
            self._send(HealthReply(health.describe(), health.since or 0))
            return
        if isinstance(request, Open):
            if self.key is not None and request.key != self.key:
                raise BadMessage("one object per connection")
            try:
                meta = await self.filler.open(request.key, request.check)
            except StoreError as exc:
                self._send(error_reply(exc))
                return
            except Exception as exc:  # a bug costs this request, not the filler
                log_failure(log, f"filler: opening {request.key!r} failed", exc)
                self._send(error_reply(Unavailable(f"the cache filler failed: {exc!r}")))
                return
            self.key, self.etag = request.key, meta.etag
            self._send(Entry(dataclasses.asdict(meta)))
            return
        if self.key is None:
            raise BadMessage(f"{type(request).__name__.lower()} before open")
        if isinstance(request, Want):
            self._spawn(self._report(request.blocks))
        else:
            self._spawn(self._refetch(request.block))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report(self, blocks: range) -> None:
        """One message per block of `blocks` as each lands; an error for all of them."""
        assert self.key is not None
        try:
            async for block, outcome in self.filler.want(self.key, blocks, etag=self.etag):
                self._send(_block_reply(block, outcome))
                await self.writer.drain()
        except StoreError as exc:  # the pinned version is gone: nothing of it will come
            self._send(error_reply(exc))
        except ConnectionError:
            pass

    async def _refetch(self, block: int) -> None:
        assert self.key is not None
        try:
            await self.filler.bad(self.key, block, etag=self.etag)
        except StoreError as exc:
            self._send(error_reply(exc))
            return
        await self._report(range(block, block + 1))

    def _send(self, reply: Reply) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(reply))


def _block_reply(block: int, outcome: Outcome) -> Reply:
    return Have(block) if outcome is None else failed_reply(block, outcome)
