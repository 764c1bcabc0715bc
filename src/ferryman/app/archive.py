"""Members of tar archives, served like files: `GET /dir/a.tar/path/in/archive`.

The first path segment that names a regular file ending in .tar, .tar.gz or
.tgz (any case) is the archive; the rest is the member. `/a.tar` is the
archive itself, `/a.tar/` and `/a.tar/dir/` list members (HTML or JSON, as
directories do), `/a.tar/dir` redirects to the slash form. Archives are
read-only.

Per request: the Root (app/root.py, the same confinement as any file) hands
over the archive's descriptor, kept open between requests as a file's is
(app/openfiles.py: one stat() per request shows it is still the same file,
else it is opened and checked afresh); its index (app/archive_index.py)
comes from a cache keyed by the descriptor's identity, or is read in a
worker thread (one build per identity, however many requests wait for it).
Then decide, then act: the member's validators and size are in the index,
so preconditions, Range and multipart are settled before any byte is read
or extracted. A member's Representation (ETag, headers) is made at its
first answer and kept with the index of that version of the archive.

- .tar: the body is a region of the archive's own descriptor at the
  member's data offset: zero-copy, ranges free. A plain 200 of a small
  member whose bytes are in the page cache is answered from memory, and
  kept there (app/bodycache.py) while the archive is the same file, as a
  small file's is: the next plain GET of it skips the archive altogether.
- .tar.gz/.tgz: a gzip stream cannot be entered in the middle, so the
  member is decompressed whole, in a worker thread, into a spool file
  (app/spool.py), checked against the CRC-32 in the index, and served as
  regions of it. One copy per member is shared by every transfer that
  needs it and goes after the last one ends (app/archive_copies.py); the
  spool as a whole has a limit (--spool-max-size: 503 with Retry-After
  when an extraction would pass it). A 304, a HEAD or an error extracts
  nothing. An archive whose gzip stream zlib refused (a trailer whose
  CRC-32 does not match, corrupt data) is damaged: 500 bad_archive for
  anything in it, so no byte known to be wrong is served.

What the index holds and leaves out, and the limits:
app/archive_index.py and docs/decisions/0009-archive-members.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ferryman.app.archive_copies import (
    EXTRACTIONS,
    ArchiveDamaged,
    CopyMismatch,
    Lease,
    MemberCopies,
    Refusal,
    Stopped,
    extract_member,
)
from ferryman.app.archive_index import (
    MAX_REPRESENTATIONS,
    ArchiveIndex,
    IndexCache,
    Member,
    is_compressed,
    member_etag,
    open_positional,
    read_index,
)
from ferryman.app.bodycache import SmallBodyCache, same_file
from ferryman.app.browse import Browse
from ferryman.app.compression import Compression, FileSource, Source
from ferryman.app.fileat import Identity, identity
from ferryman.app.listing import render
from ferryman.app.mime import content_type
from ferryman.app.openfiles import OpenFile
from ferryman.app.plan import Plan, Representation, plan_response
from ferryman.app.root import Kind, Meaning, decide, slash_form
from ferryman.app.spool import Spool, SpoolFull
from ferryman.errors import HttpError, not_found
from ferryman.http.body import Body, FileRegion
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.pagecache import read_nowait

if TYPE_CHECKING:
    from ferryman.app.paths import RequestPath

log = logging.getLogger("ferryman.archive")

# Seconds a client refused for spool room is told to wait: copies are released as
# transfers end and kept ones after --spool-keep, neither of which can be foreseen.
SPOOL_RETRY_AFTER = 5


class ArchiveReader:
    """Answers requests whose path runs through an archive; see the module docstring.

    Owns the index cache, the builds in flight and the member copies of one
    worker (app/archive_copies.py).
    """

    def __init__(
        self,
        spool: Spool,
        *,
        max_member_size: int,
        cache_control: str | None,
        max_ranges: int,
        cache: IndexCache | None = None,
        extractions: int = EXTRACTIONS,
        compression: Compression | None = None,
        browse: Browse | None = None,
        small: SmallBodyCache | None = None,
        small_body: int = 0,
        root_fd: int = -1,
    ) -> None:
        self.spool = spool
        self.compression = compression
        self.browse = browse if browse is not None else Browse()
        self.cache_control = cache_control
        self.max_ranges = max_ranges
        self.max_member_size = max_member_size
        self.cache = cache if cache is not None else IndexCache()
        self._building: dict[Identity, asyncio.Task[ArchiveIndex]] = {}
        self.copies = MemberCopies(spool, extractions=extractions)
        # Small answers kept in memory (the files' own, app/bodycache.py): members of a
        # .tar up to `small_body` bytes, revalidated by a stat() of the archive under
        # the root open as `root_fd`.
        self.small = small
        self.small_body = small_body
        self.root_fd = root_fd

    async def respond(
        self, request: Request, path: RequestPath, count: int, opened: OpenFile
    ) -> Response:
        """Serve `path` inside the archive `opened` (its first `count` segments); this
        request's use of it belongs to the answer's body, or is released here.

        The Root opened the archive (root.OpenedArchive); what the rest of the
        path names inside it is decided as for a directory (root.decide).
        """
        archive = path.segments[count - 1]
        member = "/".join(path.segments[count:])
        compressed = is_compressed(archive)
        fd = opened.fd
        st = opened.st
        held = True  # this request's use of `opened`, until an answer takes it
        try:
            index = await self._index(fd, st, compressed)
            if index.damaged is not None:
                detail = f"the archive is damaged, nothing in it is served: {index.damaged}"
                raise HttpError(500, "bad_archive", detail)
            if not index.readable:
                raise not_found("not a readable tar archive")
            found = index.files.get(member)
            meaning = decide(path, _kind(index, member, path.trailing_slash), archives=False)
            if meaning is Meaning.FILE and found is not None:
                name = member.rpartition("/")[2]
                rep = self._representation(index, member, name, st, found)
                if rep.vary:
                    coded = self._coded(request, rep, name, opened, compressed, found)
                    if coded is not None:
                        held = False  # the answer's now, however it ends
                        return coded if isinstance(coded, Response) else await coded
                plan = plan_response(request, rep, max_ranges=self.max_ranges)
                if plan.status == 304:
                    return rep.not_modified()
                if not compressed:
                    if (
                        plan.status == 200
                        and found.size <= self.small_body
                        and self.small is not None
                    ):
                        small = self._remember(request, path, count, opened, found, plan, rep)
                        if small is not None:
                            return small
                    body = plan.body(fd, found.offset, opened.release)
                    held = False  # the body's now: released when the transfer ends
                    return Response(plan.status, plan.headers, body, plan.head_block)
                return await self._extracted(request, plan, fd, st, member, found)
            if meaning is Meaning.SLASH_FORM:
                return slash_form(request, path)
            entries = index.dirs.get(member)
            if entries is None or meaning is not Meaning.DIRECTORY:
                raise not_found()
            members = list(entries.values())
            return await render(request, path, members, self.browse, self.cache_control)
        finally:
            if held:
                opened.release()

    def _representation(
        self, index: ArchiveIndex, member: str, name: str, st: os.stat_result, found: Member
    ) -> Representation:
        """The member's validators and headers: made at its first answer, then kept with
        the index of this version of the archive (a bounded number per archive)."""
        kept = index.representations
        rep = kept.get(member)
        if rep is None:
            rep = Representation(
                size=found.size,
                etag=member_etag(st, member, found.offset),
                last_modified=found.mtime,
                name=name,
                cache_control=self.cache_control,
                vary=self.compression is not None
                and self.compression.negotiates(content_type(name)),
            )
            if len(kept) < MAX_REPRESENTATIONS:
                kept[member] = rep
        return rep

    def _remember(
        self,
        request: Request,
        path: RequestPath,
        count: int,
        opened: OpenFile,
        found: Member,
        plan: Plan,
        rep: Representation,
    ) -> Response | None:
        """Answer a small member of a .tar whose bytes are in the page cache from memory,
        and keep it there for the next plain GET (app/bodycache.py); None when cold. Its
        check is the archive's: still the same file by the same directories."""
        assert self.small is not None
        if rep.vary and "accept-encoding" in request.headers:
            return None  # a negotiated answer: only the one to no Accept-Encoding is kept
        body = read_nowait(opened.fd, found.offset, found.size)
        if body is None or len(body) != found.size:
            return None  # cold or cut short: the connection reads it the usual way
        relative = "/".join(path.segments[:count])
        current = same_file(self.root_fd, relative, opened.identity, opened.route)
        self.small.store(request, current, rep, body)
        return Response(200, plan.headers, Body((body,)), plan.head_block)

    def _coded(
        self,
        request: Request,
        rep: Representation,
        name: str,
        opened: OpenFile,
        compressed: bool,
        found: Member,
    ) -> Response | Awaitable[Response] | None:
        """The member coded on the fly, if negotiation says so (app/compression.py); None
        for identity. Raises before taking the use of `opened`; the answer owns it when
        one is returned."""
        compression = self.compression
        assert compression is not None
        coding = next(compression.choices(request, rep, sidecars=False)).coding
        if coding is None:
            return None
        coded = compression.coded(rep, coding, name)
        source: Source
        if compressed:
            self._check_extractable(found)
            source = _ExtractedSource(self, opened, name, found)
        else:
            source = FileSource(opened.fd, found.offset, found.size, opened.release)
        return compression.on_the_fly(request, coded, coding, source)

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
        if index.damaged is not None:
            log.warning("archive damaged, nothing in it is served: %s", index.damaged)
        elif index.problem is not None:
            log.warning(
                "archive index ends early (%d members): %s", len(index.files), index.problem
            )
        self.cache.put(key, index)

    # -- members of compressed archives ---------------------------------------------------

    async def _extracted(
        self,
        request: Request,
        plan: Plan,
        fd: int,
        st: os.stat_result,
        name: str,
        found: Member,
    ) -> Response:
        """Serve the member from its shared, checked copy; the body holds a lease on it."""
        self._check_extractable(found)
        if request.method == "HEAD":
            return Response(plan.status, plan.headers, plan.declared_body())
        if plan.window() is None:  # an empty member
            return Response(plan.status, plan.headers, Body())
        lease = await self._lease(fd, st, name, found)
        try:
            body = plan.body(lease.fd, 0, lease.release)
        except BaseException:
            lease.release()
            raise
        return Response(plan.status, plan.headers, body, plan.head_block)

    def _check_extractable(self, found: Member) -> None:
        """507 for a member too large to extract, before anything is written."""
        if found.size > self.max_member_size:
            raise HttpError(
                507,
                "member_too_large",
                f"extracting {found.size} bytes exceeds the limit of {self.max_member_size}",
            )
        if found.size > self.spool.max_size:
            raise HttpError(
                507,
                "member_too_large",
                f"a copy of {found.size} bytes cannot fit in the spool's {self.spool.max_size}",
            )

    async def _lease(self, fd: int, st: os.stat_result, name: str, found: Member) -> Lease:
        """A lease on the member's shared, checked copy (extracted by the first asker)."""
        key = (identity(st), name, found.offset)
        return await self.copies.lease(key, lambda: _MemberJob(_dup(fd), found, name, self.spool))


