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

`read(key)` streams a copy's bytes. A copy that cannot be read is
`Unreadable` (a finding); a listing that fails is `StoreUnavailable` (the
run is then incomplete for that store).

The audit runs synchronously, in one thread: a directory is read with plain
system calls, and a bucket through a `Portal`, an event loop in a thread of
its own that the S3 client lives on (a listing crosses between the threads
once per thousand keys, a read once per chunk).
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ferryman.audit.model import Stored
from ferryman.errors import FerrymanError
from ferryman.stores.base import StoreError

if TYPE_CHECKING:
    from ferryman.stores.s3 import S3Store

CHUNK = 1024 * 1024  # bytes per read of a local copy
_BATCH = 1000  # keys of a bucket listing handed from the I/O thread at a time


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

    def listing(self) -> Iterator[Listed]: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    def close(self) -> None: ...


def local_ident(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class LocalTree:
    """A directory, audited as a store."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = os.path.realpath(name)

    def listing(self) -> Iterator[Listed]:
        try:
            yield from _walk(self.id)
        except OSError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.strerror})") from None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            fd = _open_below(self.id, key)
        except OSError as exc:
            raise Unreadable(f"cannot open it ({exc.strerror})") from None
        try:
            offset = 0
            while True:
                try:
                    chunk = os.pread(fd, CHUNK, offset)
                except OSError as exc:
                    raise Unreadable(f"read failed at byte {offset} ({exc.strerror})") from None
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing is kept open between calls."""


def _walk(root: str) -> Iterator[Listed]:
    """Every regular file under `root`, in code-point order of its key.

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
    """An S3 bucket (prefix), audited as a store, through an event loop in another thread."""

    def __init__(self, name: str, store: S3Store, portal: Portal) -> None:
        self.name = name
        self.store = store
        self.portal = portal
        self.id = name.rstrip("/")

    def listing(self) -> Iterator[Listed]:
        try:
            for batch in self.portal.iterate(_batches(self.store.list_all())):
                yield from (Listed(key, size, etag) for key, size, etag in batch)
        except StoreError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.detail})") from None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            info = self.portal.call(self.store.stat(key))
            yield from self.portal.iterate(self.store.read(key, 0, info.size, if_match=info.etag))
        except StoreError as exc:
            raise Unreadable(exc.detail) from None

    def close(self) -> None:
        self.portal.call(self.store.close())


async def _batches(
    items: AsyncIterator[tuple[str, int, str]],
) -> AsyncIterator[list[tuple[str, int, str]]]:
    """Items in lists of _BATCH: one hop between threads per batch, not per key."""
    batch = []
    async for item in items:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


T = TypeVar("T")


class Portal:
    """An event loop in a thread of its own, for the synchronous audit to call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="ferryman-audit-io")  # fmt: skip
        self._thread.start()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.call(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                self.call(close())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()
