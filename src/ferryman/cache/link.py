"""A worker's connection to the cache filler about one object (decisions/0012).

The cold path of cache/client.py talks to the filler through a FillerLink:
`opened` connects and asks for the entry (pinning its ETag), `want` asks for
blocks, and a listener task turns the filler's "have"/"failed" notices into
the results of per-block futures. The link owns its socket and its listener;
`close` releases both and fails every block still awaited.

A filler that is restarting is waited for (CONNECT_TIMEOUT), whether it
refuses the connection or takes it and hangs up before its first answer: a
killed filler's listening socket can outlive its connections for a moment
and queue a connection nobody will answer, which the kernel then resets.
Once the filler has answered, its going away breaks the link: the blocks
awaited fail (a transfer in progress is cut; a later request waits again).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ferryman.cache.health import GONE, CacheDeclined
from ferryman.cache.protocol import (
    MAX_LINE,
    Bad,
    BadMessage,
    Entry,
    Error,
    Failed,
    Have,
    Health,
    HealthReply,
    Open,
    Reply,
    Request,
    Want,
    decode_reply,
    encode,
    store_error,
)
from ferryman.stores.base import StoreError, Unavailable

CONNECT_TIMEOUT = 5.0  # seconds a connect may wait for room in the filler's backlog
_NOBODY_LISTENING = (ConnectionRefusedError, FileNotFoundError)  # a filler restarting
HANGUP_PAUSE = 0.02  # seconds before connecting again to a filler that hung up unanswered

T = TypeVar("T")


class _Hangup(Unavailable):
    """The filler closed or reset the connection (it was stopped or died)."""


class FillerLink:
    """One connection to the filler about one object: `open`, then block notices.

    After `open`, a listener task turns each "have"/"failed" into the result
    of that block's future (None, or the StoreError to raise). An "error", a
    bad line or the connection closing breaks the link: every block still
    awaited, and every later one, fails with that error.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._blocks: dict[int, asyncio.Future[StoreError | None]] = {}
        self._broken: StoreError | None = None
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def opened(cls, path: str, key: str, *, check: bool) -> tuple[FillerLink, str]:
        """Connect and `open` `key`: the link (listening for block notices) and the pinned ETag."""
        return await cls._first_answer(path, lambda link: link.open(key, check))

    @classmethod
    async def asked_health(cls, path: str) -> tuple[str, float]:
        """Connect and ask the filler's word on the cache disk (see `health`)."""
        link, answer = await cls._first_answer(path, FillerLink.health)
        link.close()
        return answer

    @classmethod
    async def _first_answer(
        cls, path: str, ask: Callable[[FillerLink], Awaitable[T]]
    ) -> tuple[FillerLink, T]:
        """Connect and `ask` the first question, waiting up to CONNECT_TIMEOUT for a filler.

        A filler that hangs up before it answers was killed or stopped after
        it took the connection (or its dying socket queued it): one being
        restarted, waited for as one that refuses is, on a new connection.
        Nothing is lost by asking again: the first question changes nothing
        the second would not. What the filler answers (an error too) is final.
        """
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            link = await cls.connect(path, deadline=deadline)
            try:
                return link, await ask(link)
            except _Hangup as exc:
                link.close()
                if time.monotonic() >= deadline:
                    raise Unavailable(f"the cache filler is not reachable ({exc.detail})") from None
            except BaseException:
                link.close()
                raise
            await asyncio.sleep(HANGUP_PAUSE)

    @classmethod
    async def connect(cls, path: str, *, deadline: float | None = None) -> FillerLink:
        """Connect to the filler, waiting up to CONNECT_TIMEOUT for one that is restarting.

        A filler that crashed is replaced by the arbiter within a moment; a
        request that arrives meanwhile waits for it rather than failing. A
        socket whose directory is gone (the cache directory was deleted or
        unmounted) is CacheDeclined at once, and one still missing at the
        deadline is CacheDeclined too: without a filler socket there is no
        cache to wait for, and the store answers.
        """
        if deadline is None:
            deadline = time.monotonic() + CONNECT_TIMEOUT
        delay = 0.02
        while True:
            try:
                return await cls._connect_once(path)
            except _NOBODY_LISTENING as exc:
                missing = isinstance(exc, FileNotFoundError)
                if missing and _directory_gone(path):
                    raise CacheDeclined(f"{GONE} ({os.path.dirname(path)})") from None
                left = deadline - time.monotonic()
                if left <= 0 and missing:
                    raise CacheDeclined(f"the cache filler has no socket at {path}") from None
                if left <= 0:
                    raise Unavailable(f"the cache filler is not reachable ({exc})") from None
                await asyncio.sleep(min(delay, left))  # the last try is at the deadline
                delay = min(delay * 2, 0.5)

    @classmethod
    async def _connect_once(cls, path: str) -> FillerLink:
        """Connect to the filler; Unavailable when nobody serves `path`.

        The socket is connected here, not by the loop: uvloop cannot connect
        to an abstract name (a leading NUL). A Unix connect does not wait
        unless the filler's backlog is full; only then does a thread wait.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.setblocking(True)
                sock.settimeout(CONNECT_TIMEOUT)
                await asyncio.to_thread(sock.connect, path)
                sock.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        except _NOBODY_LISTENING:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise Unavailable(f"the cache filler is not reachable ({exc})") from None
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    async def open(self, key: str, check: bool) -> str:
        """Ask for `key`'s entry (a HEAD first if `check`); returns the pinned ETag."""
        self._send(Open(key, check))
        reply = await self._next()
        if isinstance(reply, Error):
            raise store_error(reply.kind, reply.detail, reply.retry_after)
        etag = reply.meta.get("etag") if isinstance(reply, Entry) else None
        if not isinstance(etag, str):
            raise Unavailable(f"the cache filler answered open with {reply!r}")
        self._listener = asyncio.ensure_future(self._listen())
        return etag

    async def health(self) -> tuple[str, float]:
        """The filler's word on the cache disk: ("ok" or "degraded: ...", since)."""
        self._send(Health())
        reply = await self._next()
        if not isinstance(reply, HealthReply):
            raise Unavailable(f"the cache filler answered health with {reply!r}")
        return reply.state, reply.since

    def want(self, blocks: range) -> None:
        """Ask for the blocks of `blocks` not asked for yet (no wait)."""
        new = [b for b in blocks if b not in self._blocks]
        if not new or self._broken is not None:
            return
        loop = asyncio.get_running_loop()
        for block in new:
            self._blocks[block] = loop.create_future()
        self._send(Want(new[0], new[-1]))

    async def wait(self, block: int) -> None:
        """Return once the filler reported `block` present; raise what it reported else."""
        self.want(range(block, block + 1))
        future = self._blocks.get(block)
        if future is None:
            assert self._broken is not None
            raise self._broken
        outcome = await asyncio.shield(future)
        if outcome is not None:
            del self._blocks[block]  # a later want may ask again
            raise outcome

    async def refetch(self, block: int) -> None:
        """Report `block` as failing its check; return once it is present again."""
        if self._broken is not None:
            raise self._broken
        self._blocks[block] = asyncio.get_running_loop().create_future()
        self._send(Bad(block))
        await self.wait(block)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        self._break(Unavailable("the filler connection was closed"))
        self._writer.close()

    def _send(self, request: Request) -> None:
        if self._writer.is_closing():
            self._break(Unavailable("the cache filler went away"))
        else:
            self._writer.write(encode(request))

    async def _next(self) -> Reply:
        try:
            line = await self._reader.readline()
        except ValueError as exc:  # asyncio's name for "over the line limit"
            raise Unavailable(f"the cache filler connection failed: {exc}") from None
        except ConnectionError as exc:
            raise _Hangup(f"the cache filler connection failed: {exc}") from None
        if not line.endswith(b"\n"):
            raise _Hangup("the cache filler went away")
        try:
            return decode_reply(line)
        except BadMessage as exc:
            raise Unavailable(f"the cache filler sent a bad message: {exc}") from None

    async def _listen(self) -> None:
        try:
            while True:
                reply = await self._next()
                if isinstance(reply, Have):
                    self._settle(reply.block, None)
                elif isinstance(reply, Failed):
                    error = store_error(reply.kind, reply.detail, reply.retry_after)
                    self._settle(reply.block, error)
                elif isinstance(reply, Error):
                    self._break(store_error(reply.kind, reply.detail, reply.retry_after))
                    return
        except Unavailable as exc:
            self._break(exc)

    def _settle(self, block: int, outcome: StoreError | None) -> None:
        future = self._blocks.get(block)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _break(self, error: StoreError) -> None:
        if self._broken is None:
            self._broken = error
        for future in self._blocks.values():
            if not future.done():
                future.set_result(self._broken)


def _directory_gone(path: str) -> bool:
    """The directory of a socket path is gone (one stat of a local directory: no thread)."""
    return not os.path.isdir(os.path.dirname(path))
