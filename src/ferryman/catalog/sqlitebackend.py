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
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from ferryman.catalog.api import MIGRATE, WRITE, CatalogError, Transaction
from ferryman.catalog.sqlitefile import (
    check_file,
    connect,
    create,
    migrate,
    read_version,
    transaction,
    translate,
)


class SqliteDatabase:
    """The catalog file at `path` (its directory must exist): created whole, or migrated."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.location = os.fspath(path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
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

    def close(self) -> None:
        """Close both connections (idempotent); any later call raises CatalogError."""
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            try:
                try:
                    self._reader.close()
                finally:
                    self._writer.close()  # the last connection out checkpoints the WAL
            except sqlite3.Error as exc:
                raise translate(self.location, exc) from exc
