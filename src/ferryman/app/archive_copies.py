"""Extracted copies of .tar.gz members: one per member, shared, checked, bounded.

A member of a compressed archive is served from a spool file holding the
whole member, decompressed once (`extract_member`, in a worker thread) and
checked against the CRC-32 the index recorded before anyone sees a byte of
it. `MemberCopies` shares that file, per worker, between every transfer
that needs the member (key: the archive's identity, the member's name and
offset), so N readers pin one copy, not N. Why copies rather than a seek
index: docs/decisions/0017-bounded-archive-copies.md.

A copy's life:

- extracting: the first request starts one job; later requests for the
  same member wait for it (no byte is served before the CRC is checked, so
  there is nothing to serve earlier). If every waiter goes before it ends,
  the job is stopped at its next chunk and its file discarded. At most
  `extractions` jobs run at once per worker; more wait their turn.
- in use: each request that gets the copy holds a `Lease`; the lease's
  `release` is its Body's cleanup, which the connection runs exactly once
  when the transfer ends, however it ends. Releasing twice does nothing.
- unused: after the last release the copy is kept `spool.keep` seconds
  for the next request (at most KEPT of them per worker; 0 s: none), then
  removed: the name at once, the descriptor closed in a worker thread.
- refused: a job that fails (damaged archive, CRC mismatch, spool full,
  disk full) leaves no file. Its `Refusal` is a description; every waiter
  raises an HttpError of its own from it (an exception instance is never
  shared). A refusal for room (the spool limit) first drops this worker's
  unused copies and tries once more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import IO, Protocol

from ferryman.app.archive_index import CHUNK, Member
from ferryman.app.gzipstream import GzipDamaged, GzipStream, GzipTruncated, NotGzip
from ferryman.app.spool import Spool
from ferryman.errors import HttpError
from ferryman.failures import log_failure

log = logging.getLogger("ferryman.archive")

EXTRACTIONS = 4  # concurrent extractions per worker; more requests wait their turn
KEPT = 16  # unused copies kept per worker for the next request (each for spool.keep seconds)


# -- making one copy (blocking, in a worker thread) ----------------------------------------


class ArchiveDamaged(Exception):
    """The stream broke, or ended, before the member's bytes were all there."""


class CopyMismatch(ArchiveDamaged):
    """The member's bytes decompressed to another CRC-32 than the index recorded."""


class Stopped(Exception):
    """Nobody waits for the extraction any more."""


def extract_member(
    raw: IO[bytes], member: Member, spool: Spool, stop: threading.Event
) -> tuple[int, str]:
    """Decompress one whole member into a new spool file, and check its CRC-32.

    The file's room is reserved first (Spool.reserve: SpoolFull or OSError
    before any decompression). Returns (descriptor, name) of a file holding
    exactly the member's bytes, checked; on any failure the file is
    discarded here and ArchiveDamaged (CopyMismatch when the CRC differs),
    Stopped or OSError is raised.
    """
    fd, name = spool.reserve(member.size)
    try:
        stream = GzipStream(raw)
        while stream.position < member.offset:
            _check(stop)
            if not stream.skip(min(CHUNK, member.offset - stream.position)):
                raise ArchiveDamaged("the archive ends before the member")
        crc = written = 0
        while written < member.size:
            _check(stop)
            chunk = stream.chunk(min(CHUNK, member.size - written))
            if not chunk:
                raise ArchiveDamaged("the archive ends inside the member")
            crc = zlib.crc32(chunk, crc)
            view = memoryview(chunk)
            while view:
                count = os.pwrite(fd, view, written)
                view, written = view[count:], written + count
        if member.crc is not None and crc != member.crc:
            raise CopyMismatch(
                f"the member decompressed to CRC-32 {crc:08x}; the index says {member.crc:08x}"
            )
    except (NotGzip, GzipDamaged, GzipTruncated) as exc:
        spool.discard(fd, name)
        raise ArchiveDamaged(str(exc)) from None
    except BaseException:
        spool.discard(fd, name)
        raise
    return fd, name


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise Stopped


# -- sharing copies (on the event loop) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no copy could be made: a description each waiter raises its own error from."""

    status: int
    error: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()
    for_room: bool = False  # the spool limit: dropping unused copies may make room

    def http_error(self) -> HttpError:
        return HttpError(self.status, self.error, self.detail, self.headers)


class Job(Protocol):
    """One member's extraction, as MemberCopies runs it."""

    def run(self, stop: threading.Event) -> tuple[int, str] | Refusal:
        """In a worker thread: a checked copy (descriptor, spool name) or why not.

        May run twice (after a refusal for room); never raises for the
        archive's or the disk's faults.
        """
        ...

    def close(self) -> None:
        """On the loop, once, after the last run: release what the job holds."""
        ...


_STOPPED = Refusal(503, "stopped", "nobody waits for this extraction")  # never sent


class _Copy:
    __slots__ = ("done", "fd", "key", "name", "refusal", "stop", "timer", "users", "waiters")

    def __init__(self, key: Hashable, done: asyncio.Future[None]) -> None:
        self.key = key
        self.done = done  # resolved when the job ends, whichever way
        self.fd = -1
        self.name = ""
        self.refusal: Refusal | None = None
        self.stop = threading.Event()  # set: abandoned, nobody waits
        self.timer: asyncio.TimerHandle | None = None
        self.users = 0  # leases not yet released
        self.waiters = 0  # requests awaiting `done`

    @property
    def ready(self) -> bool:
        return self.fd >= 0


