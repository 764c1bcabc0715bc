"""The SQLite backend: one file in the state directory, shared by one server's workers.

Why SQLite, WAL and synchronous=FULL: docs/decisions/0007-catalog-in-sqlite.md.

Who owns what:

- A `SqliteDatabase` owns two sqlite3 connections, opened in `__init__` and
  closed by `close()`; nothing else touches them. `_writer` makes every
  change (and every migration), `_reader` (query_only) answers every read.
- `_write_lock` guards `_writer`, `_read_lock` guards `_reader`. Each is
  held for exactly one transaction, never across a `yield` of the caller's
  generator and never while calling out of the catalog package. Only
  `close()` holds both, and takes `_write_lock` first.
- Between processes (the workers of one server share the file), SQLite's
  own file locks decide: WAL lets readers go on while one writer commits,
  and every write transaction takes the write lock up front
  (`BEGIN IMMEDIATE`), waiting up to `BUSY_TIMEOUT_MS` for it.

Not one connection in all: a read (the GET path asks for a file's digest)
would then queue behind a write that is waiting up to BUSY_TIMEOUT_MS for
another worker's write lock. Not one per thread (threading.local): SQLite
lets one writer at a time into the file anyway, and connections left in
executor threads cannot be closed by `close()`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from ferryman.catalog.api import MIGRATE, WRITE, CatalogError, KeyBusy, Transaction
from ferryman.catalog.sqlitefile import (
    check_file,
    connect,
    create,
    migrate,
    read_version,
    transaction,
    translate,
)

_LEASE_OFFSET_MASK = (1 << 62) - 1  # record lock offsets are signed 64-bit: stay inside


class SqliteDatabase:
    """The catalog file at `path` (its directory must exist): created whole, or migrated."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.location = os.fspath(path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._lease_lock = threading.Lock()
        self._leases: int | None = None  # CATALOG-leases, opened at the first lease
        self._closed = False
        if not check_file(self.location):
            create(self.location)
        self._writer = connect(self.location, query_only=False)
        try:
            migrate(self._writer, self.location)
            self._reader = connect(self.location, query_only=True)
        except BaseException:
            self._writer.close()
            raise

    @contextmanager
    def transaction(self, kind: str) -> Iterator[Transaction]:
        """The connection for `kind`, in one transaction, under its lock."""
        writing = kind in (WRITE, MIGRATE)
        lock = self._write_lock if writing else self._read_lock
        conn = self._writer if writing else self._reader
        with lock:
            if self._closed:
                raise CatalogError(f"catalog {self.location} is closed")
            with transaction(conn, self.location, kind):
                yield conn

    def read_version(self, tx: Transaction) -> int:
        return read_version(tx, self.location)

    def announce(self, tx: Transaction, path: str, stores: Sequence[str]) -> None:
        """One server uses a SQLite catalog: there is nobody to tell of a change."""

    def ready(self) -> None:
        """A local file has no server to be down."""

    @contextlib.asynccontextmanager
    async def key_lock(self, number: int, wait: float) -> AsyncIterator[None]:
        """Nothing to take: the file belongs to one server, whose workers the record lock
        of app/writelock.py orders already."""
        yield

    @contextmanager
    def lease(self, number: int) -> Iterator[None]:
        """A record lock on one byte of CATALOG-leases (the byte `number` names), held by
        this process for the block: the kernel lets go of it when the process dies.

        Record locks belong to the process, and closing any descriptor of the file drops
        them all: the file is opened once and kept until close()."""
        with self._lease_lock:
            if self._closed:
                raise CatalogError(f"catalog {self.location} is closed")
            if self._leases is None:
                self._leases = os.open(self.location + "-leases",
                                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # fmt: skip
            fd = self._leases
        offset = number & _LEASE_OFFSET_MASK
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise KeyBusy("another process holds it") from None
            raise CatalogError(f"catalog {self.location}: cannot lock ({exc.strerror})") from exc
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        """Close both connections (idempotent); any later call raises CatalogError."""
        with self._write_lock, self._read_lock, self._lease_lock:
            if self._closed:
                return
            self._closed = True
            if self._leases is not None:
                os.close(self._leases)  # lets go of every lease this process holds
                self._leases = None
            try:
                try:
                    self._reader.close()
                finally:
                    self._writer.close()  # the last connection out checkpoints the WAL
            except sqlite3.Error as exc:
                raise translate(self.location, exc) from exc
