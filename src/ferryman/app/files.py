"""Serving a local directory: decide, then describe the body.

Per request: resolve the path, open it relative to the root's descriptor,
fstat the *open* descriptor (no stat/open race), confirm through
/proc/self/fd where the descriptor really points (a symlink cannot lead out
of the root, nor into a dotfile or the state directory), evaluate
preconditions and ranges, and return a Response whose body is regions of
that descriptor. The descriptor is released by the body's cleanup, which the
connection runs when the transfer ends; every early return releases it here.
A regular file's descriptor is then kept open for the next request of the
same path (app/openfiles.py), which skips the open and its checks when one
stat() shows the same file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ferryman.app import listing
from ferryman.app.bodycache import SmallBodyCache, same_file
from ferryman.app.digestindex import DigestIndex
from ferryman.app.openfiles import OpenFile, OpenFiles, Route, route
from ferryman.app.paths import RequestPath, resolve
from ferryman.app.plan import Representation, plan_response
from ferryman.config import Config
from ferryman.errors import HttpError, not_found
from ferryman.http.body import Body
from ferryman.http.parser import Request
from ferryman.http.response import Headers, Response
from ferryman.pagecache import read_nowait

if TYPE_CHECKING:
    from ferryman.app.archive import ArchiveServer

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def file_etag(st: os.stat_result) -> str:
    """A strong ETag from the file's identity: inode, size, mtime and ctime in nanoseconds.

    The ctime changes with every change to the file, even an edit of the same
    size whose writer restored the mtime, so such an edit gets a new ETag.
    """
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}"'


class FileServer:
    def __init__(self, config: Config) -> None:
        self.root = str(config.root)
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.state_dir = str(config.state_path)
        self.follow_symlinks = config.follow_symlinks
        self.cache_control = config.cache_control
        self.max_ranges = config.max_ranges
        self.small_body = config.small_body
        self.digests: DigestIndex | None = None  # set when a catalog exists
        self.archives: ArchiveServer | None = None  # set by App: paths through .tar files
        self.cache = (
            SmallBodyCache(max_bytes=config.file_cache)
            if config.file_cache and self.small_body
            else None
        )
        self.open_files = (
            OpenFiles(self.root_fd, config.open_files, config.open_files_idle)
            if config.open_files
            else None
        )

    def close(self) -> None:
        if self.open_files is not None:
            self.open_files.close()
        os.close(self.root_fd)

    def tick(self) -> None:
        """Once a second: close descriptors kept too long unused."""
        if self.open_files is not None:
            self.open_files.sweep()

    # -- entry point ----------------------------------------------------------

    def get(self, request: Request) -> Response | Awaitable[Response]:
        if self.cache is not None:
            hit = self.cache.response(request)
            if hit is not None:
                return hit
        path = resolve(request.path)
        if self.open_files is not None and not path.trailing_slash:
            kept = self.open_files.use(path.relative)
            if kept is not None:
                return self.respond_with_file(request, kept, path.segments[-1], path.relative)
        try:
            way = self._route(path.relative)
            fd, st = self.open_relative(path.relative)
        except HttpError as exc:
            # A path through an archive fails to open (ENOTDIR): serve the member.
            if exc.status == 404 and self.archives is not None:
                member = self.archives.serve(request, path)
                if member is not None:
                    return member
            raise
        if stat.S_ISDIR(st.st_mode):
            return self._directory(request, path, fd)
        if not stat.S_ISREG(st.st_mode) or path.trailing_slash:
            if self.archives is not None and stat.S_ISREG(st.st_mode):
                members = self.archives.serve_open(request, path, fd, st)  # `/a.tar/`
                if members is not None:
                    return members
            os.close(fd)
            raise not_found()
        if self.open_files is not None:
            opened = self.open_files.keep(path.relative, fd, st, way)
        else:
            opened = OpenFile(fd, st, way)
        return self.respond_with_file(request, opened, path.segments[-1], path.relative)

    # -- opening --------------------------------------------------------------

    def open_relative(
        self, relative: str, *, missing_ok: bool = False
    ) -> tuple[int, os.stat_result]:
        """Open `relative` under the root: (descriptor, its fstat); 404 unless it may be served.

        Also opens the archive a request path runs through (app/archive.py).
        """
        try:
            fd = os.open(relative, _OPEN_FLAGS, dir_fd=self.root_fd)
        except OSError as exc:
            raise _open_error(exc) from None
        try:
            st = os.fstat(fd)
            self._check_visible(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _route(self, relative: str) -> Route:
        """openfiles.route, its errors answered as the open's would be."""
        try:
            return route(self.root_fd, relative)
        except OSError as exc:
            raise _open_error(exc) from None

    def _check_visible(self, fd: int) -> None:
        """404 unless the open descriptor may be served.

        Where it really points (read back from /proc after the open, so no
        symlink swap can race the check) must not be the state directory or a
        dotfile under the root, and must lie under the root unless
        --follow-symlinks allows leaving it.
        """
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: fall back to a path walk (racy, but still confining)
            real = os.path.realpath(f"/dev/fd/{fd}")
        if self.is_hidden(real):
            raise not_found()
        if not self.follow_symlinks and not _is_under(real, self.root):
            raise not_found()

    # -- directories ------------------------------------------------------------

    def _directory(
        self, request: Request, path: RequestPath, fd: int
    ) -> Response | Awaitable[Response]:
        if not path.trailing_slash:
            os.close(fd)
            location = path.url(slash=True)
            if request.query:
                location += "?" + request.query.decode("latin-1")
            return Response(301, [("Location", location)])
        relative = _join(path.relative, "index.html")
        try:
            way = self._route(relative)
            index_fd, index_st = self.open_relative(relative)
        except HttpError:
            return listing.respond(request, path, fd, self)
        os.close(fd)
        if not stat.S_ISREG(index_st.st_mode):
            os.close(index_fd)
            raise not_found()
        opened = OpenFile(index_fd, index_st, way)
        return self.respond_with_file(request, opened, "index.html", relative)

    def is_hidden(self, real_path: str) -> bool:
        """The state directory, or a dotfile (or anything inside one) under the root."""
        if _is_under(real_path, self.state_dir):
            return True
        if not _is_under(real_path, self.root):
            return False
        return "/." in real_path[len(self.root.rstrip("/")) :]

    def is_servable(self, real_path: str) -> bool:
        """What a listing may show: entries that a request would be served."""
        if self.is_hidden(real_path):
            return False
        return self.follow_symlinks or _is_under(real_path, self.root)

    # -- files ------------------------------------------------------------------

    def respond_with_file(
        self, request: Request, opened: OpenFile, name: str, relative: str
    ) -> Response:
        """Preconditions, ranges and headers for an open regular file.

        This request's use of `opened` belongs to the returned body, or is
        released here (for a 304, an answer from memory, or any exception).
        """
        try:
            return self._file_response(request, opened, name, relative)
        except BaseException:
            opened.release()
            raise

    def _file_response(
        self, request: Request, opened: OpenFile, name: str, relative: str
    ) -> Response:
        st = opened.st
        plan = plan_response(
            request, self._representation(opened, name, relative), max_ranges=self.max_ranges
        )
        if plan.status == 304:
            opened.release()
            return Response(304, plan.headers)
        if plan.status == 200 and st.st_size <= self.small_body and self.cache is not None:
            small = self._remember(request, relative, opened, plan.headers)
            if small is not None:
                opened.release()
                return small
        return Response(plan.status, plan.headers, plan.body(opened.fd, 0, opened.release))

    def _representation(self, opened: OpenFile, name: str, relative: str) -> Representation:
        """The file's validators and headers: made at its first answer, then kept with it.

        Its Repr-Digest is asked for every time, as the digest index may learn
        it after the descriptor was opened.
        """
        st = opened.st
        digest = None if self.digests is None else self.digests.repr_digest(relative, st)
        rep = opened.representation
        if rep is None or rep.digest != digest:
            rep = Representation(
                size=st.st_size,
                etag=file_etag(st),
                last_modified=int(st.st_mtime),
                name=name,
                cache_control=self.cache_control,
                digest=digest,
            )
            opened.representation = rep
        return rep

    def _remember(
        self, request: Request, relative: str, opened: OpenFile, headers: Headers
    ) -> Response | None:
        """Answer a small, cached-in-RAM file from bytes, and keep it for next time."""
        assert self.cache is not None
        size = opened.st.st_size
        body = read_nowait(opened.fd, 0, size)
        if body is None or len(body) != size:
            return None  # cold or changing: the connection reads it the usual way
        current = same_file(self.root_fd, relative, opened.identity, opened.route)
        self.cache.store(request, current, headers, body)
        return Response(200, headers, Body((body,)))


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _join(relative: str, name: str) -> str:
    return name if relative == "." else f"{relative}/{name}"


def _open_error(exc: OSError) -> HttpError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO):
        return not_found()
    if exc.errno in (errno.EACCES, errno.EPERM):
        return HttpError(403, "forbidden", "permission denied")
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return HttpError(503, "overloaded", "out of file descriptors", (("Retry-After", "1"),))
    return HttpError(
        500, "internal_error", f"cannot open file ({errno.errorcode.get(exc.errno or 0, '?')})"
    )