class Lease:
    """One transfer's use of a copy: `fd` to read (with offsets), `release` once it ends."""

    __slots__ = ("_copy", "_owner", "fd")

    def __init__(self, owner: MemberCopies, copy: _Copy) -> None:
        self._owner: MemberCopies | None = owner
        self._copy = copy
        self.fd = copy.fd

    def release(self) -> None:
        """The Body's cleanup: the copy may go once its last lease is released. Idempotent."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._released(self._copy)


class MemberCopies:
    """The copies of one worker, by key; see the module docstring."""

    def __init__(self, spool: Spool, *, extractions: int = EXTRACTIONS, kept: int = KEPT) -> None:
        self.spool = spool
        self.kept = kept
        self._copies: dict[Hashable, _Copy] = {}  # extracting, in use or kept
        self._unused: OrderedDict[Hashable, _Copy] = OrderedDict()  # kept, oldest first
        self._slots = asyncio.Semaphore(extractions)
        self._jobs: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        # A worker that stops removes its copies' names itself (the arbiter's sweep
        # is for workers that die); by then no transfer is left to use them.
        weakref.finalize(self, _unlink_all, spool, self._copies)

    def __len__(self) -> int:
        return len(self._copies)

    @property
    def unused(self) -> int:
        return len(self._unused)

    async def lease(self, key: Hashable, start: Callable[[], Job]) -> Lease:
        """A lease on the copy for `key`: the one there is, or made by `start()`'s job.

        `start` is called (on the loop) only when no copy exists or is being
        made; what it raises goes to the caller. A refusal is raised as an
        HttpError; a cancelled wait that was the last one stops the job.
        """
        copy = self._copies.get(key)
        if copy is None:
            job = start()
            loop = asyncio.get_running_loop()
            copy = self._copies[key] = _Copy(key, loop.create_future())
            task = loop.create_task(self._make(copy, job))
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        elif copy.key in self._unused:
            self._unused.pop(copy.key)
            if copy.timer is not None:
                copy.timer.cancel()
        if not copy.ready:
            copy.waiters += 1
            try:
                await asyncio.shield(copy.done)
            except asyncio.CancelledError:
                copy.waiters -= 1
                if not copy.waiters and not copy.users:
                    if copy.ready:
                        self._unused_now(copy)
                    elif copy.refusal is None:
                        self._abandon(copy)
                raise
            copy.waiters -= 1
            if copy.refusal is not None:
                raise copy.refusal.http_error()
        copy.users += 1
        return Lease(self, copy)

    async def _make(self, copy: _Copy, job: Job) -> None:
        try:
            outcome = await self._run(copy, job)
            if isinstance(outcome, Refusal) and outcome.for_room and self._unused:
                await self._drop_unused()
                outcome = await self._run(copy, job)
        except Exception as exc:  # a bug, not the archive's fault
            log_failure(log, "extracting an archive member failed", exc)
            outcome = Refusal(500, "internal_error", "cannot extract the member")
        finally:
            job.close()
        if copy.stop.is_set():  # abandoned: nobody will use what was made
            if not isinstance(outcome, Refusal):
                self.spool.remove(*outcome)
            outcome = _STOPPED
        if isinstance(outcome, Refusal):
            copy.refusal = outcome
            self._forget(copy)
        else:
            copy.fd, copy.name = outcome
        copy.done.set_result(None)

    async def _run(self, copy: _Copy, job: Job) -> tuple[int, str] | Refusal:
        async with self._slots:
            if copy.stop.is_set():
                return _STOPPED
            return await asyncio.to_thread(job.run, copy.stop)

    def _abandon(self, copy: _Copy) -> None:
        """Nobody waits for the copy being made: stop its job; the next request starts anew."""
        copy.stop.set()
        self._forget(copy)

    def _released(self, copy: _Copy) -> None:
        copy.users -= 1
        if not copy.users and not copy.waiters:
            self._unused_now(copy)

    def _unused_now(self, copy: _Copy) -> None:
        """Nobody uses the copy: keep it for a while if it may be, else remove it."""
        keep = self.spool.keep
        if keep <= 0 or self.kept <= 0 or self._copies.get(copy.key) is not copy:
            self._remove(copy)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to time the keeping: nothing is kept
            self._remove(copy)
            return
        self._unused[copy.key] = copy
        copy.timer = loop.call_later(keep, self._expire, copy)
        while len(self._unused) > self.kept:
            _, oldest = self._unused.popitem(last=False)
            self._remove(oldest)

    def _expire(self, copy: _Copy) -> None:
        if self._unused.get(copy.key) is copy:
            self._remove(copy)

    def _remove(self, copy: _Copy) -> None:
        self._forget(copy)
        if self._unused.get(copy.key) is copy:
            del self._unused[copy.key]
        if copy.timer is not None:
            copy.timer.cancel()
        if copy.ready:
            self.spool.remove(copy.fd, copy.name)
            copy.fd = -1

    def _forget(self, copy: _Copy) -> None:
        if self._copies.get(copy.key) is copy:
            del self._copies[copy.key]

    async def _drop_unused(self) -> None:
        """Remove every kept copy now, and wait until their room is free."""
        dropped = list(self._unused.values())
        self._unused.clear()
        files = []
        for copy in dropped:
            self._forget(copy)
            if copy.timer is not None:
                copy.timer.cancel()
            files.append((copy.fd, copy.name))
            copy.fd = -1
        await asyncio.to_thread(_discard_all, self.spool, files)


def _unlink_all(spool: Spool, copies: dict[Hashable, _Copy]) -> None:
    for copy in copies.values():
        if copy.ready:
            spool.discard(copy.fd, copy.name)


def _discard_all(spool: Spool, files: list[tuple[int, str]]) -> None:
    for fd, name in files:
        spool.discard(fd, name)
