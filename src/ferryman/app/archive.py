"""Members of tar archives, served like files: `GET /dir/a.tar/path/in/archive`.

The first path segment that names a regular file ending in .tar, .tar.gz or
.tgz (any case) is the archive; the rest is the member. `/a.tar` is the
archive itself, `/a.tar/` and `/a.tar/dir/` list members (HTML or JSON, as
directories do), `/a.tar/dir` redirects to the slash form. Archives are
read-only.

Per request: the archive was opened and fstat'ed by FileServer (same
confinement as any file); its index comes from a cache keyed by the open
descriptor's identity, or is read in a worker thread (one build per
identity, however many requests wait for it). Then decide, then act: the
member's validators and size are in the index, so preconditions, Range and
multipart are settled before any byte is read or extracted.

- .tar: the body is a region of the archive's own descriptor at the
  member's data offset: zero-copy, ranges free.
- .tar.gz/.tgz: a gzip stream cannot be entered in the middle, so the bytes
  the response needs (the window from its first to its last range) are
  decompressed in a worker thread into a spool file (app/spool.py) and
  served as regions of it. The connection unlinks the file when the
  transfer ends; a 304, a HEAD or an error extracts nothing.

Member names are normalised once, at index time: leading "./" and empty
segments go; an absolute name, a ".." anywhere, a dotfile segment, links,
devices, FIFOs and sparse files are left out of the index, so they are 404
and never listed. Limits, and why they are what they are:
docs/decisions/0009-archive-members.md.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import hashlib
import io
import logging
import os
import stat
import tarfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from ferryman.app import listing
from ferryman.app.files import Plan, plan_response
from ferryman.app.listing import Entry
from ferryman.app.spool import Spool
from ferryman.errors import HttpError
from ferryman.http.body import Body
from ferryman.http.parser import Request
from ferryman.http.response import Headers, Response

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from ferryman.app.files import FileServer
    from ferryman.app.paths import RequestPath

log = logging.getLogger("ferryman.archive")

SUFFIXES = (".tar", ".tar.gz", ".tgz")
_COMPRESSED = (".tar.gz", ".tgz")
MAX_MEMBER_SIZE = 4 * 1024**3  # largest member extracted to the spool, else 507
MAX_MEMBERS = 100_000  # members indexed per archive; the rest is left out (logged)
MAX_HEADER = 1024**2  # largest header block (pax, GNU long name) tarfile may read at once
MAX_SCAN = 16 * 1024**3  # decompressed bytes an index build may walk through (.tar.gz)
CACHE_ARCHIVES = 64  # indexes kept ...
CACHE_ENTRIES = 250_000  # ... and their total size in members and directories
EXTRACTIONS = 4  # concurrent extractions per worker; more requests wait their turn
_CHUNK = 1024**2
_READ_BUFFER = 16 * 1024  # a header's neighbourhood; a seek past it drops the rest
_RENDER_INLINE = 1000  # listings with more entries are rendered in a worker thread
_LAST_DATE = 253402300799  # 9999-12-31T23:59:59Z, the last HTTP-date
_NOT_FOUND = HttpError(404, "not_found", "no such file")
_UNREADABLE = HttpError(404, "not_found", "not a readable tar archive")

Identity = tuple[int, int, int, int, int]


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def is_compressed(name: str) -> bool:
    return name.lower().endswith(_COMPRESSED)


def normalise_member(name: str) -> str | None:
    """The member's path inside the archive, or None when it may not be served.

    "./a//b/" -> "a/b". Absolute names, ".." anywhere (even where it would
    stay inside, as GNU tar refuses them too) and dotfile segments give None.
    """
    if name.startswith("/"):
        return None
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part.startswith("."):  # "..", or a dotfile: a request could not name it
            return None
        parts.append(part)
    return "/".join(parts) or None


def member_etag(st: os.stat_result, member: str, offset: int) -> str:
    """Strong: the archive's identity (as file_etag) plus the member's name and offset."""
    text = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}\0{member}\0{offset}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=12)
    return f'"{digest.hexdigest()}"'


# -- the index ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    offset: int  # of its data in the (decompressed) tar stream
    size: int
    mtime: int


@dataclass(slots=True)
class ArchiveIndex:
    """Regular members by normalised name; each directory's entries ("" is the top)."""

    mtime: int  # for directories the archive does not describe
    files: dict[str, Member] = field(default_factory=dict)
    dirs: dict[str, dict[str, Entry]] = field(default_factory=lambda: {"": {}})
    readable: bool = True  # False: not a tar archive at all (every request is 404)
    problem: str | None = None  # why reading stopped early, if it did

    @property
    def cost(self) -> int:
        return len(self.files) + len(self.dirs)

    def add(self, info: tarfile.TarInfo, archive_size: int | None) -> None:
        name = normalise_member(info.name)
        if name is None:
            return
        mtime = min(max(int(info.mtime), 0), _LAST_DATE)
        if info.isdir():
            self._directory(name, mtime)
        elif info.isreg() and not info.issparse():
            if archive_size is not None and info.offset_data + info.size > archive_size:
                return  # truncated archive: the data is not all there
            self.files[name] = Member(info.offset_data, info.size, mtime)
            parent, _, base = name.rpartition("/")
            self._directory(parent)
            self.dirs[parent][base] = Entry(base, False, info.size, mtime)
        else:  # link, device, FIFO, sparse: never served; it also hides an earlier file
            if self.files.pop(name, None) is not None:
                parent, _, base = name.rpartition("/")
                self.dirs[parent].pop(base, None)

    def _directory(self, name: str, mtime: int | None = None) -> None:
        """Make sure `name` and its parents exist; `mtime` from the archive if it has one."""
        while mtime is not None or name not in self.dirs:
            self.dirs.setdefault(name, {})
            if not name:
                return
            parent, _, base = name.rpartition("/")
            siblings = self.dirs.setdefault(parent, {})
            old = siblings.get(base)
            if mtime is None:
                mtime = old.mtime if old is not None and old.is_dir else self.mtime
            siblings[base] = Entry(base, True, 0, mtime)
            name, mtime = parent, None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int: ...
    def tell(self) -> int: ...


