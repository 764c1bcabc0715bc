"""The stores an audit reads: a local directory or an S3 bucket (prefix), listed whole.

Each store is named twice: `name` exactly as the user gave it (reports show
that), and `id`, its canonical form (an absolute directory, or
`s3://bucket/prefix`), under which the catalog keeps its copies.

`listing()` yields every key with its size and the store's own identifier
of the version, in code-point order of the keys (the order the catalog and
S3 list in, which compare.py's merge join needs):

- a directory is walked without following symlinks (a symlink is neither
  listed nor entered: a copy is a regular file under the root), skipping
  dot-names (never served, never written by ferryman: the state directory,
  upload temporaries); its identifier is "inode:mtime_ns:ctime_ns";
- a bucket is listed with ListObjectsV2 without a delimiter, page by page;
  its identifier is the ETag.

`read(key)` streams a copy's bytes. Failures are StoreError kinds
(stores/base.py) or `Unreadable` for one key; a listing that fails is the
store's failure (the run is then incomplete).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Protocol

from ferryman.audit.model import Stored
from ferryman.errors import FerrymanError
from ferryman.stores.base import StoreError

CHUNK = 1024 * 1024  # bytes per read of a local copy
_BATCH = 1000  # directory entries handed from the walking thread at a time


class Unreadable(FerrymanError):
    """One copy could not be read (or stat'ed): a finding, not the store's failure."""


class StoreUnavailable(FerrymanError):
    """The store could not be listed: the run cannot be complete for it."""


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    size: int
    ident: str

    def stored(self, sha256: str | None = None) -> Stored:
        return Stored(self.key, self.size, sha256=sha256, ident=self.ident)


class AuditStore(Protocol):
    name: str  # as given on the command line
    id: str  # canonical: the catalog's name for the store

    def listing(self) -> AsyncIterator[Listed]: ...
    def read(self, key: str) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...


def local_ident(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class LocalTree:
    """A directory, audited as a store."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = os.path.realpath(name)

    async def listing(self) -> AsyncIterator[Listed]:
        walk = _walk(self.id)
        try:
            while True:
                batch = await asyncio.to_thread(_take, walk, _BATCH)
                for item in batch:
                    yield item
                if len(batch) < _BATCH:
                    return
        except OSError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.strerror})") from None
        finally:
            walk.close()

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            fd = await asyncio.to_thread(_open_below, self.id, key)
        except OSError as exc:
            raise Unreadable(f"cannot open it ({exc.strerror})") from None
        try:
            offset = 0
            while True:
                try:
                    chunk = await asyncio.to_thread(os.pread, fd, CHUNK, offset)
                except OSError as exc:
                    raise Unreadable(f"read failed at byte {offset} ({exc.strerror})") from None
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Nothing is kept open between calls."""


def _walk(root: str) -> Generator[Listed, None, None]:
    """Every regular file under `root`, in code-point order of its key (blocking).

    A directory's entries are visited as `name/` and files as `name`, which
    puts every key in global code-point order: all keys under `a` start with
    `a/`, and "/" sorts after "-" and before "0".
    """
    stack: list[tuple[str, list[tuple[str, os.DirEntry[str]]]]] = [("", _entries(root))]
    while stack:
        prefix, entries = stack[-1]
        if not entries:
            stack.pop()
            continue
        sort_name, entry = entries.pop()
        key = prefix + entry.name
        if sort_name.endswith("/"):
            stack.append((key + "/", _entries(entry.path)))
            continue
        st = entry.stat(follow_symlinks=False)
        yield Listed(key, st.st_size, local_ident(st))


def _entries(directory: str) -> list[tuple[str, os.DirEntry[str]]]:
    """The directory's visible entries, sorted descending (popped from the end)."""
    found = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.append((entry.name + "/", entry))
            elif entry.is_file(follow_symlinks=False):
                found.append((entry.name, entry))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return found


def _take(walk: Iterator[Listed], count: int) -> list[Listed]:
    batch = []
    for item in walk:
        batch.append(item)
        if len(batch) == count:
            break
    return batch


def _open_below(root: str, key: str) -> int:
    """Open root/key read-only, every step without following a symlink."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        *directories, name = key.split("/")
        for directory in directories:
            next_fd = os.open(directory, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise OSError(0, "not a regular file")
    return file_fd


class ObjectStore:
    """An S3 bucket (prefix), audited as a store."""

    def __init__(self, name: str, store: S3Like) -> None:
        self.name = name
        self.store = store
        self.id = name.rstrip("/")

    async def listing(self) -> AsyncIterator[Listed]:
        try:
            async for key, size, etag in self.store.list_all():
                yield Listed(key, size, etag)
        except StoreError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.detail})") from None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            info = await self.store.stat(key)
            async for chunk in self.store.read(key, 0, info.size, if_match=info.etag):
                yield chunk
        except StoreError as exc:
            raise Unreadable(exc.detail) from None

    async def close(self) -> None:
        await self.store.close()


class S3Like(Protocol):
    """What ObjectStore needs of stores/s3.py's S3Store."""

    def list_all(self) -> AsyncIterator[tuple[str, int, str]]: ...
    async def stat(self, key: str) -> ObjectInfoLike: ...
    def read(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...


class ObjectInfoLike(Protocol):
    size: int
    etag: str
