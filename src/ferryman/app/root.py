"""What a URL path means under SOURCE: decided in one place, then acted on.

A request path is resolved once (app/paths.py: decoded, normalised, never
above SOURCE, no dot-names). A path whose first segment is `-` never gets
here: `/-/` is the server's own (app/reserved.py), so SOURCE's `-` is
shadowed. `decide` then says, from the kind of thing
SOURCE holds there, what the request asks for: a file, a directory (its
index.html or its listing), the slash form of a directory named without its
slash, an archive's listing (`/a.tar/`), a path through an archive
(`/a.tar/m`), or nothing. It is pure, as plan_response is (app/plan.py), and
the same for a directory, a bucket and the inside of an archive.

`Root` acts on it for a local directory: it opens the path relative to a
descriptor of SOURCE, refuses what may not be served (a symlink out of
SOURCE, into a dot-name or into the state directory: checked on the open
descriptor, so no swap can race the check) and hands the reader an open,
checked thing (`OpenedFile`, `OpenedDirectory`, `OpenedArchive`), the
redirect, or `MISSING` when nothing there may be served. A miss is the
commonest way a request fails, and the cheapest to ask for: it is a value
the reader answers, not an exception, because an exception raised through
the compiled request path costs several times what the failed open() did
(docs/decisions/0038). `BucketRoot` keeps the same contract for a bucket,
where a path is a key and a "directory" is a prefix with keys under it.

`slash_form` is the one redirect to the slash form of a directory (301, the
query kept as it came), for directories, archive directories and prefixes.
"""

from __future__ import annotations

import errno
import os
import stat
from enum import Enum
from typing import TYPE_CHECKING

from ferryman.app.archive_index import is_archive_name
from ferryman.app.fileat import open_at
from ferryman.app.openfiles import OpenFile, OpenFiles, Route, route
from ferryman.app.paths import RequestPath, resolve, resolve_servable
from ferryman.config import Config
from ferryman.errors import NO_SUCH_FILE, NOT_FOUND, HttpError, not_found
from ferryman.http.parser import Request
from ferryman.http.response import Response, error_response

if TYPE_CHECKING:
    from ferryman.stores.base import Store

INDEX = "index.html"  # what a directory's slash form serves, when it holds one

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Kind(Enum):
    """What SOURCE holds at a path."""

    FILE = "file"
    DIRECTORY = "directory"
    OTHER = "other"  # a FIFO, a socket, a device: never served
    MISSING = "missing"  # nothing that may be served (absent, or refused)


class Meaning(Enum):
    """What a request for a path asks for."""

    FILE = "file"
    DIRECTORY = "directory"  # by its slash form: its index.html, or its listing
    SLASH_FORM = "slash form"  # a directory named without its slash: redirect
    ARCHIVE = "archive"  # `/a.tar/`: the archive's top-level listing
    IN_ARCHIVE = "in archive"  # missing, but a segment before the last may be an archive
    NOT_FOUND = "not found"