class _Guarded:
    """The file object tarfile reads through: bounds what one archive can cost.

    A header block larger than MAX_HEADER is refused (tarfile reads a pax or
    GNU long-name block whole, so a forged size would be read into memory),
    and so is a seek beyond `limit` (for gzip, every forward seek is
    decompression).
    """

    def __init__(self, raw: _Readable, limit: int) -> None:
        self.raw = raw
        self.limit = limit

    def write(self, data: bytes) -> int:
        raise tarfile.ReadError("archives are read-only")

    def close(self) -> None:
        """The caller closes what it opened."""

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_HEADER:
            raise tarfile.ReadError(f"a header block of {size} bytes (limit {MAX_HEADER})")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset > self.limit:
            raise tarfile.ReadError(f"the archive goes on past {self.limit} bytes")
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def read_index(raw: IO[bytes], *, compressed: bool, size: int, mtime: int) -> ArchiveIndex:
    """Index a tar stream (blocking). Format problems end the index, they do not raise.

    What was read before a problem stays usable (members of a damaged or
    huge archive up to that point); a problem before the first member makes
    the index unreadable. Raises OSError only for I/O errors, which are not
    the archive's fault and must not be cached.
    """
    index = ArchiveIndex(mtime)
    unpacked = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else None
    guarded = _Guarded(unpacked or raw, MAX_SCAN if compressed else size)
    count = 0
    try:
        with tarfile.TarFile(fileobj=guarded, mode="r") as tar:
            while (info := tar.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise tarfile.ReadError(f"more than {MAX_MEMBERS} members")
                index.add(info, None if compressed else size)
                # The index keeps what it needs; TarFile would keep every TarInfo.
                tar.members.clear()  # type: ignore[attr-defined]
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        index.problem = str(exc) or type(exc).__name__
        index.readable = count > 0
    finally:
        if unpacked is not None:
            unpacked.close()  # not `raw`: the caller's
    return index


class IndexCache:
    """Least recently used indexes, bounded in archives and in total entries."""

    def __init__(self, archives: int = CACHE_ARCHIVES, entries: int = CACHE_ENTRIES) -> None:
        self.archives = archives
        self.entries = entries
        self.cost = 0
        self._items: OrderedDict[Identity, ArchiveIndex] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Identity) -> ArchiveIndex | None:
        index = self._items.get(key)
        if index is not None:
            self._items.move_to_end(key)
        return index

    def put(self, key: Identity, index: ArchiveIndex) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.cost -= old.cost
        self._items[key] = index
        self.cost += index.cost
        while len(self._items) > 1 and (
            len(self._items) > self.archives or self.cost > self.entries
        ):
            _, evicted = self._items.popitem(last=False)
            self.cost -= evicted.cost


