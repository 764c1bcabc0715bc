"""Members of tar archives, served like files: `GET /dir/a.tar/path/in/archive`.

The first path segment that names a regular file ending in .tar, .tar.gz or
.tgz (any case) is the archive; the rest is the member. `/a.tar` is the
archive itself, `/a.tar/` and `/a.tar/dir/` list members (HTML or JSON, as
directories do), `/a.tar/dir` redirects to the slash form. Archives are
read-only.

Per request: the archive was opened and fstat'ed by FileServer (same
confinement as any file); its index (app/archive_index.py) comes from a
cache keyed by the open descriptor's identity, or is read in a worker
thread (one build per identity, however many requests wait for it). Then
decide, then act: the member's validators and size are in the index, so
preconditions, Range and multipart are settled before any byte is read or
extracted.

- .tar: the body is a region of the archive's own descriptor at the
  member's data offset: zero-copy, ranges free.
- .tar.gz/.tgz: a gzip stream cannot be entered in the middle, so the bytes
  the response needs (the window from its first to its last range) are
  decompressed in a worker thread into a spool file (app/spool.py) and
  served as regions of it. The connection unlinks the file when the
  transfer ends; a 304, a HEAD or an error extracts nothing.

What the index holds and leaves out, and the limits:
app/archive_index.py and docs/decisions/0009-archive-members.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ferryman.app import listing
from ferryman.app.archive_index import (
    ArchiveDamaged,
    ArchiveIndex,
    IndexCache,
    Member,
    extract_window,
    is_archive_name,
    is_compressed,
    member_etag,
    open_positional,
    read_index,
)
from ferryman.app.listing import Entry
from ferryman.app.openfiles import Identity, identity
from ferryman.app.plan import Plan, Representation, plan_response
from ferryman.app.spool import Spool
from ferryman.errors import HttpError, not_found
from ferryman.http.body import Body
from ferryman.http.parser import Request
from ferryman.http.response import Response

if TYPE_CHECKING:
    from ferryman.app.files import FileServer
    from ferryman.app.paths import RequestPath

log = logging.getLogger("ferryman.archive")

EXTRACTIONS = 4  # concurrent extractions per worker; more requests wait their turn


class ArchiveServer:
    """Answers requests whose path runs through an archive; see the module docstring.

    Owns the index cache, the builds in flight and the extraction slots of
    one worker; spool files belong to their transfers (app/spool.py).
    """

    def __init__(
        self,
        files: FileServer,
        spool: Spool,
        *,
        max_member_size: int,
        cache: IndexCache | None = None,
        extractions: int = EXTRACTIONS,
    ) -> None:
        self.files = files
        self.spool = spool
        self.max_member_size = max_member_size
        self.cache = cache if cache is not None else IndexCache()
        self._building: dict[Identity, asyncio.Task[ArchiveIndex]] = {}
        self._extracting = asyncio.Semaphore(extractions)

    # -- entry points (called by FileServer.get) --------------------------------------

    def split(self, segments: Sequence[str]) -> tuple[int, int, os.stat_result] | None:
        """Open the archive a path runs through: (segments it takes, descriptor, fstat).

        Only segments before the last are candidates (FileServer opened the
        whole path already). A directory named like an archive is passed
        over; None when no candidate is a regular file.
        """
        for i, segment in enumerate(segments[:-1]):
            if not is_archive_name(segment):
                continue
            try:
                # FileServer's open: confinement, no dotfiles, no state directory.
                fd, st = self.files.open_relative("/".join(segments[: i + 1]))
            except HttpError as exc:
                if exc.status == 404:
                    return None  # what lies beyond a missing segment is missing too
                raise
            if stat.S_ISREG(st.st_mode):
                return i + 1, fd, st
            os.close(fd)
        return None

    def serve(self, request: Request, path: RequestPath) -> Awaitable[Response] | None:
        """The answer for a path FileServer could not open, or None if no archive is in it."""
        found = self.split(path.segments)
        if found is None:
            return None
        count, fd, st = found
        return self.respond(request, path, count, fd, st)

    def serve_open(
        self, request: Request, path: RequestPath, fd: int, st: os.stat_result
    ) -> Awaitable[Response] | None:
        """`/a.tar/`: the listing of the regular file FileServer opened, if it is an archive.

        Takes `fd` only when it returns an awaitable; on None the caller keeps it.
        """
        if not (path.trailing_slash and path.segments and is_archive_name(path.segments[-1])):
            return None
        return self.respond(request, path, len(path.segments), fd, st)

    async def respond(
        self, request: Request, path: RequestPath, count: int, fd: int, st: os.stat_result
    ) -> Response:
        """Serve `path` inside the archive open as `fd` (its first `count` segments); owns fd."""
        archive = path.segments[count - 1]
        member = "/".join(path.segments[count:])
        compressed = is_compressed(archive)
        try:
            index = await self._index(fd, st, compressed)
            if not index.readable:
                raise not_found("not a readable tar archive")
            found = index.files.get(member)
            if found is not None and not path.trailing_slash:
                rep = Representation(
                    size=found.size,
                    etag=member_etag(st, member, found.offset),
                    last_modified=found.mtime,
                    name=member.rpartition("/")[2],
                    cache_control=self.files.cache_control,
                )
                plan = plan_response(request, rep, max_ranges=self.files.max_ranges)
                if plan.status == 304:
                    return Response(304, plan.headers)
                if not compressed:
                    body = plan.body(fd, found.offset, _closer(fd))
                    fd = -1  # the body's now: closed when the transfer ends
                    return Response(plan.status, plan.headers, body)
                return await self._extracted(request, plan, fd, found)
            entries = index.dirs.get(member)
            if entries is None:
                raise not_found()
            if not path.trailing_slash:
                location = path.url(slash=True)
                if request.query:
                    location += "?" + request.query.decode("latin-1")
                return Response(301, [("Location", location)])
            return await self._listing(request, path, list(entries.values()))
        finally:
            if fd >= 0:
                os.close(fd)

    # -- index --------------------------------------------------------------------

    async def _index(self, fd: int, st: os.stat_result, compressed: bool) -> ArchiveIndex:
        key = identity(st)
        index = self.cache.get(key)
        if index is not None:
            return index
        task = self._building.get(key)
        if task is None:
            # The build reads its own descriptor and closes it, so it may outlive this
            # request (it is shared with every request that waits for the same index).
            args = (_dup(fd), compressed, st.st_size, int(st.st_mtime))
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(_index_fd, *args))
            self._building[key] = task
            task.add_done_callback(lambda done: self._built(key, done))
        try:
            return await asyncio.shield(task)
        except OSError as exc:
            log.warning("cannot read archive index: %s", exc)
            raise HttpError(500, "internal_error", "cannot read the archive") from None

    def _built(self, key: Identity, task: asyncio.Task[ArchiveIndex]) -> None:
        self._building.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        index = task.result()
        if index.problem is not None:
            log.warning(
                "archive index ends early (%d members): %s", len(index.files), index.problem
            )
        self.cache.put(key, index)

    # -- members of compressed archives ---------------------------------------------------

    async def _extracted(self, request: Request, plan: Plan, fd: int, found: Member) -> Response:
        """Decompress what the plan needs into a spool file; its body owns the file."""
        if found.size > self.max_member_size:
            raise HttpError(
                507,
                "member_too_large",
                f"extracting {found.size} bytes exceeds the limit of {self.max_member_size}",
            )
        if request.method == "HEAD":
            return Response(plan.status, plan.headers, plan.declared_body())
        window = plan.window()
        if window is None:  # an empty member
            return Response(plan.status, plan.headers, Body())
        first, last = window
        async with self._extracting:
            temp_fd, temp_name = await self._extract(fd, found.offset + first, last - first + 1)
        try:
            body = plan.body(temp_fd, -first, self.spool.body_cleanup(temp_fd, temp_name))
        except BaseException:
            self.spool.discard(temp_fd, temp_name)
            raise
        return Response(plan.status, plan.headers, body)

    async def _extract(self, fd: int, start: int, length: int) -> tuple[int, str]:
        dup = _dup(fd)  # the thread's own: this request may be cancelled before it ends
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._extract_fd, dup, start, length, stop)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()  # the thread stops at its next chunk; what it made is discarded
            future.add_done_callback(self._discard_result)
            raise
        except ArchiveDamaged as exc:
            log.warning("archive damaged: %s", exc)
            raise HttpError(500, "bad_archive", f"the archive is damaged: {exc}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HttpError(507, "insufficient_storage", "the spool is full") from None
            log.warning("cannot extract an archive member: %s", exc)
            raise HttpError(500, "internal_error", "cannot extract the member") from None

    def _extract_fd(
        self, fd: int, start: int, length: int, stop: threading.Event
    ) -> tuple[int, str]:
        with open_positional(fd) as raw:
            return extract_window(raw, start, length, self.spool, stop)

    def _discard_result(self, future: asyncio.Future[tuple[int, str]]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.spool.discard(*future.result())

    # -- listings ---------------------------------------------------------------------

    async def _listing(self, request: Request, path: RequestPath, entries: list[Entry]) -> Response:
        return await listing.render(request, path, entries, self.files.cache_control)


def _index_fd(fd: int, compressed: bool, size: int, mtime: int) -> ArchiveIndex:
    with open_positional(fd) as raw:
        return read_index(raw, compressed=compressed, size=size, mtime=mtime)


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            retry = (("Retry-After", "1"),)
            raise HttpError(503, "overloaded", "out of file descriptors", retry) from None
        raise


def _closer(fd: int) -> Callable[[], None]:
    """The cleanup of a body made of regions of `fd`: close it when the transfer ends."""
    return lambda: os.close(fd)