def kind_of(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIRECTORY
    return Kind.OTHER


def decide(path: RequestPath, kind: Kind, *, archives: bool) -> Meaning:
    """What `path` asks for, where SOURCE holds `kind`; `archives`: members are served.

    A file named with a trailing slash is nothing (unless it is an archive,
    whose slash form lists it); a directory named without one is its slash
    form. Archives do not nest: inside one, `archives` is False.
    """
    if kind is Kind.DIRECTORY:
        return Meaning.DIRECTORY if path.trailing_slash else Meaning.SLASH_FORM
    if kind is Kind.FILE:
        if not path.trailing_slash:
            return Meaning.FILE
        if archives and path.segments and is_archive_name(path.segments[-1]):
            return Meaning.ARCHIVE
        return Meaning.NOT_FOUND
    through = kind is Kind.MISSING and archives
    if through and any(is_archive_name(segment) for segment in path.segments[:-1]):
        return Meaning.IN_ARCHIVE
    return Meaning.NOT_FOUND


def slash_form(request: Request, path: RequestPath) -> Response:
    """301 to the slash form of `path`, with the request's query as it came."""
    location = path.url(slash=True)
    if request.query:
        location += "?" + request.query.decode("latin-1")
    return Response(301, [("Location", location)])


# -- what a local Root hands its readers ---------------------------------------------------


class Redirect:
    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response


class OpenedFile:
    """A regular file, open and checked, with one use for this request."""

    __slots__ = ("name", "opened", "relative")

    def __init__(self, opened: OpenFile, name: str, relative: str) -> None:
        self.opened = opened
        self.name = name  # the name its Content-Type comes from
        self.relative = relative  # its path under the root


class OpenedDirectory:
    """A directory with no index.html, open for its listing; the reader closes `fd`."""

    __slots__ = ("fd", "path")

    def __init__(self, path: RequestPath, fd: int) -> None:
        self.path = path
        self.fd = fd


class OpenedArchive:
    """The archive a path runs through (its first `count` segments), open and checked,
    with one use for this request (kept between requests as a file is: app/openfiles.py);
    the reader releases it."""

    __slots__ = ("count", "opened", "path")

    def __init__(self, path: RequestPath, count: int, opened: OpenFile) -> None:
        self.path = path
        self.count = count
        self.opened = opened

    @property
    def relative(self) -> str:
        """The archive's path under the root."""
        return "/".join(self.path.segments[: self.count])


class Missing:
    """Nothing at the path may be served (absent, or refused as if absent): a 404.

    The answer is the one not_found() gives, in the kind of body the request
    asks for (http/response.py keeps it encoded).
    """

    __slots__ = ()

    @staticmethod
    def response(request: Request) -> Response:
        return error_response(404, NOT_FOUND, NO_SUCH_FILE, accept=request.headers.get("accept"))


MISSING = Missing()  # no state: one serves every miss

Located = Redirect | OpenedFile | OpenedDirectory | OpenedArchive | Missing


class Root:
    """A local directory as SOURCE: every path a request names, resolved and confined here.

    Owns the descriptor of the root (every open is relative to it) and the
    descriptors of recently served files, archives and sidecars
    (app/openfiles.py): a file, a path through an archive, or a sidecar
    (`regular_file`) asked for again is reached through the kept descriptor
    while one stat() shows the same file by the same directories.
    """

    def __init__(self, config: Config) -> None:
        self.path = str(config.root)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.state_dir = str(config.state_path)
        self.follow_symlinks = config.follow_symlinks
        self.open_files = (
            OpenFiles(self.fd, config.open_files, config.open_files_idle)
            if config.open_files
            else None
        )

    def close(self) -> None:
        if self.open_files is not None:
            self.open_files.close()
        os.close(self.fd)

    def sweep(self) -> None:
        """Close kept descriptors nobody used for --open-files-idle."""
        if self.open_files is not None:
            self.open_files.sweep()

    # -- deciding, then opening ---------------------------------------------------------

    def locate(self, request: Request) -> Located:
        """What the request's path is under the root, opened and checked, or MISSING;
        400, 403, 503... raised."""
        path = resolve_servable(request.path)
        if path is None:
            return MISSING  # through a dot-name
        relative = path.relative
        if self.open_files is not None:
            if not path.trailing_slash:
                kept = self.open_files.use(relative)
                if kept is not None:
                    return OpenedFile(kept, path.segments[-1], relative)
            elif path.segments and is_archive_name(path.segments[-1]):
                kept = self.open_files.use(relative)  # `/a.tar/`: the archive's listing
                if kept is not None:
                    return OpenedArchive(path, len(path.segments), kept)
            archive = self._kept_archive(path, self.open_files)
            if archive is not None:
                return archive
        try:
            way = route(self.fd, relative)
        except OSError as exc:
            return self._missing(path, exc.errno)
        found = self.try_open(relative)
        if isinstance(found, int):
            return self._missing(path, found)
        fd, st = found
        meaning = decide(path, kind_of(st.st_mode), archives=True)
        if meaning is Meaning.FILE:
            if self.open_files is not None:
                opened = self.open_files.keep(relative, fd, st, way)
            else:
                opened = OpenFile(fd, st, way)
            return OpenedFile(opened, path.segments[-1], relative)
        if meaning is Meaning.DIRECTORY:
            return self._directory(path, fd)
        if meaning is Meaning.ARCHIVE:
            return OpenedArchive(path, len(path.segments), self._archive(relative, fd, st, way))
        os.close(fd)
        if meaning is Meaning.SLASH_FORM:
            return Redirect(slash_form(request, path))
        return MISSING

    def _missing(self, path: RequestPath, code: int | None) -> OpenedArchive | Missing:
        """The path could not be opened (`code`, the errno): a path through an archive
        (ENOTDIR at the archive) opens the archive; else MISSING, or the open's error
        raised when it is not a miss (403, 503)."""
        if code not in MISS_ERRNOS:
            raise open_error(code)
        archive = self._archive_on(path)
        return MISSING if archive is None else archive

    def _directory(self, path: RequestPath, fd: int) -> OpenedFile | OpenedDirectory | Missing:
        """The slash form of a directory open as `fd`: its index.html, else its listing."""
        relative = INDEX if path.relative == "." else f"{path.relative}/{INDEX}"
        try:
            way = route(self.fd, relative)
        except OSError:
            return OpenedDirectory(path, fd)
        found = self.try_open(relative)
        if isinstance(found, int):
            return OpenedDirectory(path, fd)
        index_fd, index_st = found
        os.close(fd)
        if not stat.S_ISREG(index_st.st_mode):
            os.close(index_fd)
            return MISSING
        return OpenedFile(OpenFile(index_fd, index_st, way), INDEX, relative)

    def _archive_on(self, path: RequestPath) -> OpenedArchive | None:
        """The first segment before the last that is a regular file named like an
        archive, open; None when there is none (a directory named like one is passed
        over, and what lies beyond a missing segment is missing too)."""
        if decide(path, Kind.MISSING, archives=True) is not Meaning.IN_ARCHIVE:
            return None
        segments = path.segments
        for i, segment in enumerate(segments[:-1]):
            if not is_archive_name(segment):
                continue
            relative = "/".join(segments[: i + 1])
            try:
                way = route(self.fd, relative)
            except OSError as exc:
                if exc.errno in MISS_ERRNOS:
                    return None
                raise open_error(exc.errno) from None
            found = self.try_open(relative)
            if isinstance(found, int):
                if found in MISS_ERRNOS:
                    return None
                raise open_error(found)
            fd, st = found
            if stat.S_ISREG(st.st_mode):
                return OpenedArchive(path, i + 1, self._archive(relative, fd, st, way))
            os.close(fd)
        return None

    def _kept_archive(self, path: RequestPath, open_files: OpenFiles) -> OpenedArchive | None:
        """The archive `path` runs through, from its kept descriptor while one stat()
        shows the same file by the same directories; None when none is kept.

        A kept one is a regular file still reached, so no path through it can be
        a file or a directory of SOURCE, and every segment before it is a
        directory: it is the archive the full path would find, opened afresh.
        """
        segments = path.segments
        for i in range(len(segments) - 1):
            if is_archive_name(segments[i]):
                kept = open_files.use("/".join(segments[: i + 1]))
                if kept is not None:
                    return OpenedArchive(path, i + 1, kept)
        return None

    def _archive(self, relative: str, fd: int, st: os.stat_result, way: Route) -> OpenFile:
        """An archive just opened and checked (`way`: its route() from before the open),
        kept open for the next request through it as a file is."""
        if self.open_files is not None:
            return self.open_files.keep(relative, fd, st, way)
        return OpenFile(fd, st, way)

    def regular_file(self, relative: str) -> OpenFile | None:
        """The regular file at `relative` (a sidecar beside a file), from its kept
        descriptor while one stat() shows the same file by the same directories, else
        opened, checked and kept; None when there is none that may be served, or it
        cannot be opened for any reason (the caller has another way to answer)."""
        open_files = self.open_files
        if open_files is not None:
            kept = open_files.use(relative)
            if kept is not None:
                return kept
        try:
            way = route(self.fd, relative)
        except OSError:
            return None
        found = self.try_open(relative)
        if isinstance(found, int):
            return None
        fd, st = found
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        if open_files is not None:
            return open_files.keep(relative, fd, st, way)
        return OpenFile(fd, st, way)

    # -- opening and confining ------------------------------------------------------------

    def open(self, relative: str) -> tuple[int, os.stat_result]:
        """Open `relative` under the root: (descriptor, its fstat); 404 unless it may be
        served, 403 or 503 as the open's error says."""
        found = self.try_open(relative)
        if isinstance(found, int):
            raise open_error(found)
        return found

    def try_open(self, relative: str) -> tuple[int, os.stat_result] | int:
        """open() without raising: (descriptor, its fstat), or the errno of why not
        (ENOENT for what may not be served)."""
        fd = open_at(self.fd, relative, _OPEN_FLAGS)
        if fd < 0:
            return -fd
        try:
            st = os.fstat(fd)
            visible = self._visible(fd)
        except BaseException:
            os.close(fd)
            raise
        if not visible:
            os.close(fd)
            return errno.ENOENT
        return fd, st

    def _visible(self, fd: int) -> bool:
        """Whether the open descriptor may be served.

        Where it really points (read back from /proc after the open, so no
        symlink swap can race the check) must not be the state directory or a
        dotfile under the root, and must lie under the root unless
        --follow-symlinks allows leaving it.
        """
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: fall back to a path walk (racy, but still confining)
            real = os.path.realpath(f"/dev/fd/{fd}")
        return self.is_servable(real)

    def is_hidden(self, real_path: str) -> bool:
        """The state directory, or a dotfile (or anything inside one) under the root."""
        if is_under(real_path, self.state_dir):
            return True
        if not is_under(real_path, self.path):
            return False
        return "/." in real_path[len(self.path.rstrip("/")) :]

    def is_servable(self, real_path: str) -> bool:
        """What a request may be served, and so what a listing may show."""
        if self.is_hidden(real_path):
            return False
        return self.follow_symlinks or is_under(real_path, self.path)


class BucketRoot:
    """A bucket (prefix) as SOURCE: a path's key, and what a path names there.

    Nothing escapes a bucket but through the path itself, which resolve()
    already holds under the prefix. A path names an object, or (the root, or
    any slash form) a prefix; an object that is missing may still be a
    prefix named without its slash.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def resolve(request: Request) -> RequestPath:
        return resolve(request.path)

    @staticmethod
    def key(path: RequestPath) -> str:
        """The store key of a request path; 400 unless it is UTF-8 (object keys are)."""
        key = "/".join(path.segments)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise HttpError(400, "bad_path", "object keys must be UTF-8") from None
        return key

    @staticmethod
    def names_prefix(path: RequestPath) -> bool:
        """The root or a slash form: a prefix (its index.html, or its listing)."""
        return not path.segments or path.trailing_slash

    async def missing(self, key: str) -> Kind:
        """What a key with no object is: a prefix with keys under it, or nothing."""
        async for _ in self.store.list(key + "/"):
            return Kind.DIRECTORY
        return Kind.MISSING


def is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# What a failed open (or a stat on the way) means "nothing here": a 404.
MISS_ERRNOS = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO))


def open_error(code: int | None) -> HttpError:
    """The answer for an open (or a stat on the way) that failed with errno `code`."""
    if code in MISS_ERRNOS:
        return not_found()
    if code in (errno.EACCES, errno.EPERM):
        return HttpError(403, "forbidden", "permission denied")
    if code in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return HttpError(503, "overloaded", "out of file descriptors", (("Retry-After", "1"),))
    return HttpError(
        500, "internal_error", f"cannot open file ({errno.errorcode.get(code or 0, '?')})"
    )