class _ExtractedSource:
    """A member of a compressed archive as the source of a coded answer: its copy,
    leased when the body is wanted. Holds a use of the archive until then."""

    def __init__(self, reader: ArchiveReader, opened: OpenFile, name: str, found: Member) -> None:
        self.reader = reader
        self.opened: OpenFile | None = opened
        self.name = name
        self.found = found

    async def body(self) -> Body:
        opened = self.opened
        assert opened is not None
        try:
            lease = await self.reader._lease(opened.fd, opened.st, self.name, self.found)
        finally:
            self.release()
        return Body((FileRegion(lease.fd, 0, self.found.size),), cleanup=lease.release)

    def release(self) -> None:
        if self.opened is not None:
            self.opened.release()
            self.opened = None


class _MemberJob:
    """The extraction of one member (archive_copies.Job): its own duplicate of the archive.

    Turns what can go wrong into a Refusal (the answer every waiter gets),
    and logs the archive's faults once, here, not once per waiter.
    """

    def __init__(self, fd: int, member: Member, name: str, spool: Spool) -> None:
        self.fd = fd
        self.member = member
        self.name = name
        self.spool = spool

    def run(self, stop: threading.Event) -> tuple[int, str] | Refusal:
        try:
            with open_positional(self.fd, owned=False) as raw:
                return extract_member(raw, self.member, self.spool, stop)
        except SpoolFull as exc:
            detail = f"{exc}; try again later"
            later = (("Retry-After", str(SPOOL_RETRY_AFTER)),)
            return Refusal(503, "spool_full", detail, later, for_room=True)
        except CopyMismatch as exc:
            log.warning("archive member %r not served, its copy is discarded: %s", self.name, exc)
            return Refusal(500, "bad_archive", f"the member's bytes do not check: {exc}")
        except ArchiveDamaged as exc:
            log.warning("archive damaged at member %r: %s", self.name, exc)
            return Refusal(500, "bad_archive", f"the archive is damaged: {exc}")
        except Stopped:
            return Refusal(503, "stopped", "nobody waits for this extraction")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return Refusal(507, "insufficient_storage", "the spool's disk is full")
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                again = (("Retry-After", "1"),)
                return Refusal(503, "overloaded", "out of file descriptors", again)
            log.warning("cannot extract archive member %r: %s", self.name, exc)
            return Refusal(500, "internal_error", "cannot extract the member")

    def close(self) -> None:
        os.close(self.fd)


def _kind(index: ArchiveIndex, member: str, trailing_slash: bool) -> Kind:
    """What the archive holds as `member`; a name that is both a file and a directory
    (a tar may say so) is the directory in its slash form."""
    if member in index.files and not (trailing_slash and member in index.dirs):
        return Kind.FILE
    if member in index.dirs:
        return Kind.DIRECTORY
    return Kind.MISSING


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