# -- extraction (.tar.gz) --------------------------------------------------------------


class ArchiveDamaged(Exception):
    """The compressed stream ended or broke before the member's bytes were all there."""


class _Stopped(Exception):
    """The request that wanted the extraction is gone."""


def extract_window(
    raw: IO[bytes], start: int, length: int, spool: Spool, stop: threading.Event
) -> tuple[int, str]:
    """Decompress bytes [start, start+length) of the tar stream into a new spool file.

    Blocking. Never writes more than `length` bytes, whatever the stream
    holds. On any failure the spool file is discarded here.
    """
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            skip = start
            while skip:
                if stop.is_set():
                    raise _Stopped
                chunk = gz.read(min(_CHUNK, skip))
                if not chunk:
                    raise ArchiveDamaged("the archive ends before the member")
                skip -= len(chunk)
            fd, name = spool.create()
            try:
                left = length
                while left:
                    if stop.is_set():
                        raise _Stopped
                    chunk = gz.read(min(_CHUNK, left))
                    if not chunk:
                        raise ArchiveDamaged("the archive ends inside the member")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    left -= len(chunk)
            except BaseException:
                spool.discard(fd, name)
                raise
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ArchiveDamaged(str(exc)) from None
    return fd, name


# -- the handler --------------------------------------------------------------------------


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
        max_member_size: int = MAX_MEMBER_SIZE,
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
                fd, st = self.files._open("/".join(segments[: i + 1]))
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
        if not any(is_archive_name(s) for s in path.segments[:-1]):
            return None
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
                raise _UNREADABLE
            found = index.files.get(member)
            if found is not None and not path.trailing_slash:
                plan = plan_response(
                    request,
                    size=found.size,
                    etag=member_etag(st, member, found.offset),
                    last_modified=found.mtime,
                    name=member.rpartition("/")[2],
                    cache_control=self.files.cache_control,
                    max_ranges=self.files.max_ranges,
                )
                if plan.status == 304:
                    return Response(304, plan.headers)
                if not compressed:
                    body = plan.body(fd, found.offset, _closer(fd))
                    fd = -1  # the body's now: closed when the transfer ends
                    return Response(plan.status, plan.headers, body)
                return await self._extracted(request, plan, fd, found)
            entries = index.dirs.get(member)
            if entries is None:
                raise _NOT_FOUND
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
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
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
        url_path = path.url(slash=True)
        if listing.wants_json(request):
            render, kind = listing.render_json, "application/json"
        else:
            render, kind = listing.render_html, "text/html; charset=utf-8"
        if len(entries) <= _RENDER_INLINE:
            payload = render(url_path, listing.sort_entries(entries))
        else:  # 100,000 entries take about half a second: not on the event loop
            payload = await asyncio.to_thread(_render, render, url_path, entries)
        headers: Headers = [("Content-Type", kind), ("Vary", "Accept")]
        if self.files.cache_control:
            headers.append(("Cache-Control", self.files.cache_control))
        return Response(200, headers, Body((payload,)))


def _render(
    render: Callable[[str, list[Entry]], bytes], url_path: str, entries: list[Entry]
) -> bytes:
    return render(url_path, listing.sort_entries(entries))


def _index_fd(fd: int, compressed: bool, size: int, mtime: int) -> ArchiveIndex:
    with open_positional(fd) as raw:
        return read_index(raw, compressed=compressed, size=size, mtime=mtime)


class _PositionalFile(io.RawIOBase):
    """Reads a descriptor with pread at a position of its own; closes the descriptor.

    A dup() shares its file offset with the original (and every other dup), so
    reading through it would move everyone's; pread moves no one's.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = os.preadv(self.fd, [buffer], self.position)
        self.position += count
        return count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self.position
        elif whence == os.SEEK_END:
            offset += os.fstat(self.fd).st_size
        if offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def open_positional(fd: int) -> io.BufferedReader:
    """A buffered, seekable reader that owns `fd` and leaves its file offset alone."""
    return io.BufferedReader(_PositionalFile(fd), buffer_size=_READ_BUFFER)


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            retry = (("Retry-After", "1"),)
            raise HttpError(503, "overloaded", "out of file descriptors", retry) from None
        raise


def _closer(fd: int) -> listing.Cleanup:
    return lambda: os.close(fd)
