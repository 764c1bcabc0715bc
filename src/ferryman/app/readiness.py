"""/-/ready: whether this worker can serve, from checks of what it depends on.

Each check says None (fine) or why not. The answer is kept for a second, so
a flood of probes costs one round of checks a second; each check is bounded
by --ready-timeout, and one that hangs is not started again while it runs
(the next round waits on the same one): a hung disk or store costs one
thread or one request, not one per probe.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ferryman.failures import describe
from ferryman.stores.base import StoreError

if TYPE_CHECKING:
    from ferryman.cache.client import CacheClient
    from ferryman.catalog.api import Catalog
    from ferryman.stores.s3 import S3Store

Check = Callable[[], Coroutine[Any, Any, str | None]]
KEEP = 1.0  # seconds an answer is reused


class Readiness:
    def __init__(
        self,
        checks: dict[str, Check],
        timeout: float,
        keep: float = KEEP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = checks
        self.timeout = timeout
        self.keep = keep
        self.clock = clock
        self._answer: tuple[bool, list[str]] | None = None
        self._answered_at = 0.0
        self._round: asyncio.Future[tuple[bool, list[str]]] | None = None
        self._running: dict[str, asyncio.Task[str | None]] = {}
        self.rounds = 0  # how many rounds of checks ran (tests count them)

    async def state(self) -> tuple[bool, list[str]]:
        """(ready, the reasons it is not: "store: ...", "catalog: ..."), at most `keep` old."""
        if self._answer is not None and self.clock() - self._answered_at < self.keep:
            return self._answer
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._check_all())
        return await asyncio.shield(self._round)

    async def _check_all(self) -> tuple[bool, list[str]]:
        self.rounds += 1
        names = list(self.checks)
        results = await asyncio.gather(*(self._one(name) for name in names))
        reasons = [f"{name}: {why}" for name, why in zip(names, results, strict=True) if why]
        self._answer = (not reasons, reasons)
        self._answered_at = self.clock()
        return self._answer

    async def _one(self, name: str) -> str | None:
        task = self._running.get(name)
        if task is None or task.done():
            task = self._running[name] = asyncio.ensure_future(self.checks[name]())
            task.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except StoreError as exc:
            return f"{type(exc).__name__}: {exc.detail}" if exc.detail else type(exc).__name__
        except Exception as exc:  # a check's failure is a reason, never a 500
            return describe(exc)


def _retrieve(task: asyncio.Task[str | None]) -> None:
    """A check that failed after its round stopped waiting: nobody reads it, and asyncio
    would log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def directory_check(path: str, fd: int) -> Check:
    """SOURCE is still there, a directory, and the one this worker opened at start."""

    def check() -> str | None:
        try:
            there = os.stat(path)
        except OSError as exc:
            return f"SOURCE {path}: {exc.strerror}"
        if not stat.S_ISDIR(there.st_mode):
            return f"SOURCE {path} is no longer a directory"
        held = os.fstat(fd)
        if (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino):
            return f"SOURCE {path} was replaced since the start (restart to serve it)"
        if not os.access(path, os.R_OK | os.X_OK):
            return f"SOURCE {path}: permission denied"
        return None

    async def run() -> str | None:
        return await asyncio.to_thread(check)

    return run


def store_check(store: S3Store) -> Check:
    """The bucket answers a one-key listing of the prefix (what the start checked)."""

    async def run() -> str | None:
        await store.check()
        return None

    return run


def catalog_check(catalog: Catalog) -> Check:
    """The catalog file can be read (its schema version)."""

    async def run() -> str | None:
        await asyncio.to_thread(lambda: catalog.schema_version)
        return None

    return run


def cache_check(cache: CacheClient) -> Check:
    """The filler answers and its disk is sound."""

    async def run() -> str | None:
        state = await cache.health()
        return None if state == "ok" else state

    return run
